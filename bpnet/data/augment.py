"""Spatial and colour augmentation in pure numpy/OpenCV (reference §2.4, §3.5).

Coordinates are image pixels with pixel centres at integers, x right and y down. A spatial
augmentation is one 3×3 matrix ``M`` (column vectors, last row ``[0, 0, 1]``) mapping source pixels to
network-input pixels; the image, the loss mask and the joints are all moved by it.

Matrices are built from ``T(a, b)`` (translation), ``R(θ)`` (rotation), ``Z(zx, zy)`` (scale) and
``F(lr, tb)`` (flips ``x → -x`` / ``y → -y`` about the origin)::

    person_centric:                    M = T(W/2, H/2) · F · Z(z', z') · R(θ) · T(-(cx + tx), -(cy + ty))
        z' = target_person_scale / (s / W · zoom + 1e-5), (cx, cy), s: main person's bbox centre, height
    standard:                          M = T(W/2, H/2) · F · Z(zoom/f, zoom/f) · R(θ) · T(-(w/2 + tx), -(h/2 + ty))
        f = max(w / W, h / H): the whole image fits the canvas, aspect ratio kept
    standard_with_fixed_aspect_ratio:  M = T(W/2, H/2) · F · Z(zoom·W/w, zoom·H/h) · R(θ) · T(-(w/2 + tx), -(h/2 + ty))
        the whole image is stretched to the canvas

with ``W × H`` the network input and ``w × h`` the source image.
"""

import dataclasses
from typing import Tuple, cast

import cv2
import numpy as np

from bpnet.skeleton import Visibility
from bpnet.specs import ColorAugParams, SpatialAugParams

IMAGE_FILL = 127.0
"""Image value outside the source image (TLT's background)."""
MASK_FILL = 255.0
"""Mask value outside the source image: the loss counts there (TLT's)."""


@dataclasses.dataclass(frozen=True)
class SpatialDraw:
    """One sample's random spatial parameters."""

    flip_lr: bool
    flip_tb: bool
    rotate_deg: float
    zoom: float
    translate_x: float  # source-image pixels
    translate_y: float


def draw_spatial(params: SpatialAugParams, image_width: int, image_height: int, rng: np.random.Generator) -> SpatialDraw:
    """Draw flips, rotation, zoom and translation as TLT does (reference §3.5)."""
    flip_lr = bool(rng.uniform() < params.flip_lr_prob)
    flip_tb = bool(rng.uniform() < params.flip_tb_prob)
    # the *_min fields are never None after SpatialAugParams.__post_init__ (it mirrors the *_max ones)
    if params.use_translate_ratio:
        ratio_min = cast(float, params.translate_ratio_min)
        tx = rng.uniform(ratio_min, params.translate_ratio_max) * image_width
        ty = rng.uniform(ratio_min, params.translate_ratio_max) * image_height
    else:
        min_x, min_y = cast(float, params.translate_min_x), cast(float, params.translate_min_y)
        tx = float(rng.integers(int(np.floor(min_x)), int(np.floor(params.translate_max_x)) + 1))
        ty = float(rng.integers(int(np.floor(min_y)), int(np.floor(params.translate_max_y)) + 1))
    zoom = float(rng.uniform(params.zoom_ratio_min, params.zoom_ratio_max)) if rng.uniform() < params.zoom_prob else 1.0
    rotate = float(rng.uniform(cast(float, params.rotate_deg_min), params.rotate_deg_max))
    return SpatialDraw(flip_lr, flip_tb, rotate, zoom, tx, ty)


IDENTITY_DRAW = SpatialDraw(False, False, 0.0, 1.0, 0.0, 0.0)


def _translate(a: float, b: float) -> np.ndarray:
    return np.array([[1.0, 0.0, a], [0.0, 1.0, b], [0.0, 0.0, 1.0]])


