"""Pose tracking: the similarity against a hand-worked case and a slow loop, the tracker's id rules, optical
flow, and tracking quality on the synthetic walking video measured by motmetrics (an independent
implementation of MOTA and id switches) through the real Predictor, stream and decoder."""

import json
import math

import cv2
import numpy as np
import pytest

from bpnet.infer.oracle import OracleSettings, dataset_skeleton, perfect_maps
from bpnet.infer.predict import Predictor, PredictorSettings
from bpnet.infer.track import PoseTracker, TrackerSettings, keypoint_similarity
from bpnet.infer.track_metrics import tracking_metrics
from bpnet.model.io import ModelInfo
from bpnet.resources import resource_path
from bpnet.specs import load_dataset_spec
from bpnet.synthesize_video import FRAME_SHAPE, synthesize_video

COCO_SPEC = load_dataset_spec(str(resource_path("data_pose_config", "coco_spec.json")))


def person(points, score=1.0):
    return np.array([[x, y, score if (x, y) != (0, 0) else 0.0] for x, y in points])


def test_keypoint_similarity_hand_worked_and_slow_loop():
    track = person([(0, 0), (10, 0), (20, 20)])  # first keypoint missing; box 10..20 × 0..20 → area 200
    moved = person([(5, 5), (13, 4), (20, 20)])
    expected = (math.exp(-25 / (2 * 200 * 0.01)) + 1.0) / 2  # d² = 9 + 16 at keypoint 1, 0 at keypoint 2; 2 found
    assert keypoint_similarity(track[None], moved[None], 0.1)[0, 0] == pytest.approx(expected)
    upright = person([(10, 0), (10, 40)])  # a line: no area; the scale is a quarter of 40²
    assert keypoint_similarity(upright[None], person([(12, 0), (10, 40)])[None], 0.1)[0, 0] == pytest.approx(
        (math.exp(-4 / (2 * 400 * 0.01)) + 1.0) / 2
    )
    assert keypoint_similarity(track[None], person([(1, 1), (0, 0), (0, 0)])[None], 0.1)[0, 0] == 0.0  # nothing shared
    fragment = person([(0, 0), (0, 0), (20, 20)])  # one of the track's two keypoints, in place: half the similarity
    assert keypoint_similarity(track[None], fragment[None], 0.1)[0, 0] == pytest.approx(0.5)

    rng = np.random.default_rng(0)
    tracks, people = rng.uniform(0, 100, (4, 6, 3)), rng.uniform(0, 100, (5, 6, 3))
    tracks[..., 2] = rng.random((4, 6)) > 0.3
    people[..., 2] = rng.random((5, 6)) > 0.3
    fast = keypoint_similarity(tracks, people, 0.2)
    for t in range(4):
        found = tracks[t, :, 2] > 0
        width, height = tracks[t, found, :2].max(0) - tracks[t, found, :2].min(0)
        area = max(width * height, (max(width, height) / 2) ** 2, 1.0)
        for n in range(5):
            terms = [
                math.exp(
                    -((tracks[t, k, 0] - people[n, k, 0]) ** 2 + (tracks[t, k, 1] - people[n, k, 1]) ** 2) / (2 * area * 0.04)
                )
                for k in range(6)
                if tracks[t, k, 2] > 0 and people[n, k, 2] > 0
            ]
            assert fast[t, n] == pytest.approx(sum(terms) / found.sum())


def walking(offset_x: float, frame: int):
    """A 5-keypoint stick person 100 px tall walking right 4 px per frame."""
    x = offset_x + 4 * frame
    return person([(x, 100), (x - 10, 130), (x + 10, 130), (x - 8, 200), (x + 8, 200)])


def test_ids_persist_across_order_changes_gaps_and_new_people():
    tracker = PoseTracker(TrackerSettings(max_gap=2, optical_flow=False))
    first = tracker.update(np.stack([walking(100, 0), walking(300, 0)]))
    assert list(first) == [1, 2]
    assert list(tracker.update(np.stack([walking(300, 1), walking(100, 1)]))) == [2, 1]  # order does not matter
    assert list(tracker.update(walking(100, 2)[None])) == [1]  # person 2 missed for two frames...
    assert list(tracker.update(walking(100, 3)[None])) == [1]
    assert sorted(tracker.update(np.stack([walking(100, 4), walking(300, 4)]))) == [1, 2]  # ...and found again
    assert list(tracker.update(np.zeros((0, 5, 3)))) == []
    for _ in range(5, 8):  # three empty frames: both tracks retire (max_gap 2)
        tracker.update(np.zeros((0, 5, 3)))
    assert list(tracker.update(np.stack([walking(100, 8), walking(500, 8)]))) == [3, 4]  # new ids, never reused


