"""A synthetic COCO-format person-keypoint dataset of articulated figures (``bpnet synthesize``).

Each image: a textured background with distractor shapes, then 1–6 figures drawn back to front, each
placed where it hides at most a quarter of any earlier figure's keypoints (a figure that finds no such
place in 20 tries is left out). A figure is a 17-keypoint COCO skeleton posed with joint-angle limits
and plausible proportions, drawn as tapered limbs, a torso and a head, in its own colours and stripes.
Annotations are exact:

* keypoints in image pixels (x right, y down), visibility 2 where the figure's own pixels are on top,
  1 where a figure in front covers it, 0 (and x = y = 0) outside the image;
* ``segmentation`` polygons of the figure's visible pixels, ``area`` the polygons' area (as COCO),
  ``bbox`` the visible pixels' box;
* some figures have no keypoints (``num_keypoints`` 0) and some images a crowd region (``iscrowd`` 1,
  RLE), so the loss-mask path of ``dataset_convert`` is exercised.

Deterministic: image ``i`` is drawn from ``numpy.random.default_rng([seed, i])`` alone.
"""

import dataclasses
import json
import math
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from bpnet.files import atomic_path
from bpnet.resources import resource_path
from bpnet.specs import load_dataset_spec

_COCO = load_dataset_spec(str(resource_path("data_pose_config", "coco_spec.json"))).category
COCO_KEYPOINTS = tuple(_COCO.keypoints)
"""The 17 COCO keypoints, from the shipped ``coco_spec.json`` (its one owner)."""
COCO_SKELETON = tuple(tuple(limb) for limb in _COCO.skeleton)
"""COCO's 1-based limb pairs, from the same file."""
_K = {name: i for i, name in enumerate(COCO_KEYPOINTS)}
MAX_HIDDEN_KEYPOINTS = 0.25
"""Figures overlap and occlude each other, but each keeps at least 75% of its keypoints in view: placed
anywhere, a third of them had more than 30% hidden, and occluded keypoints can only be guessed."""
PLACEMENT_TRIES = 20


@dataclasses.dataclass(frozen=True)
class Figure:
    """One drawn figure: ``keypoints (17, 2)`` x, y in image pixels; ``silhouette (H, W)`` bool, every pixel
    drawn for it; ``visible (H, W)`` bool, those no later figure covers."""

    keypoints: np.ndarray
    silhouette: np.ndarray
    visible: np.ndarray
    labeled: bool
    track_id: Optional[int] = None  # the person's identity across a video's frames (bpnet.synthesize_video)


@dataclasses.dataclass(frozen=True)
class Scene:
    """An image and its figures, back to front; ``crowd`` (H, W) bool, the crowd region (may be empty)."""

    image: np.ndarray
    figures: List[Figure]
    crowd: np.ndarray


def _rotate(angle: float) -> np.ndarray:
    return np.array([math.sin(angle), math.cos(angle)])  # 0 rad points down (+y), positive turns to +x


@dataclasses.dataclass(frozen=True)
class Posture:
    """A figure's joint angles in radians (0 points down, positive turns towards image +x): the body's
    ``lean``, the head's tilt relative to it, and per side (left, right) how far the upper arm, forearm,
    thigh and shin swing outwards from the limb above (the shin's ``knee`` bend inwards)."""

    lean: float
    head_tilt: float
    shoulder: Tuple[float, float]
    elbow: Tuple[float, float]
    hip: Tuple[float, float]
    knee: Tuple[float, float]


def random_posture(rng: np.random.Generator) -> Posture:
    """A random standing posture within the joint-angle limits."""
    lean = rng.uniform(-0.25, 0.25)
    head_tilt = rng.uniform(-0.3, 0.3)
    sides = []
    for _ in range(2):  # left, then right
        shoulder, elbow, hip = rng.uniform(-0.4, 2.6), rng.uniform(-0.2, 2.0), rng.uniform(-0.25, 0.9)
        knee = rng.uniform(0.0, 1.2) * (rng.random() < 0.5)
        sides.append((shoulder, elbow, hip, knee))
    left, right = sides
    return Posture(lean, head_tilt, (left[0], right[0]), (left[1], right[1]), (left[2], right[2]), (left[3], right[3]))


