"""Decoder on hand-built maps, the COCO writer against pycocotools' reference stats, the oracle floor."""

import contextlib
import dataclasses
import io
import json

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from bpnet.coco_eval import KPI_NAMES, evaluate_keypoints
from bpnet.data import targets
from bpnet.decode import DecoderParams, decode, find_peaks, limb_candidates, match
from bpnet.oracle import ORACLE_DECODER, OracleSettings, dataset_skeleton, fully_connected, run_oracle
from bpnet.results import Prediction
from bpnet.skeleton import Visibility
from bpnet.specs import load_dataset_spec

from .conftest import BODY18, REPO_ROOT, SHARED_DATA

COCO_SPEC = load_dataset_spec(REPO_ROOT / "data_pose_config" / "coco_spec.json")


def upsampled_maps(joints, shape=(46, 46), stride=8):
    heat = targets.heatmaps(joints, shape, stride, 7.0)
    paf = targets.pafs(joints, BODY18.limbs, shape, stride, 1.0)
    size = (shape[1] * stride, shape[0] * stride)
    return cv2.resize(heat, size, interpolation=cv2.INTER_CUBIC), cv2.resize(paf, size, interpolation=cv2.INTER_CUBIC)


def person(centre_x, centre_y, tilt):
    """An upright 18-joint person (all joints visible) sheared by ``tilt`` pixels per pixel of height."""
    layout = {"nose": (0, -80), "neck": (0, -60), "right_shoulder": (-20, -60), "right_elbow": (-28, -30),
              "right_wrist": (-30, 0), "left_shoulder": (20, -60), "left_elbow": (28, -30), "left_wrist": (30, 0),
              "right_hip": (-12, 10), "right_knee": (-14, 50), "right_ankle": (-15, 90), "left_hip": (12, 10),
              "left_knee": (14, 50), "left_ankle": (15, 90), "right_eye": (-5, -85), "left_eye": (5, -85),
              "right_ear": (-10, -82), "left_ear": (10, -82)}
    joints = np.zeros((18, 3))
    for name, (dx, dy) in layout.items():
        joints[BODY18.index(name)] = (centre_x + dx + tilt * dy, centre_y + dy, Visibility.VISIBLE)
    return joints


def test_two_people_whose_limbs_cross_are_decoded_into_the_right_skeletons():
    people = np.stack([person(160, 190, 0.9), person(215, 190, -0.9)])  # arms and legs cross between them
    heat, paf = upsampled_maps(people)
    found = decode(heat, paf, BODY18.limbs, DecoderParams(subpixel=True))
    assert len(found) == 2
    for truth in people:
        errors = [np.abs(d[:, :2] - truth[:, :2]).max() for d in found.keypoints]
        best = found.keypoints[int(np.argmin(errors))]
        assert np.all(best[:, 2] > 0)
        np.testing.assert_allclose(best[:, :2], truth[:, :2], atol=1.5)


def test_thresholds_from_the_spec_are_honoured():
    heat, paf = upsampled_maps(person(180, 190, 0.0)[None])
    assert len(decode(heat, paf, BODY18.limbs, DecoderParams(heatmap_threshold=0.1))) == 1
    assert len(decode(heat, paf, BODY18.limbs, DecoderParams(heatmap_threshold=1.01))) == 0
    assert len(decode(heat, paf, BODY18.limbs, DecoderParams(paf_threshold=1.01))) == 0


@pytest.mark.parametrize("subpixel", [False, True])
def test_coarse_to_fine_search_finds_the_full_search_peaks(subpixel):
    people = np.stack([person(90, 110, 0.3), person(200, 120, -0.2), person(300, 250, 0.0), person(150, 260, 0.5)])
    heat, _ = upsampled_maps(people)
    full = find_peaks(heat, DecoderParams(subpixel=subpixel), 18)
    coarse = find_peaks(heat, DecoderParams(subpixel=subpixel, search_step=4), 18)
    assert sum(len(p) for p in full) >= 4 * 18
    for full_peaks, coarse_peaks in zip(full, coarse):  # the same peaks; ties of a flat top may keep one pixel of two
        distances = np.abs(full_peaks[:, None, :2] - coarse_peaks[None, :, :2]).max(-1)
        assert np.all(distances.min(axis=0) <= 1e-4), "every coarse peak is a full-search peak"
        assert np.all(distances.min(axis=1) <= 1.0), "every full-search peak is found within a pixel"
        assert len(coarse_peaks) >= 4


