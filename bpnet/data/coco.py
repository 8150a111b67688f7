"""Reading a COCO-format keypoint annotation file into validated per-image person lists.

Every value is treated as hostile. Bad annotations (wrong ``keypoints`` length, unknown visibility
values, negative, empty or malformed bbox, malformed polygons or RLE, an ``iscrowd`` other than 0/1,
unknown image id) are skipped and counted by reason; so are bad image entries (missing fields, a
declared size over the pixel budget (:func:`bpnet.images.max_image_pixels`: a loss mask is built in
memory at the image's size, so a crafted entry must not be able to ask for gigabytes), an id used by two
entries: both are dropped, since either could own the annotations). A file that is missing, is not JSON, or
lacks ``images``/``annotations`` raises :class:`~bpnet.errors.BpnetError`.

Segmentations are checked before pycocotools sees them (it crashes or reads out of bounds on some
malformed input): polygon coordinates must lie within one image size of the image, and RLE counts
(compressed or not) must be non-negative and add up to the declared ``size``, which must be the
image's ``[height, width]``.
"""

import collections
import dataclasses
import json
import math
import os
from typing import Any, Counter, Dict, List, Optional, Sequence, Tuple

import numpy as np

from bpnet.errors import BpnetError
from bpnet.images import max_image_pixels


@dataclasses.dataclass(frozen=True)
class Person:
    """One valid person annotation. ``joints`` is ``(Kd, 3)`` float64 [x, y, dataset flag]."""

    annotation_index: int  # position among the image's annotations (TLT's person_idx)
    joints: np.ndarray
    bbox: Tuple[float, float, float, float]  # x, y, w, h in pixels
    area: float
    iscrowd: bool
    num_keypoints: int  # joints with a flag other than the dataset's "not labeled" value
    segmentation: Any

    @property
    def center(self) -> Tuple[float, float]:
        """Bbox centre (x, y)."""
        x, y, w, h = self.bbox
        return (x + w / 2.0, y + h / 2.0)

    @property
    def scale(self) -> float:
        """Bbox height (TLT's person scale)."""
        return self.bbox[3]


@dataclasses.dataclass(frozen=True)
class ImageEntry:
    """An image with its valid person annotations, in annotation-file order."""

    image_id: int
    file_name: str
    height: int
    width: int
    persons: Tuple[Person, ...]


@dataclasses.dataclass
class CocoPersons:
    images: List[ImageEntry]
    num_image_entries: int
    bad_annotations: Counter[str]
    bad_images: Counter[str]


