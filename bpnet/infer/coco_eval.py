"""COCO keypoint evaluation with pycocotools: the ten stats under TLT's KPI names (reference §1.3)."""

import contextlib
import io
from typing import Dict, List, Optional, Sequence

import numpy as np

KPI_NAMES = (
    "AP_0.50:0.95_all",
    "AP_0.5",
    "AP_0.75",
    "AP_0.50:0.95_medium",
    "AP_0.50:0.95_large",
    "AR_0.50:0.95_all",
    "AR_0.5",
    "AR_0.75",
    "AR_0.50:0.95_medium",
    "AR_0.50:0.95_large",
)


def coco_from_dataset(dataset: dict):
    """A pycocotools ``COCO`` object of an annotation dataset held in memory (``images``, ``annotations``,
    ``categories``), without its index chatter."""
    from pycocotools.coco import COCO

    ground_truth = COCO()
    ground_truth.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth.createIndex()
    return ground_truth


def evaluate_keypoints(
    ground_truth,
    detections: List[dict],
    image_ids: Optional[Sequence[int]] = None,
    verbose: bool = False,
    sigmas: Optional[np.ndarray] = None,
) -> Dict[str, float]:
    """``COCOeval(iouType="keypoints")`` stats 0..9 for COCO-format ``detections`` against a ``COCO`` object.

    With no detections every stat is 0 (pycocotools cannot load an empty result list). ``detections`` are left
    as they are: pycocotools' ``loadRes`` adds an ``id``, an ``area`` and a ``bbox`` (spanning the unfound
    keypoints' zeros too) to each dict it loads, so it is given copies.
    ``verbose`` lets pycocotools print its AP table; ``sigmas``: per-keypoint OKS constants in place of COCO's
    17 (``params.kpt_oks_sigmas``, for other skeletons).
    """
    from pycocotools.cocoeval import COCOeval

    if not detections:
        return {name: 0.0 for name in KPI_NAMES}
    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with quiet:
        results = ground_truth.loadRes([dict(detection) for detection in detections])
        evaluator = COCOeval(ground_truth, results, "keypoints")
        if image_ids is not None:
            evaluator.params.imgIds = list(image_ids)
        if sigmas is not None:
            evaluator.params.kpt_oks_sigmas = np.asarray(sigmas, np.float64)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(value) for name, value in zip(KPI_NAMES, np.asarray(evaluator.stats))}
