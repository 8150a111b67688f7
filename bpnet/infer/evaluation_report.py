"""Where a model fails: ``bpnet evaluate``'s report folder (``report/index.html``, ``per_image.csv`` and the worst
images rendered with the ground truth and the detections overlaid).

Every figure is pycocotools' own: the per-image AP is ``COCOeval`` restricted to one image (``params.imgIds``),
the AP per keypoint count is ``COCOeval`` with the people outside the bucket ignored (``num_keypoints`` set to 0,
which ``COCOeval`` ignores as it does crowds: detections matched to them count neither way), the AP per size is
COCO's medium/large.
"""

import copy
import csv
import dataclasses
import html
import logging
import os
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from bpnet.files import atomic_path
from bpnet.images import read_image
from bpnet.infer import render
from bpnet.infer.coco_eval import coco_from_dataset, evaluate_keypoints

logger = logging.getLogger(__name__)

KEYPOINT_BUCKETS = ((1, 5), (6, 10), (11, 17))
"""Ranges of labelled keypoints per person (inclusive) the report gives AP for (COCO people have 1..17)."""
WORST_IMAGES = 12
RENDER_WIDTH = 640
GROUND_TRUTH_COLOUR = (80, 200, 60)  # BGR green
DETECTION_COLOUR = (40, 40, 230)  # BGR red


@dataclasses.dataclass(frozen=True)
class ImageResult:
    image_id: int
    path: str
    people: int  # ground-truth people with keypoints (not crowds)
    detections: int
    ap: Optional[float]  # None: no ground-truth person with keypoints, AP undefined


def _keypoint_people(ground_truth, image_id: int) -> List[dict]:
    annotations = ground_truth.loadAnns(ground_truth.getAnnIds(imgIds=[image_id], iscrowd=False))
    return [a for a in annotations if a.get("num_keypoints", 0) > 0]


def _by_image(detections: List[dict]) -> Dict[int, List[dict]]:
    grouped: Dict[int, List[dict]] = {}
    for detection in detections:
        grouped.setdefault(detection["image_id"], []).append(detection)
    return grouped


def per_image_results(ground_truth, detections: List[dict], image_paths: Dict[int, str]) -> List[ImageResult]:
    """Each image's keypoint AP (pycocotools on that image alone), in ``image_paths`` order."""
    by_image = _by_image(detections)
    rows = []
    for image_id, path in image_paths.items():
        people = len(_keypoint_people(ground_truth, image_id))
        found = by_image.get(image_id, [])
        ap = None
        if people:  # no detection: pycocotools' AP is 0
            ap = max(0.0, evaluate_keypoints(ground_truth, found, [image_id])["AP_0.50:0.95_all"])
        rows.append(ImageResult(image_id, path, people, len(found), ap))
    return rows


def ap_by_keypoint_count(ground_truth, detections: List[dict], image_ids: Sequence[int]) -> Dict[str, Optional[float]]:
    """AP over people with a number of labelled keypoints in each :data:`KEYPOINT_BUCKETS` range (the others
    ignored); None for a range no person falls in."""
    found: Dict[str, Optional[float]] = {}
    for low, high in KEYPOINT_BUCKETS:
        dataset = copy.deepcopy(ground_truth.dataset)
        inside = 0
        for annotation in dataset["annotations"]:
            keep = low <= annotation.get("num_keypoints", 0) <= high and not annotation.get("iscrowd", 0)
            inside += keep
            if not keep:  # pycocotools ignores a person with no keypoints (its "ignore" field it overwrites)
                annotation["num_keypoints"] = 0
        name = f"{low}-{high} keypoints"
        if inside == 0:
            found[name] = None
            continue
        stats = evaluate_keypoints(coco_from_dataset(dataset), detections, image_ids)
        found[name] = max(0.0, stats["AP_0.50:0.95_all"])
    return found


def _coco_people(annotations: Sequence[dict], num_keypoints: int) -> Tuple[np.ndarray, np.ndarray]:
    """``(joints (P, K, 2), drawn (P, K))`` of COCO keypoint lists (x, y, v per keypoint; v > 0 drawn)."""
    joints = np.zeros((len(annotations), num_keypoints, 2))
    drawn = np.zeros((len(annotations), num_keypoints), bool)
    for p, annotation in enumerate(annotations):
        values = np.asarray(annotation.get("keypoints") or [0.0] * 3 * num_keypoints, float).reshape(-1, 3)[:num_keypoints]
        joints[p, : len(values)] = values[:, :2]
        drawn[p, : len(values)] = values[:, 2] > 0
    return joints, drawn