def pose(rng: np.random.Generator, height: float, foot: Tuple[float, float]) -> np.ndarray:
    """``(17, 2)`` keypoints of a figure ``height`` pixels tall in a random posture around ``foot`` (x, y)."""
    return posed(random_posture(rng), height, foot)


def posed(posture: Posture, height: float, foot: Tuple[float, float]) -> np.ndarray:
    """``(17, 2)`` keypoints of a figure ``height`` pixels tall standing around ``foot`` (x, y), facing the
    camera: its left side is on the image's right. (The figures are left-right symmetric, so a figure
    seen from behind would be indistinguishable from one seen from the front with its labels swapped.)"""
    lean = posture.lean
    hip_centre = np.array(foot, dtype=np.float64) - [0.0, 0.5 * height]
    up = -_rotate(lean)
    across = np.array([-up[1], up[0]])  # towards the figure's left, in the image
    shoulder_centre = hip_centre + up * 0.30 * height
    points = np.zeros((17, 2))
    points[_K["left_shoulder"]] = shoulder_centre + across * 0.11 * height
    points[_K["right_shoulder"]] = shoulder_centre - across * 0.11 * height
    points[_K["left_hip"]] = hip_centre + across * 0.07 * height
    points[_K["right_hip"]] = hip_centre - across * 0.07 * height
    head_tilt = lean + posture.head_tilt
    nose = shoulder_centre - _rotate(head_tilt) * 0.13 * height
    points[_K["nose"]] = nose
    head_up = -_rotate(head_tilt)
    head_across = np.array([-head_up[1], head_up[0]])
    for index, (side, outward) in enumerate((("left", 1.0), ("right", -1.0))):  # outward +1: towards image +x
        points[_K[f"{side}_eye"]] = nose + head_up * 0.025 * height + head_across * outward * 0.025 * height
        points[_K[f"{side}_ear"]] = nose + head_up * 0.01 * height + head_across * outward * 0.055 * height
        shoulder_angle = lean + outward * posture.shoulder[index]
        elbow_angle = shoulder_angle + outward * posture.elbow[index]
        elbow = points[_K[f"{side}_shoulder"]] + _rotate(shoulder_angle) * 0.17 * height
        points[_K[f"{side}_elbow"]] = elbow
        points[_K[f"{side}_wrist"]] = elbow + _rotate(elbow_angle) * 0.15 * height
        hip_angle = lean + outward * posture.hip[index]
        knee_angle = hip_angle - outward * posture.knee[index]
        knee = points[_K[f"{side}_hip"]] + _rotate(hip_angle) * 0.24 * height
        points[_K[f"{side}_knee"]] = knee
        points[_K[f"{side}_ankle"]] = knee + _rotate(knee_angle) * 0.23 * height
    return points


_BODY_PARTS = (  # (start, end, width at start, width at end) in units of figure height; drawn in order
    ("left_hip", "left_knee", 0.055, 0.04),
    ("left_knee", "left_ankle", 0.04, 0.028),
    ("right_hip", "right_knee", 0.055, 0.04),
    ("right_knee", "right_ankle", 0.04, 0.028),
    ("left_shoulder", "left_elbow", 0.04, 0.032),
    ("left_elbow", "left_wrist", 0.032, 0.024),
    ("right_shoulder", "right_elbow", 0.04, 0.032),
    ("right_elbow", "right_wrist", 0.032, 0.024),
)


def _tapered(start: np.ndarray, end: np.ndarray, r0: float, r1: float) -> np.ndarray:
    direction = end - start
    length = max(np.linalg.norm(direction), 1e-6)
    normal = np.array([-direction[1], direction[0]]) / length
    return np.array([start + normal * r0, end + normal * r1, end - normal * r1, start - normal * r0])


def _fill(canvas: np.ndarray, polygon: np.ndarray, value) -> None:
    cv2.fillPoly(canvas, [np.round(polygon * 16).astype(np.int32)], value, lineType=cv2.LINE_8, shift=4)


def _disc(canvas: np.ndarray, centre: np.ndarray, radius: float, value) -> None:
    cv2.circle(
        canvas, tuple(int(v) for v in np.round(centre * 16)), int(round(radius * 16)), value, -1, lineType=cv2.LINE_8, shift=4
    )