def _load_json(path: str, field: str) -> Dict[str, Any]:
    if not os.path.isfile(path):
        raise BpnetError(f"{path}: annotation file not found (dataset spec field {field})")
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as exc:
        raise BpnetError(f"{path}: line {exc.lineno}: invalid JSON: {exc.msg}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BpnetError(f"{path}: cannot read annotation file: {exc}") from None
    if not isinstance(data, dict):
        raise BpnetError(f"{path}: expected a COCO mapping at the top level")
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise BpnetError(f"{path}: {key}: missing or not a list")
    return data


def is_integer(value: Any) -> bool:
    """Whether a JSON value is an integer (``True``/``False`` are not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _finite_numbers(values: Any, count: Optional[int] = None) -> bool:
    if not isinstance(values, list) or (count is not None and len(values) != count):
        return False
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def decode_compressed_counts(text: str) -> Optional[List[int]]:
    """The run lengths of a COCO compressed RLE string, or None when the string is malformed.

    The format (pycocotools' ``rleFrString``): each count is a little-endian sequence of 5-bit groups,
    one character each (``chr(48 + group | continuation << 5)``), sign-extended from the last group;
    from the third count on, each is stored as the difference to the count two places before.
    """
    counts: List[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(text):
                return None
            code = ord(text[position]) - 48
            if not 0 <= code < 64:
                return None
            value |= (code & 0x1F) << shift
            more = bool(code & 0x20)
            position += 1
            shift += 5
            if not more and code & 0x10:
                value |= -1 << shift
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def _rle_problem(segmentation: Dict[str, Any], height: int, width: int) -> Optional[str]:
    if not _finite_numbers(segmentation.get("size"), 2) or list(segmentation["size"]) != [height, width]:
        return "segmentation RLE size is not the image's [height, width]"
    counts = segmentation.get("counts")
    if isinstance(counts, str):
        counts = decode_compressed_counts(counts)
    elif isinstance(counts, list) and not all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
        counts = None
    if not isinstance(counts, list) or min(counts, default=0) < 0 or sum(counts) != height * width:
        return "segmentation RLE counts are malformed or do not cover the image"
    return None


def _segmentation_problem(segmentation: Any, height: int, width: int) -> Optional[str]:
    if segmentation is None:
        return None
    if isinstance(segmentation, list):
        for polygon in segmentation:
            if not _finite_numbers(polygon) or len(polygon) < 6 or len(polygon) % 2:
                return "segmentation polygon is not a list of >= 3 (x, y) points"
            xs, ys = polygon[0::2], polygon[1::2]
            if min(xs) < -width or max(xs) > 2 * width or min(ys) < -height or max(ys) > 2 * height:
                return "segmentation polygon lies far outside the image"
        return None
    if isinstance(segmentation, dict) and "counts" in segmentation:
        return _rle_problem(segmentation, height, width)
    return "segmentation is neither polygons nor RLE"


def _parse_person(
    ann: Dict[str, Any],
    index: int,
    num_keypoints: int,
    flag_values: Sequence[int],
    unlabeled_value: Optional[int],
    height: int,
    width: int,
) -> Tuple[Optional[Person], Optional[str]]:
    """Validate one annotation of an image of ``height × width``; returns (person, None) or (None, reason)."""
    bbox: Any = ann.get("bbox")
    if not _finite_numbers(bbox, 4):
        return None, "bbox is not 4 numbers"
    if min(bbox) < 0:
        return None, "bbox is negative"
    if bbox[2] <= 0 or bbox[3] <= 0:
        return None, "bbox has zero width or height"
    iscrowd = ann.get("iscrowd", 0)
    if iscrowd not in (0, 1) or isinstance(iscrowd, float):
        return None, "iscrowd is not 0 or 1"
    keypoints = ann.get("keypoints")
    if keypoints is None:
        joints = np.zeros((num_keypoints, 3), dtype=np.float64)
        if unlabeled_value is not None:
            joints[:, 2] = unlabeled_value
    else:
        if not _finite_numbers(keypoints, 3 * num_keypoints):
            return None, f"keypoints is not {3 * num_keypoints} numbers"
        joints = np.asarray(keypoints, dtype=np.float64).reshape(num_keypoints, 3)
        if not np.all(np.isin(joints[:, 2], flag_values)):
            return None, "keypoints has an unknown visibility value"
    problem = _segmentation_problem(ann.get("segmentation"), height, width)
    if problem:
        return None, problem
    area = ann.get("area")
    if not isinstance(area, (int, float)) or isinstance(area, bool) or not math.isfinite(area):
        area = float(bbox[2] * bbox[3])
    labeled = joints[:, 2] != unlabeled_value if unlabeled_value is not None else np.ones(num_keypoints, bool)
    return (
        Person(
            annotation_index=index,
            joints=joints,
            bbox=(float(bbox[0]), float(bbox[1]), float(bbox[2]), float(bbox[3])),
            area=float(area),
            iscrowd=bool(iscrowd),
            num_keypoints=int(np.count_nonzero(labeled)),
            segmentation=ann.get("segmentation"),
        ),
        None,
    )


def read_coco_persons(
    path: str, field: str, category_id: int, num_keypoints: int, flag_values: Sequence[int], unlabeled_value: Optional[int]
) -> CocoPersons:
    """Parse ``path`` into images with their valid persons of ``category_id``.

    ``flag_values`` are the dataset's visibility values (from the dataset spec) and
    ``unlabeled_value`` the one meaning "not labeled"; ``field`` names the spec field for messages.
    """
    data = _load_json(path, field)
    bad_annotations: Counter[str] = collections.Counter()
    bad_images: Counter[str] = collections.Counter()
    images: Dict[int, Dict[str, Any]] = {}
    duplicated: Counter[int] = collections.Counter()
    budget = max_image_pixels()
    for entry in data["images"]:
        ok = isinstance(entry, dict) and is_integer(entry.get("id")) and isinstance(entry.get("file_name"), str)
        ok = ok and all(is_integer(entry.get(k)) and entry[k] > 0 for k in ("height", "width"))
        if not ok:
            bad_images["image entry lacks id, file_name, height or width"] += 1
        elif entry["height"] * entry["width"] > budget:
            bad_images[f"declared image size over {budget} pixels"] += 1
        elif entry["id"] in images or entry["id"] in duplicated:
            duplicated[entry["id"]] += 1
            images.pop(entry["id"], None)
        else:
            images[entry["id"]] = entry
    for count in duplicated.values():
        bad_images["image id used by several image entries"] += count + 1
    for image_id in duplicated:
        images[image_id] = {}
    per_image: Dict[int, List[Dict[str, Any]]] = collections.defaultdict(list)
    for ann in data["annotations"]:
        if not isinstance(ann, dict):
            bad_annotations["annotation is not a mapping"] += 1
        elif ann.get("category_id") != category_id:
            continue
        elif not is_integer(ann.get("image_id")) or ann["image_id"] not in images:
            bad_annotations["image_id names no image"] += 1
        else:
            per_image[ann["image_id"]].append(ann)
    entries = []
    for image_id, entry in images.items():
        if not entry:
            if per_image.get(image_id):
                bad_annotations["image_id names several images"] += len(per_image[image_id])
            continue
        persons: List[Person] = []
        for index, ann in enumerate(per_image.get(image_id, [])):
            person, reason = _parse_person(
                ann, index, num_keypoints, flag_values, unlabeled_value, entry["height"], entry["width"]
            )
            if person is None:
                bad_annotations[reason or "invalid"] += 1
            else:
                persons.append(person)
        entries.append(ImageEntry(image_id, entry["file_name"], entry["height"], entry["width"], tuple(persons)))
    return CocoPersons(entries, len(data["images"]), bad_annotations, bad_images)
