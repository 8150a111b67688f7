"""Tracking quality against ground truth with ids (``bpnet synthesize --video``, PoseTrack-style COCO
files), computed by the ``motmetrics`` package (an independent implementation of the CLEAR-MOT and ID
metrics; installed with ``bpnet[test]``).

A predicted person and a true one can be matched when their object keypoint similarity
(:func:`bpnet.infer.track.keypoint_similarity`, the true person's keypoint box as the scale, over the
keypoints both skeletons name) is at least ``min_similarity``; motmetrics is given ``1 − OKS`` as the
distance and does the matching, the id-switch and fragmentation counting, MOTA and IDF1.
"""

from typing import Dict, List, Sequence

import numpy as np

from bpnet.errors import BpnetError
from bpnet.infer.track import keypoint_similarity

METRICS = ("num_frames", "mota", "idf1", "num_switches", "num_fragmentations", "num_misses", "num_false_positives")


def _true_people(ground_truth: Dict, names: Sequence[str]) -> Dict[int, List]:
    """frame index → [(track id, (K, 3) keypoints in ``names`` order)]."""
    category = ground_truth["categories"][0]
    order = [category["keypoints"].index(n) if n in category["keypoints"] else -1 for n in names]
    frames = {image["id"]: image["frame_index"] for image in ground_truth["images"]}
    people: Dict[int, List] = {index: [] for index in frames.values()}
    for annotation in ground_truth["annotations"]:
        if annotation.get("iscrowd") or "track_id" not in annotation:
            continue
        values = np.asarray(annotation["keypoints"], np.float64).reshape(-1, 3)
        joints = np.zeros((len(names), 3))
        for k, source in enumerate(order):
            if source >= 0 and values[source, 2] > 0:
                joints[k] = (values[source, 0], values[source, 1], 1.0)
        if joints[:, 2].any():
            people[frames[annotation["image_id"]]].append((annotation["track_id"], joints))
    return people


def tracking_metrics(
    ground_truth: Dict, detections: Dict, min_similarity: float = 0.5, tolerance: float = 0.1
) -> Dict[str, float]:
    """:data:`METRICS` of a ``detections.json`` (``bpnet inference --track`` on a video) against the COCO
    ground truth with ``track_id``s of the same video (frames matched by ``frame`` / ``frame_index``)."""
    try:
        import motmetrics
    except ImportError:
        raise BpnetError("tracking metrics need the motmetrics package (pip install motmetrics)") from None
    names = detections["categories"][0]["keypoints"]
    truth = _true_people(ground_truth, names)
    accumulator = motmetrics.MOTAccumulator(auto_id=True)
    predicted = {entry["frame"]: entry for entry in detections["images"]}
    for frame in sorted(truth):
        entry = predicted.get(frame, {"keypoints": [], "track_ids": []})
        if "track_ids" not in entry:
            raise BpnetError(f"frame {frame}: detections without track_ids (run inference with --track)")
        people = np.asarray(entry["keypoints"], np.float64).reshape(len(entry["keypoints"]), len(names), 2)
        found = np.any(people != 0, axis=-1, keepdims=True).astype(np.float64)
        hypotheses = np.concatenate([people, found], axis=-1)
        true_ids = [track_id for track_id, _ in truth[frame]]
        true_joints = np.stack([joints for _, joints in truth[frame]]) if true_ids else np.zeros((0, len(names), 3))
        similarity = keypoint_similarity(true_joints, hypotheses, tolerance)
        distances = np.where(similarity >= min_similarity, 1.0 - similarity, np.nan)
        accumulator.update(true_ids, list(entry["track_ids"]), distances)
    summary = motmetrics.metrics.create().compute(accumulator, metrics=list(METRICS), name="tracking")
    return {name: float(summary[name].iloc[0]) for name in METRICS}