def figure_silhouette(points: np.ndarray, height: float, shape: Tuple[int, int]) -> Dict[str, np.ndarray]:
    """Masks (uint8 0/1) of a figure's parts: ``legs``, ``arms``, ``torso``, ``head``, ``ears``, ``face`` (eyes
    and nose as dots, so the face keypoints can be seen, not just guessed from the head)."""
    parts = {name: np.zeros(shape, np.uint8) for name in ("legs", "arms", "torso", "head", "ears", "face")}
    for start, end, r0, r1 in _BODY_PARTS:
        target = parts["legs" if "hip" in start or "knee" in start else "arms"]
        a, b = points[_K[start]], points[_K[end]]
        _fill(target, _tapered(a, b, r0 * height, r1 * height), 1)
        _disc(target, a, r0 * height, 1)
        _disc(target, b, r1 * height, 1)
    torso = np.array([points[_K["left_shoulder"]], points[_K["right_shoulder"]], points[_K["right_hip"]], points[_K["left_hip"]]])
    centre = torso.mean(axis=0)
    _fill(parts["torso"], centre + (torso - centre) * 1.15, 1)
    head_centre = (points[_K["left_ear"]] + points[_K["right_ear"]] + points[_K["nose"]]) / 3
    neck = (points[_K["left_shoulder"]] + points[_K["right_shoulder"]]) / 2
    _fill(parts["torso"], _tapered(neck, head_centre, 0.035 * height, 0.03 * height), 1)
    _disc(parts["head"], head_centre, 0.075 * height, 1)
    for side in ("left", "right"):
        _disc(parts["ears"], points[_K[f"{side}_ear"]], 0.022 * height, 1)
        _disc(parts["face"], points[_K[f"{side}_eye"]], 0.011 * height, 1)
    _disc(parts["face"], points[_K["nose"]], 0.012 * height, 1)
    return parts


def silhouette_union(parts: Dict[str, np.ndarray]) -> np.ndarray:
    """``(H, W)`` bool: every pixel of a figure's parts."""
    return np.any(np.stack(list(parts.values())), axis=0)


def _texture(rng: np.random.Generator, shape: Tuple[int, int], colour: np.ndarray) -> np.ndarray:
    """A colour with stripes or noise: ``(H, W, 3)`` uint8."""
    height, width = shape
    base = np.broadcast_to(colour.astype(np.float32), (height, width, 3)).copy()
    if rng.random() < 0.5:
        period = rng.uniform(4, 12)
        angle = rng.uniform(0, math.pi)
        ys, xs = np.mgrid[:height, :width]
        stripes = np.sin((xs * math.cos(angle) + ys * math.sin(angle)) * 2 * math.pi / period) > 0
        base[stripes] *= rng.uniform(0.6, 0.85)
    base += rng.normal(0, 6, (height, width, 1))
    return np.clip(base, 0, 255).astype(np.uint8)