def test_optical_flow_keeps_a_fast_person():
    """A textured person jumping 40 px per frame: too far for the similarity alone, found again by the flow."""
    rng = np.random.default_rng(1)
    texture = (rng.random((400, 800)) * 255).astype(np.uint8)
    texture = cv2.GaussianBlur(texture, (0, 0), 2)

    def frame(shift: int) -> np.ndarray:
        return np.roll(texture, shift, axis=1)

    ids = {}
    for flow in (True, False):
        tracker = PoseTracker(TrackerSettings(optical_flow=flow, min_similarity=0.3))
        ids[flow] = [int(tracker.update(walking(200 + 40 * f, 0)[None], frame(40 * f))[0]) for f in range(4)]
    assert ids[True] == [1, 1, 1, 1]
    assert ids[False] == [1, 2, 3, 4]


class GroundTruthBackend:
    """Stands in for a perfect network on the synthetic video: the training targets of each frame's true
    keypoints, frame after frame (the predictor's input is the frame itself: same size, no resize)."""

    def __init__(self, annotations: dict, stride: int = 8):
        self.mapping = dataset_skeleton(COCO_SPEC.category).mapping_from(COCO_SPEC.category, COCO_SPEC.visibility_flags)
        self.skeleton = dataset_skeleton(COCO_SPEC.category)
        self.frames = {image["frame_index"]: [] for image in annotations["images"]}
        frame_of = {image["id"]: image["frame_index"] for image in annotations["images"]}
        for annotation in annotations["annotations"]:
            self.frames[frame_of[annotation["image_id"]]].append(annotation["keypoints"])
        self.settings = OracleSettings(stride=stride, upsampling=1)
        self.calls = 0

    def __call__(self, batch: np.ndarray):
        people = self.frames[self.calls]
        self.calls += 1
        joints = self.mapping.convert(np.array(people, np.float64).reshape(len(people), -1, 3))
        shape = (batch.shape[1] // self.settings.stride, batch.shape[2] // self.settings.stride)
        heat, paf = perfect_maps(joints, self.skeleton.limbs, shape, self.settings)
        return heat[None], paf[None]


def video_frames(path: str):
    capture = cv2.VideoCapture(path)
    ok, frame = capture.read()
    while ok:
        yield frame
        ok, frame = capture.read()


def track_synthetic_video(tmp_path, crossings: bool, frames: int, flow: bool = True):
    summary = synthesize_video(str(tmp_path), frames, seed=5, num_people=4, crossings=crossings)
    annotations = json.loads(open(summary.annotation_file).read())
    backend = GroundTruthBackend(annotations)
    info = ModelInfo(backend.skeleton, (1.0,) * 3, (0.0,) * 3, 8)
    settings = PredictorSettings(input_shape=FRAME_SHAPE, keep_aspect_ratio_mode=None)
    predictor = Predictor(backend, info, settings)
    predictions = list(predictor.track(video_frames(summary.video), TrackerSettings(optical_flow=flow)))
    detections = {
        "categories": [{"keypoints": list(backend.skeleton.keypoints)}],
        "images": [{"frame": index, **p.to_json()} for index, p in enumerate(predictions)],
    }
    return tracking_metrics(annotations, detections), predictions


def test_no_id_switch_without_occlusion(tmp_path):
    metrics, _ = track_synthetic_video(tmp_path, crossings=False, frames=30)
    assert metrics["num_frames"] == 30
    assert metrics["num_switches"] == 0
    assert metrics["num_fragmentations"] == 0
    assert metrics["mota"] > 0.97, metrics


def test_bounded_id_switches_when_people_cross(tmp_path):
    metrics, _ = track_synthetic_video(tmp_path, crossings=True, frames=100)
    truth = json.loads((tmp_path / "annotations" / "person_keypoints_video_val.json").read_text())
    hidden = {a["track_id"] for a in truth["annotations"] if 1 in a["keypoints"][2::3]}
    assert len(hidden) == 2, "both pairs cross: the farther person of each is partly hidden for a while"
    assert metrics["num_switches"] <= 2, metrics
    assert metrics["mota"] > 0.85, metrics
