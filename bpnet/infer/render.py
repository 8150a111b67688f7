"""Drawing skeletons, heatmaps and PAFs on BGR uint8 images (OpenCV), for any skeleton.

Joints are ``(P, K, 3)`` [x, y, flag-or-score] in the image's pixels; ``drawn`` selects which joints
to draw. One colour per limb (evenly spaced hues), keypoints as dots in their first limb's colour.
"""

from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np


def limb_colours(num_limbs: int) -> Sequence[Tuple[int, int, int]]:
    """``num_limbs`` BGR colours with evenly spaced hues."""
    hues = np.linspace(0, 180, max(num_limbs, 1), endpoint=False).astype(np.uint8)
    hsv = np.stack([hues, np.full_like(hues, 230), np.full_like(hues, 255)], axis=-1)[None]
    return [(int(b), int(g), int(r)) for b, g, r in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0]]


def identity_colour(identity: int) -> Tuple[int, int, int]:
    """A bright BGR colour for a track id; consecutive ids get hues far apart (golden-ratio steps)."""
    hue = np.uint8(int((identity * 0.618033988749895 % 1.0) * 180))
    b, g, r = cv2.cvtColor(np.array([[[hue, 220, 255]]], np.uint8), cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def draw_skeletons(
    image: np.ndarray,
    joints: np.ndarray,
    drawn: np.ndarray,
    limbs: Sequence[Tuple[int, int]],
    thickness: int = 2,
    person_colours: Optional[Sequence[Tuple[int, int, int]]] = None,
) -> np.ndarray:
    """Draw every person's limbs (both ends drawn) and keypoints on a copy of ``image``: one colour per limb,
    or, with ``person_colours``, one per person (limbs and keypoints)."""
    out = image.copy()
    colours = limb_colours(len(limbs))
    keypoint_colour: Dict[int, Tuple[int, int, int]] = {}
    for limb, (a, b) in enumerate(limbs):
        keypoint_colour.setdefault(a, colours[limb])
        keypoint_colour.setdefault(b, colours[limb])
        for p, (person, person_drawn) in enumerate(zip(joints, drawn)):
            if person_drawn[a] and person_drawn[b]:
                start = tuple(int(round(v)) for v in person[a, :2])
                end = tuple(int(round(v)) for v in person[b, :2])
                colour = person_colours[p] if person_colours else colours[limb]
                cv2.line(out, start, end, colour, thickness, cv2.LINE_AA)
    for p, (person, person_drawn) in enumerate(zip(joints, drawn)):
        for k in np.flatnonzero(person_drawn):
            centre = tuple(int(round(v)) for v in person[k, :2])
            colour = person_colours[p] if person_colours else keypoint_colour.get(int(k), (255, 255, 255))
            cv2.circle(out, centre, thickness + 1, colour, -1, cv2.LINE_AA)
    return out


def draw_labels(
    image: np.ndarray, joints: np.ndarray, drawn: np.ndarray, labels: Sequence[str], scale: float = 0.5
) -> np.ndarray:
    """Write ``labels[p]`` above the highest drawn keypoint of person ``p`` (white on a dark box), on a copy; a
    label that would cover an earlier one moves to the nearest free place (:func:`place_labels`)."""
    out = image.copy()
    wanted, sizes, texts = [], [], []
    for person, person_drawn, label in zip(joints, drawn, labels):
        if not person_drawn.any():
            continue
        points = person[person_drawn, :2]
        (width, height), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        wanted.append((int(round(points[:, 0].min())), int(round(points[:, 1].min())) - 6))
        sizes.append((width + 2, height + baseline + 2))
        texts.append((label, height))
    for (x0, y0, x1, y1), (label, height) in zip(place_labels(wanted, sizes, out.shape[:2]), texts):
        cv2.rectangle(out, (x0, y0), (x1, y1), (40, 40, 40), -1)
        cv2.putText(out, label, (x0 + 1, y0 + height + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def place_labels(
    anchors: Sequence[Tuple[int, int]], sizes: Sequence[Tuple[int, int]], image_shape: Tuple[int, int]
) -> List[Tuple[int, int, int, int]]:
    """Boxes ``(x0, y0, x1, y1)`` (pixels, inclusive) for labels of ``sizes`` ``(width, height)`` whose bottom-left
    corners want to be at ``anchors`` ``(x, y)``, kept inside an image of ``image_shape`` ``(height, width)``. In
    order, each takes the free place nearest its anchor among vertical then horizontal shifts by its own size, so
    that no two boxes intersect while there is room; when there is none, the place covering least."""
    placed: List[Tuple[int, int, int, int]] = []
    rows, columns = image_shape
    for (x, y), (width, height) in zip(anchors, sizes):
        best, least = None, None
        for step in range(0, 2 * max(rows // max(height, 1), 1) + 1):
            dy = (step + 1) // 2 * height * (1 if step % 2 else -1)
            for dx in (0, width, -width, 2 * width, -2 * width):
                left = int(np.clip(x + dx, 0, max(columns - width - 1, 0)))
                top = int(np.clip(y - height + dy, 0, max(rows - height - 1, 0)))
                box = (left, top, left + width, top + height)
                covered = sum(_overlap(box, other) for other in placed)
                if least is None or covered < least:
                    best, least = box, covered
                if covered == 0:
                    break
            if least == 0:
                break
        assert best is not None
        placed.append(best)
    return placed


def _overlap(a: Tuple[int, int, int, int], b: Tuple[int, int, int, int]) -> int:
    """Area shared by two inclusive boxes."""
    width = min(a[2], b[2]) - max(a[0], b[0]) + 1
    height = min(a[3], b[3]) - max(a[1], b[1]) + 1
    return max(width, 0) * max(height, 0)


def draw_title(image: np.ndarray, title: str, scale: float = 0.5) -> np.ndarray:
    """A copy of ``image`` with a dark band on top holding ``title`` (panel captions of ``dataset_inspect``)."""
    (_, height), baseline = cv2.getTextSize(title, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    band = np.full((height + baseline + 8, image.shape[1], 3), 30, np.uint8)
    cv2.putText(band, title, (4, height + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([band, image], axis=0)


def overlay_heatmap(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend an ``(h, w)`` map in [0, 1] (any size; resized to the image) as a JET colour map."""
    resized = cv2.resize(np.clip(heatmap, 0, 1).astype(np.float32), image.shape[1::-1], interpolation=cv2.INTER_LINEAR)
    colour = cv2.applyColorMap((resized * 255).astype(np.uint8), cv2.COLORMAP_JET)
    weight = (alpha * resized)[..., None]
    return (image * (1 - weight) + colour * weight).astype(np.uint8)


def draw_paf_arrows(
    image: np.ndarray,
    pafs: np.ndarray,
    stride: float,
    threshold: float = 0.3,
    colours: Optional[Sequence[Tuple[int, int, int]]] = None,
) -> np.ndarray:
    """Draw an arrow per output cell and limb whose PAF vector is longer than ``threshold``.

    ``pafs`` is ``(h, w, 2L)`` (x, y per limb); ``stride`` is image pixels per cell.
    """
    out = image.copy()
    num_limbs = pafs.shape[-1] // 2
    colours = colours or limb_colours(num_limbs)
    for limb in range(num_limbs):
        vx, vy = pafs[..., 2 * limb], pafs[..., 2 * limb + 1]
        rows, cols = np.nonzero(np.hypot(vx, vy) > threshold)
        for row, col in zip(rows, cols):
            cx, cy = (col + 0.5) * stride, (row + 0.5) * stride
            tip = (cx + 0.45 * stride * vx[row, col], cy + 0.45 * stride * vy[row, col])
            tail = (cx - 0.45 * stride * vx[row, col], cy - 0.45 * stride * vy[row, col])
            cv2.arrowedLine(
                out,
                tuple(int(round(v)) for v in tail),
                tuple(int(round(v)) for v in tip),
                colours[limb],
                1,
                cv2.LINE_AA,
                tipLength=0.4,
            )
    return out


def shade(image: np.ndarray, region: np.ndarray, colour: Tuple[int, int, int] = (0, 0, 255), alpha: float = 0.45) -> np.ndarray:
    """Tint the pixels where ``region`` (bool, image size) is true."""
    out = image.copy()
    out[region] = (out[region] * (1 - alpha) + np.array(colour) * alpha).astype(np.uint8)
    return out