def background(rng: np.random.Generator, shape: Tuple[int, int]) -> np.ndarray:
    """A ``shape`` (H, W) BGR uint8 background: a noisy colour ramp with boxes, discs and poles."""
    height, width = shape
    top, bottom = rng.uniform(40, 230, 3), rng.uniform(40, 230, 3)
    ramp = np.linspace(0.0, 1.0, height)[:, None, None]
    image = (top * (1 - ramp) + bottom * ramp) * np.ones((1, width, 1))
    image += rng.normal(0, 8, (height, width, 1))
    image = np.clip(image, 0, 255).astype(np.uint8)
    for _ in range(rng.integers(3, 9)):  # distractors: boxes, discs, poles
        colour = tuple(int(c) for c in rng.uniform(0, 255, 3))
        x, y = int(rng.uniform(0, width)), int(rng.uniform(0, height))
        size = int(rng.uniform(8, 0.3 * min(height, width)))
        kind = rng.integers(3)
        if kind == 0:
            cv2.rectangle(image, (x, y), (x + size, y + int(size * rng.uniform(0.3, 1.5))), colour, -1)
        elif kind == 1:
            cv2.circle(image, (x, y), size // 2, colour, -1)
        else:
            cv2.line(image, (x, y), (x + int(rng.uniform(-1, 1) * size), y + size), colour, int(rng.integers(2, 6)))
    return image


def paint_figure(image: np.ndarray, rng: np.random.Generator, parts: Dict[str, np.ndarray]) -> None:
    """Paint a figure's part masks (:func:`figure_silhouette`) into ``image`` in textured colours drawn from
    ``rng`` (the same ``rng`` state paints the same figure the same way)."""
    skin = np.array([rng.uniform(60, 200), rng.uniform(90, 210), rng.uniform(140, 240)])
    colours = {
        "head": skin,
        "arms": rng.uniform(0, 255, 3),
        "torso": rng.uniform(0, 255, 3),
        "legs": rng.uniform(0, 255, 3),
        "ears": skin * 0.75,
        "face": skin * 0.3,
    }
    if rng.random() < 0.5:
        colours["arms"] = colours["torso"]
    for name in ("legs", "torso", "arms", "head", "ears", "face"):
        mask = parts[name].astype(bool)
        if mask.any():
            ys, xs = np.nonzero(mask)
            box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
            texture = _texture(rng, (box[0].stop - box[0].start, box[1].stop - box[1].start), colours[name])
            region = image[box]
            region[mask[box]] = texture[mask[box]]


def render_scene(rng: np.random.Generator, min_size: int = 200, max_size: int = 320, max_people: int = 6) -> Scene:
    """One random scene (see the module docstring)."""
    height, width = (int(rng.integers(min_size, max_size + 1)) for _ in range(2))
    image = background(rng, (height, width))
    crowd = np.zeros((height, width), bool)
    if rng.random() < 0.15:  # a crowd: a band of small unlabeled figures, annotated as one region
        band_top = rng.uniform(0.05, 0.5) * height
        for _ in range(rng.integers(4, 9)):
            small = rng.uniform(0.12, 0.2) * height
            foot = (rng.uniform(0, width), band_top + small)
            parts = figure_silhouette(pose(rng, small, foot), small, (height, width))
            paint_figure(image, rng, parts)
            crowd |= silhouette_union(parts)
    figures: List[Figure] = []
    count = int(rng.integers(1, max_people + 1))
    for _ in range(count):
        placed = _place_figure(rng, figures, (height, width))
        if placed is None:
            continue  # no room left that keeps the earlier figures visible enough
        points, parts, silhouette = placed
        paint_figure(image, rng, parts)
        for earlier in figures:
            earlier.visible[silhouette] = False  # now covered
        crowd[silhouette] = False
        figures.append(Figure(points, silhouette, silhouette.copy(), labeled=rng.random() > 0.08))
    return Scene(image, figures, crowd)


def hidden_fraction(figure: Figure, cover: np.ndarray) -> float:
    """The fraction of ``figure``'s in-image keypoints that are hidden once ``cover`` ``(H, W)`` bool is drawn
    in front of the scene (those already covered count as hidden)."""
    height, width = cover.shape
    inside = [(int(round(y)), int(round(x))) for x, y in figure.keypoints if 0 <= x <= width - 1 and 0 <= y <= height - 1]
    if not inside:
        return 0.0
    return sum(1 for row, col in inside if cover[row, col] or not figure.visible[row, col]) / len(inside)


def _place_figure(
    rng: np.random.Generator, figures: List[Figure], shape: Tuple[int, int]
) -> Optional[Tuple[np.ndarray, Dict[str, np.ndarray], np.ndarray]]:
    """A posed figure's ``(keypoints (17, 2), part masks, silhouette (H, W) bool)`` at a random size and place
    where it hides at most :data:`MAX_HIDDEN_KEYPOINTS` of each earlier figure's keypoints; None after
    :data:`PLACEMENT_TRIES` misses."""
    height, width = shape
    for _ in range(PLACEMENT_TRIES):
        size = rng.uniform(0.4, 0.9) * height
        foot = (
            rng.uniform(0.1, 0.9) * width,
            rng.uniform(0.85, 1.1) * height if size > 0.6 * height else rng.uniform(size, 1.05 * height),
        )
        points = pose(rng, size, foot)
        parts = figure_silhouette(points, size, shape)
        silhouette = silhouette_union(parts)
        if all(hidden_fraction(earlier, silhouette) <= MAX_HIDDEN_KEYPOINTS for earlier in figures):
            return points, parts, silhouette
    return None


def annotate(scene: Scene) -> List[Dict]:
    """COCO annotations (without ids) of a scene's figures and crowd region."""
    height, width = scene.image.shape[:2]
    annotations = []
    for figure in scene.figures:
        visible = figure.visible
        if visible.sum() < 20:
            continue
        keypoints: List[float] = []
        for x, y in figure.keypoints:
            col, row = int(round(x)), int(round(y))
            if not (0 <= x <= width - 1 and 0 <= y <= height - 1) or not figure.labeled:
                keypoints += [0, 0, 0]
            else:
                keypoints += [round(float(x), 2), round(float(y), 2), 2 if visible[row, col] else 1]
        polygons = _polygons(visible)
        if not polygons:
            continue
        area = float(mask_utils.area(mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))))
        identity = {} if figure.track_id is None else {"track_id": figure.track_id}
        annotations.append(
            {
                **identity,
                "segmentation": polygons,
                "area": area,
                "bbox": _bbox(visible),
                "iscrowd": 0,
                "category_id": 1,
                "keypoints": keypoints,
                "num_keypoints": sum(1 for v in keypoints[2::3] if v > 0),
            }
        )
    if scene.crowd.sum() >= 20:
        rle = mask_utils.encode(np.asfortranarray(scene.crowd.astype(np.uint8)))
        annotations.append(
            {
                "segmentation": {"size": [height, width], "counts": rle["counts"].decode("ascii")},
                "area": float(scene.crowd.sum()),
                "bbox": _bbox(scene.crowd),
                "iscrowd": 1,
                "category_id": 1,
                "keypoints": [0] * 51,
                "num_keypoints": 0,
            }
        )
    return annotations