def render_comparison(
    path: str, truth: Sequence[dict], detections: Sequence[dict], limbs: Sequence[Tuple[int, int]], num_keypoints: int
) -> np.ndarray:
    """The image with the ground truth (green) and the detections (red) drawn, at most :data:`RENDER_WIDTH` wide.
    ``limbs``: 0-based keypoint index pairs in the annotation file's keypoint order."""
    image = read_image(path)
    for annotations, colour in ((truth, GROUND_TRUTH_COLOUR), (detections, DETECTION_COLOUR)):
        joints, drawn = _coco_people(annotations, num_keypoints)
        image = render.draw_skeletons(image, joints, drawn, limbs, 2, [colour] * len(annotations))
    if image.shape[1] > RENDER_WIDTH:
        height = int(round(image.shape[0] * RENDER_WIDTH / image.shape[1]))
        image = cv2.resize(image, (RENDER_WIDTH, height), interpolation=cv2.INTER_AREA)
    return image


def write_report(
    folder: str,
    ground_truth,
    detections: List[dict],
    image_paths: Dict[int, str],
    stats: Dict[str, float],
    limbs: Sequence[Tuple[int, int]],
    num_keypoints: int,
) -> str:
    """Write the report folder; returns its ``index.html``. ``limbs``: 0-based pairs in the annotation order."""
    os.makedirs(folder, exist_ok=True)
    rows = per_image_results(ground_truth, detections, image_paths)
    by_count = ap_by_keypoint_count(ground_truth, detections, list(image_paths))
    with atomic_path(os.path.join(folder, "per_image.csv")) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("image_id", "file", "people", "detections", "AP"))
        writer.writerows((r.image_id, r.path, r.people, r.detections, "" if r.ap is None else f"{r.ap:.4f}") for r in rows)
    scored = sorted((r for r in rows if r.ap is not None), key=lambda r: (r.ap, -r.people, r.image_id))
    by_image = _by_image(detections)
    rendered = []
    for rank, row in enumerate(scored[:WORST_IMAGES], 1):
        name = f"worst_{rank:02d}_{row.image_id}.jpg"
        try:
            picture = render_comparison(
                row.path, _keypoint_people(ground_truth, row.image_id), by_image.get(row.image_id, []), limbs, num_keypoints
            )
        except Exception as exc:  # noqa: BLE001 (one unreadable image must not cost the report)
            logger.warning("%s: not rendered in the report (%s)", row.path, exc)
            continue
        with atomic_path(os.path.join(folder, name)) as tmp:
            cv2.imwrite(tmp, picture)
        rendered.append((name, row))
    index = os.path.join(folder, "index.html")
    with atomic_path(index) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(_html(stats, by_count, rows, rendered))
    return index


def _table(header: Sequence[str], body: Sequence[Sequence[object]], css: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(cell))}</th>" for cell in header)
    lines = "".join("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>" for row in body)
    return f'<table class="{css}"><tr>{head}</tr>{lines}</table>'


def _ap(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _html(
    stats: Dict[str, float],
    by_count: Dict[str, Optional[float]],
    rows: Sequence[ImageResult],
    rendered: Sequence[Tuple[str, ImageResult]],
) -> str:
    sizes = [("all", stats["AP_0.50:0.95_all"]), ("medium", stats["AP_0.50:0.95_medium"]), ("large", stats["AP_0.50:0.95_large"])]
    ordered = sorted(rows, key=lambda r: (r.ap is None, r.ap if r.ap is not None else 0.0, r.image_id))
    figures = "".join(
        f'<figure><img src="{html.escape(name)}" alt="image {row.image_id}"><figcaption>'
        f"{html.escape(os.path.basename(row.path))}: AP {_ap(row.ap)}, {row.people} people, {row.detections} detections"
        "</figcaption></figure>"
        for name, row in rendered
    )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>bpnet evaluation report</title><style>"
        "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin-bottom:1.5em}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}figure{display:inline-block;margin:6px}"
        "img{max-width:640px}</style></head><body><h1>bpnet evaluation report</h1>"
        "<h2>AP by person size</h2>"
        + _table(("people", "AP"), [(name, _ap(v)) for name, v in sizes], "sizes")
        + "<h2>AP by labelled keypoints</h2>"
        + _table(("people with", "AP"), [(name, _ap(v)) for name, v in by_count.items()], "keypoint-counts")
        + f"<h2>The worst images</h2><p>Ground truth in green, detections in red; the {len(rendered)} images with the "
        "lowest AP.</p>"
        + figures
        + "<h2>Per image</h2>"
        + _table(
            ("image", "file", "people", "detections", "AP"),
            [(r.image_id, os.path.basename(r.path), r.people, r.detections, _ap(r.ap)) for r in ordered],
            "per-image",
        )
        + "</body></html>\n"
    )
