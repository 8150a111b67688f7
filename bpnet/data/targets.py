"""Training targets in pure numpy: keypoint heatmaps and part affinity fields (PAFs).

Both are sampled on the same grid: output cell ``(i, j)`` (column ``i``, row ``j``) sits at the
cell centre ``(i · stride + (stride − 1) / 2, j · stride + (stride − 1) / 2)`` in network-input pixels.
Joints are ``(P, K, 3)`` [x, y, flag] in network-input pixels; only flags 0, 1, 2 (visible,
annotatable, occluded) are drawn.

* Heatmaps ``(h, w, K + 1)``: channel ``k`` is ``max_p exp(−d² / 2σ²)`` with σ in input pixels; the
  last channel is the background ``clip(1 − max_k, 0, 1)``.
* PAFs ``(h, w, 2L)``: limb ``l = (a → b)`` owns channels ``2l`` (x) and ``2l + 1`` (y). A cell
  inside the band of half-width ``paf_ortho_dist_thresh · stride`` around the *segment* (projection
  onto the limb within ``[0, |b − a|]``) gets the unit vector ``(b − a) / |b − a|``; where several
  persons' bands overlap the vectors are averaged (TLT overwrote them, §8 item 3).
"""

from typing import Sequence, Tuple

import numpy as np

from bpnet.skeleton import LABELED_FLAGS


def cell_centres(size: int, stride: int) -> np.ndarray:
    """``(size,)`` float64 cell-centre coordinates in input pixels."""
    return np.arange(size, dtype=np.float64) * stride + (stride - 1) / 2.0


def labeled(joints: np.ndarray) -> np.ndarray:
    """``(P, K)`` bool: joints drawn into the targets (flags 0, 1, 2)."""
    flags = joints[..., 2]
    return (flags >= min(LABELED_FLAGS)) & (flags <= max(LABELED_FLAGS))


def heatmaps(joints: np.ndarray, target_shape: Tuple[int, int], stride: int, sigma: float) -> np.ndarray:
    """``(h, w, K + 1)`` float32 heatmaps with the background channel last."""
    height, width = target_shape
    num_keypoints = joints.shape[1]
    out = np.zeros((height, width, num_keypoints + 1), dtype=np.float32)
    valid = labeled(joints)
    if valid.any():
        inv = np.float32(-1.0 / (2.0 * sigma**2))
        x = joints[..., 0].astype(np.float32)[..., None]
        y = joints[..., 1].astype(np.float32)[..., None]
        gx = np.exp((cell_centres(width, stride).astype(np.float32) - x) ** 2 * inv)  # (P, K, w)
        gy = np.exp((cell_centres(height, stride).astype(np.float32) - y) ** 2 * inv) * valid[..., None]  # (P, K, h)
        per_keypoint = (gy[:, :, :, None] * gx[:, :, None, :]).max(axis=0)  # (K, h, w)
        out[..., :num_keypoints] = per_keypoint.transpose(1, 2, 0)
    out[..., num_keypoints] = np.clip(1.0 - out[..., :num_keypoints].max(axis=-1, initial=0.0), 0.0, 1.0)
    return out


def pafs(
    joints: np.ndarray, limbs: Sequence[Tuple[int, int]], target_shape: Tuple[int, int], stride: int, half_width_cells: float
) -> np.ndarray:
    """``(h, w, 2L)`` float32 part affinity fields, averaged over overlapping persons."""
    height, width = target_shape
    num_limbs = len(limbs)
    out = np.zeros((height, width, 2 * num_limbs), dtype=np.float32)
    if num_limbs == 0 or joints.shape[0] == 0:
        return out
    starts = np.array([a for a, _ in limbs])
    ends = np.array([b for _, b in limbs])
    valid = labeled(joints)
    vector = joints[:, ends, :2] - joints[:, starts, :2]  # (P, L, 2)
    length = np.linalg.norm(vector, axis=-1)  # (P, L)
    person, limb = np.nonzero(valid[:, starts] & valid[:, ends] & (length > 0))
    if person.size == 0:
        return out
    a = joints[person, starts[limb], :2].astype(np.float32)  # (N, 2): one row per drawn limb instance
    seg_length = length[person, limb].astype(np.float32)
    unit = (vector[person, limb] / length[person, limb, None]).astype(np.float32)
    gx = cell_centres(width, stride).astype(np.float32)[None, None, :] - a[:, 0, None, None]  # (N, 1, w)
    gy = cell_centres(height, stride).astype(np.float32)[None, :, None] - a[:, 1, None, None]  # (N, h, 1)
    ux, uy = unit[:, 0, None, None], unit[:, 1, None, None]
    along = gx * ux + gy * uy  # (N, h, w)
    inside = (along >= 0) & (along <= seg_length[:, None, None]) & (np.abs(gx * uy - gy * ux) <= half_width_cells * stride)
    inside = inside.reshape(person.size, height * width).astype(np.float32)
    owner = np.zeros((num_limbs, person.size), dtype=np.float32)  # limb l <- instance n
    owner[limb, np.arange(person.size)] = 1.0
    # einsum's own loops, not BLAS: BLAS threads would fight the tf.data workers for the cores
    counts = np.einsum("ln,nc->lc", owner, inside)  # (L, h*w)
    sums_x = np.einsum("ln,nc->lc", owner * unit[:, 0], inside)
    sums_y = np.einsum("ln,nc->lc", owner * unit[:, 1], inside)
    scale = np.divide(1.0, counts, out=np.zeros_like(counts), where=counts > 0)
    out[..., 0::2] = (sums_x * scale).T.reshape(height, width, num_limbs)
    out[..., 1::2] = (sums_y * scale).T.reshape(height, width, num_limbs)
    return out