def test_coarse_search_decodes_the_crossing_people():
    people = np.stack([person(160, 190, 0.9), person(215, 190, -0.9)])
    heat, paf = upsampled_maps(people)
    found = decode(heat, paf, BODY18.limbs, DecoderParams(search_step=4))
    assert len(found) == 2 and np.all(found.keypoints[..., 2] > 0)


def test_greedy_and_optimal_matching():
    # [a, b, score]: greedy takes (0, 0) first and strands the rest; optimal finds the best total
    candidates = np.array([[0, 0, 0.9], [0, 1, 0.8], [1, 0, 0.85]])
    assert match(candidates, "greedy")[:, :2].tolist() == [[0, 0]]
    assert sorted(match(candidates, "optimal")[:, :2].tolist()) == [[0, 1], [1, 0]]


def test_line_integral_prefers_the_true_limb():
    pafs = np.zeros((50, 50, 2))
    pafs[10, 5:40, 0] = 1.0  # a horizontal limb from (5, 10) to (39, 10)
    starts = np.array([[5.0, 10.0, 1.0]])
    ends = np.array([[39.0, 10.0, 1.0], [39.0, 30.0, 1.0]])
    (candidates,) = limb_candidates([starts, ends], pafs, [(0, 1)], DecoderParams(), 50)
    assert candidates[:, :2].tolist() == [[0, 0]] and candidates[0, 2] == pytest.approx(1.0, abs=1e-3)


def test_maps_that_do_not_fit_the_skeleton_are_refused():
    with pytest.raises(ValueError, match="do not match the skeleton"):
        decode(np.zeros((8, 8, 19)), np.zeros((8, 8, 36)), BODY18.limbs)


def test_coco_writer_reproduces_the_reference_stats():
    folder = SHARED_DATA / "coco_eval_reference"
    if not folder.exists():
        pytest.skip(f"reference data not found at {folder}")
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(folder / "gt_dataset.json"))
    coco17 = dataset_skeleton(COCO_SPEC.category)
    detections = []
    for entry in json.loads((folder / "dt_dataset.json").read_text()):
        keypoints = np.array(entry["keypoints"], dtype=np.float64).reshape(1, 17, 3)
        prediction = Prediction(keypoints, np.array([entry["score"]]), coco17)
        detections += prediction.to_coco(entry["image_id"], COCO_SPEC.category.keypoints)
    stats = evaluate_keypoints(coco, detections)
    expected = json.loads((folder / "expected_stats.json").read_text())["pycocotools_keypoints_stats"]
    assert [stats[name] for name in KPI_NAMES] == expected


@pytest.mark.integration
def test_oracle_on_real_coco_annotations(coco_mini):
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(coco_mini / "annotations" / "person_keypoints_train2017.json"))
    coco17 = dataset_skeleton(COCO_SPEC.category)
    stats = run_oracle(coco, COCO_SPEC.category, COCO_SPEC.visibility_flags, fully_connected(coco17), OracleSettings())
    assert stats["AP_0.50:0.95_all"] >= 0.95 and stats["AP_0.5"] >= 0.97
    merging = OracleSettings(decoder=dataclasses.replace(ORACLE_DECODER, merge_distance=1.0))
    stats = run_oracle(coco, COCO_SPEC.category, COCO_SPEC.visibility_flags, coco17, merging)
    assert stats["AP_0.50:0.95_all"] >= 0.90 and stats["AP_0.5"] >= 0.95