def _polygons(mask: np.ndarray) -> List[List[float]]:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [[float(v) for v in c.reshape(-1)] for c in contours if len(c) >= 3]


def _bbox(mask: np.ndarray) -> List[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def write_coco_file(path: str, info: Dict, images: List[Dict], annotations: List[Dict]) -> None:
    """Write a COCO person-keypoint file (the 17 COCO keypoints and limbs as its one category), atomically."""
    category = {
        "id": 1,
        "name": "person",
        "supercategory": "person",
        "keypoints": list(COCO_KEYPOINTS),
        "skeleton": [list(limb) for limb in COCO_SKELETON],
    }
    coco = {"info": info, "images": images, "annotations": annotations, "categories": [category]}
    with atomic_path(path) as temporary:
        Path(temporary).write_text(json.dumps(coco))


@dataclasses.dataclass(frozen=True)
class SynthesisSummary:
    images: int
    people: int
    labeled_people: int
    crowd_regions: int
    annotation_file: str
    image_dir: str

    def line(self) -> str:
        return (
            f"{self.images} images, {self.people} people ({self.labeled_people} with keypoints), "
            f"{self.crowd_regions} crowd regions; annotations {self.annotation_file}, images {self.image_dir}"
        )


def synthesize(
    output_dir: str, num_images: int, seed: int, split: str = "train", progress: Optional[Callable[[int], None]] = None
) -> SynthesisSummary:
    """Write ``output_dir/<split>2017/*.jpg`` and ``output_dir/annotations/person_keypoints_<split>2017.json``."""
    image_dir = Path(output_dir) / f"{split}2017"
    annotation_file = Path(output_dir) / "annotations" / f"person_keypoints_{split}2017.json"
    image_dir.mkdir(parents=True, exist_ok=True)
    annotation_file.parent.mkdir(parents=True, exist_ok=True)
    images: List[Dict] = []
    annotations: List[Dict] = []
    for index in range(num_images):
        scene = render_scene(np.random.default_rng([seed, index]))
        image_id = index + 1
        name = f"{image_id:012d}.jpg"
        ok, encoded = cv2.imencode(".jpg", scene.image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        with atomic_path(str(image_dir / name)) as temporary:
            Path(temporary).write_bytes(encoded.tobytes())
        height, width = scene.image.shape[:2]
        images.append({"id": image_id, "file_name": name, "height": height, "width": width})
        for annotation in annotate(scene):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, **annotation})
        if progress:
            progress(1)
    write_coco_file(str(annotation_file), {"description": f"bpnet synthetic figures, seed {seed}"}, images, annotations)
    people = [a for a in annotations if not a["iscrowd"]]
    return SynthesisSummary(
        len(images),
        len(people),
        sum(1 for a in people if a["num_keypoints"] > 0),
        sum(1 for a in annotations if a["iscrowd"]),
        str(annotation_file),
        str(image_dir),
    )