def _rotate(degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _scale(zx: float, zy: float) -> np.ndarray:
    return np.diag([zx, zy, 1.0])


def spatial_matrix(
    mode: str,
    draw: SpatialDraw,
    image_size: Tuple[int, int],
    canvas_size: Tuple[int, int],
    main_center: Tuple[float, float],
    main_scale: float,
    target_person_scale: float,
) -> np.ndarray:
    """The 3×3 source → canvas matrix. Sizes are ``(width, height)``; see the module docstring."""
    width, height = image_size
    canvas_w, canvas_h = canvas_size
    if mode == "person_centric":
        zoom = target_person_scale / (main_scale / canvas_w * draw.zoom + 1e-5)
        zoom_x = zoom_y = zoom
        cx, cy = main_center
    elif mode == "standard":
        fit = max(width / canvas_w, height / canvas_h)
        zoom_x = zoom_y = draw.zoom / fit
        cx, cy = width / 2.0, height / 2.0
    elif mode == "standard_with_fixed_aspect_ratio":
        zoom_x, zoom_y = draw.zoom * canvas_w / width, draw.zoom * canvas_h / height
        cx, cy = width / 2.0, height / 2.0
    else:
        raise ValueError(f"unknown spatial_augmentation_mode {mode!r}")
    flip = _scale(-1.0 if draw.flip_lr else 1.0, -1.0 if draw.flip_tb else 1.0)
    return (
        _translate(canvas_w // 2, canvas_h // 2)
        @ flip
        @ _scale(zoom_x, zoom_y)
        @ _rotate(draw.rotate_deg)
        @ _translate(-(cx + draw.translate_x), -(cy + draw.translate_y))
    )


def decode_reduction(matrix: np.ndarray) -> int:
    """The largest JPEG decode reduction (1, 2, 4 or 8) that the warp does not magnify.

    Decoding at ``1/r`` size is several times faster than a full decode and, being an area average,
    aliases less than a bilinear warp of the full image. Use with :func:`reduced_matrix`.
    """
    largest_scale = np.linalg.svd(matrix[:2, :2], compute_uv=False)[0]
    for reduction in (8, 4, 2):
        if reduction * largest_scale <= 1.0:
            return reduction
    return 1


def reduced_matrix(matrix: np.ndarray, reduction: int) -> np.ndarray:
    """``matrix`` for a source decoded at ``1/reduction`` size (reduced pixel ``i`` ↔ full ``r·i + (r − 1)/2``)."""
    offset = (reduction - 1) / 2.0
    return matrix @ np.array([[reduction, 0.0, offset], [0.0, reduction, offset], [0.0, 0.0, 1.0]])


def transform_joints(
    joints: np.ndarray, matrix: np.ndarray, canvas_size: Tuple[int, int], flip_permutation: np.ndarray, flip_lr: bool
) -> np.ndarray:
    """Move ``(P, K, 3)`` joints by ``matrix``; swap left/right after a horizontal flip.

    Labeled joints that land outside the canvas (``[0, W-1] × [0, H-1]`` pixel centres) are marked
    :attr:`Visibility.TRUNCATED` so the targets ignore them.
    """
    out = joints.astype(np.float64, copy=True)
    xy1 = np.concatenate([out[..., :2], np.ones(out.shape[:-1] + (1,))], axis=-1)
    out[..., :2] = xy1 @ matrix[:2].T
    if flip_lr:
        out = out[:, flip_permutation]
    canvas_w, canvas_h = canvas_size
    x, y = out[..., 0], out[..., 1]
    outside = (x < 0) | (x > canvas_w - 1) | (y < 0) | (y > canvas_h - 1)
    labeled = out[..., 2] <= Visibility.OCCLUDED
    out[..., 2] = np.where(outside & labeled, float(Visibility.TRUNCATED), out[..., 2])
    return out


def warp(image: np.ndarray, matrix: np.ndarray, canvas_size: Tuple[int, int], fill: float) -> np.ndarray:
    """Warp an image (``(h, w)`` or ``(h, w, C)``) onto the ``(W, H)`` canvas, bilinear, constant ``fill``."""
    return cv2.warpAffine(
        image,
        matrix[:2],
        canvas_size,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(fill, fill, fill, fill),
    )


def color_augment(image: np.ndarray, params: ColorAugParams, rng: np.random.Generator) -> np.ndarray:
    """Jitter brightness, contrast, saturation and hue of an ``(H, W, 3)`` float32 RGB image in [0, 255].

    Each effect is drawn with its probability, in that order; the result is clipped to [0, 255].
    """
    out = image.astype(np.float32, copy=True)
    if rng.uniform() < params.brightness_prob:
        out += np.float32(rng.uniform(-params.brightness_max_delta, params.brightness_max_delta) * 255.0)
    if rng.uniform() < params.contrast_prob:
        mean = out.mean()
        out = (out - mean) * np.float32(rng.uniform(params.contrast_min, params.contrast_max)) + mean
    if rng.uniform() < params.saturation_prob:
        gray = out @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        factor = np.float32(rng.uniform(params.saturation_min, params.saturation_max))
        out = gray[..., None] + (out - gray[..., None]) * factor
    if rng.uniform() < params.hue_prob:
        hsv = cv2.cvtColor(np.clip(out, 0, 255) / 255.0, cv2.COLOR_RGB2HSV)
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-params.hue_max_delta, params.hue_max_delta) * 360.0) % 360.0
        out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0
    return np.clip(out, 0.0, 255.0)
