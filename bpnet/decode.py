"""Pose decoding in pure numpy/scipy: heatmap peaks → limb candidates (PAF line integral) → people.

Serves every backend (Keras, ONNX Runtime, TensorRT): it only sees arrays. Inputs, in the pixels of
the map the peaks are searched on (usually the network output upsampled by ``stride``):

* ``heatmaps`` ``(H, W, K + 1)`` (the last channel, the background, is ignored)
* ``pafs`` ``(H, W, 2L)``, limb ``l`` in channels ``(2l, 2l + 1)`` = (x, y), pointing from ``limbs[l][0]``
  to ``limbs[l][1]``

Output: :class:`People` with ``keypoints (N, K, 3)`` = [x, y, peak score] (score 0: missing) and a
person score. Vectorised over pixels and candidate pairs; Python loops only over limbs and over the
accepted connections of one limb.
"""

import dataclasses
from typing import List, Literal, Sequence, Tuple

import numpy as np
from scipy import ndimage, optimize


@dataclasses.dataclass(frozen=True)
class DecoderParams:
    """Decoding settings. Defaults are TLT's post-processor (reference §3.16)."""

    heatmap_threshold: float = 0.1
    paf_threshold: float = 0.05
    nms_window: int = 3  # peaks are maxima of this square window (pixels of the searched map)
    smoothing_sigma: float = 3.0  # Gaussian smoothing before NMS (0: none); scores stay unsmoothed
    smoothing_kernel: int = 5  # size of the smoothing kernel (TLT: 5 x 5, sigma 3)
    subpixel: bool = False  # quadratic refinement of peak positions
    line_integral_samples: int = 10
    min_fraction_above: float = 0.8  # a candidate needs more than this fraction of samples above paf_threshold
    limb_length_prior: bool = False  # OpenPose's penalty min(0.5·H / length − 1, 0)
    matching: Literal["greedy", "optimal"] = "greedy"
    min_parts: int = 4  # people with fewer keypoints are dropped (TLT: num_parts_thresh)
    min_mean_score: float = 0.4  # people whose score sum / parts is lower are dropped (TLT: overall_score_thresh)
    single_part_people: bool = False  # peaks joined to nobody become one-keypoint people (COCO scores them)
    merge_distance: float = 0.0  # >0: join a fragment to the nearest larger person with none of its keypoint
    #   types if their closest keypoints are nearer than this × that person's keypoint extent (0: off)


@dataclasses.dataclass
class People:
    """Decoded people. ``keypoints (N, K, 3)``: x, y, score (0 where missing); ``scores (N,)``."""

    keypoints: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def find_peaks(heatmaps: np.ndarray, params: DecoderParams) -> List[np.ndarray]:
    """Per keypoint channel, ``(n, 3)`` peaks [x, y, score], strongest first."""
    maps = heatmaps.astype(np.float32, copy=False)
    smoothed = maps
    if params.smoothing_sigma > 0:
        truncate = (params.smoothing_kernel // 2) / params.smoothing_sigma
        smoothed = ndimage.gaussian_filter(maps, (params.smoothing_sigma, params.smoothing_sigma, 0), truncate=truncate)
    maxima = ndimage.maximum_filter(smoothed, size=(params.nms_window, params.nms_window, 1), mode="constant", cval=-np.inf)
    is_peak = (smoothed == maxima) & (maps > params.heatmap_threshold)
    ys, xs, ks = np.nonzero(is_peak)
    scores = maps[ys, xs, ks]
    positions = np.stack([xs, ys], axis=1).astype(np.float64)
    if params.subpixel and len(xs):
        positions += _quadratic_offsets(smoothed, xs, ys, ks)
    peaks = []
    for k in range(maps.shape[-1]):
        mine = np.flatnonzero(ks == k)
        mine = mine[np.argsort(-scores[mine], kind="stable")]
        peaks.append(np.column_stack([positions[mine], scores[mine]]))
    return peaks


def _quadratic_offsets(maps: np.ndarray, xs: np.ndarray, ys: np.ndarray, ks: np.ndarray) -> np.ndarray:
    """Sub-pixel (dx, dy) in [-0.5, 0.5]: a parabola through the log values of each peak and its 4 neighbours.

    On the log of a Gaussian the parabola is exact, so a Gaussian blob's centre is recovered exactly.
    """
    height, width = maps.shape[:2]
    xl, xr = np.clip(xs - 1, 0, width - 1), np.clip(xs + 1, 0, width - 1)
    yu, yd = np.clip(ys - 1, 0, height - 1), np.clip(ys + 1, 0, height - 1)
    maps = np.log(np.maximum(maps, 1e-12))
    centre = maps[ys, xs, ks]
    offsets = []
    for before, after in ((maps[ys, xl, ks], maps[ys, xr, ks]), (maps[yu, xs, ks], maps[yd, xs, ks])):
        curvature = before - 2 * centre + after
        offset = np.where(curvature < 0, 0.5 * (before - after) / np.where(curvature < 0, curvature, 1), 0.0)
        offsets.append(np.clip(offset, -0.5, 0.5))
    return np.stack(offsets, axis=1)


def limb_candidates(starts: np.ndarray, ends: np.ndarray, paf_x: np.ndarray, paf_y: np.ndarray,
                    params: DecoderParams, image_height: int) -> np.ndarray:
    """``(m, 3)`` candidates [start index, end index, score] for one limb, best first.

    Every (start, end) pair is scored at once: ``N`` points sampled on the segment (rounded to
    pixels), the PAF projected on the segment direction; a pair needs more than
    ``min_fraction_above · N`` samples above ``paf_threshold`` and a positive score, the mean of
    the samples above the threshold (TLT).
    """
    if len(starts) == 0 or len(ends) == 0:
        return np.zeros((0, 3))
    height, width = paf_x.shape
    n = params.line_integral_samples
    vector = ends[None, :, :2] - starts[:, None, :2]  # (a, b, 2)
    length = np.linalg.norm(vector, axis=-1)
    unit = vector / (length[..., None] + 1e-6)
    t = np.linspace(0.0, 1.0, n)
    points = starts[:, None, None, :2] + t[None, None, :, None] * vector[:, :, None, :]  # (a, b, n, 2)
    px = np.clip(np.round(points[..., 0]).astype(np.int64), 0, width - 1)
    py = np.clip(np.round(points[..., 1]).astype(np.int64), 0, height - 1)
    samples = paf_x[py, px] * unit[..., None, 0] + paf_y[py, px] * unit[..., None, 1]  # (a, b, n)
    above = samples > params.paf_threshold
    count = above.sum(axis=-1)
    score = (samples * above).sum(axis=-1) / (count + 1e-6)
    if params.limb_length_prior:
        score = score + np.minimum(0.5 * image_height / (length + 1e-6) - 1.0, 0.0)
    keep = (count > params.min_fraction_above * n) & (score > 0)
    a_idx, b_idx = np.nonzero(keep)
    scores = score[a_idx, b_idx]
    order = np.argsort(-scores, kind="stable")
    return np.column_stack([a_idx[order], b_idx[order], scores[order]])


def match(candidates: np.ndarray, method: str) -> np.ndarray:
    """One-to-one connections from candidates [a, b, score]: greedy by score, or optimal assignment."""
    if len(candidates) == 0:
        return candidates
    if method == "greedy":
        used_a, used_b, chosen = set(), set(), []
        for row, (a, b, _) in enumerate(candidates):
            if a not in used_a and b not in used_b:
                used_a.add(a)
                used_b.add(b)
                chosen.append(row)
        return candidates[chosen]
    a_ids, a_inv = np.unique(candidates[:, 0], return_inverse=True)
    b_ids, b_inv = np.unique(candidates[:, 1], return_inverse=True)
    cost = np.full((len(a_ids), len(b_ids)), 1e6)
    cost[a_inv, b_inv] = -candidates[:, 2]
    rows, cols = optimize.linear_sum_assignment(cost)
    valid = cost[rows, cols] < 0
    lookup = {(i, j): r for r, (i, j) in enumerate(zip(a_inv, b_inv))}
    chosen = sorted(lookup[(i, j)] for i, j in zip(rows[valid], cols[valid]))
    return candidates[chosen][np.argsort(-candidates[chosen][:, 2], kind="stable")]


def assemble(peaks: Sequence[np.ndarray], connections: Sequence[np.ndarray], limbs: Sequence[Tuple[int, int]],
             num_keypoints: int) -> Tuple[np.ndarray, np.ndarray]:
    """OpenPose-style assembly. Returns ``parts (N, K)`` peak indices (-1 missing) and ``(N,)`` score sums.

    A connection extends the person holding one of its ends; when its two ends belong to two people
    with no keypoint in common, the two partial skeletons merge.
    """
    parts = np.zeros((0, num_keypoints), dtype=np.int64)
    totals = np.zeros(0)
    for (a, b), conn in zip(limbs, connections):
        for start, end, score in conn:
            start, end = int(start), int(end)
            owners = np.flatnonzero((parts[:, a] == start) | (parts[:, b] == end))
            gain = score + peaks[a][start, 2] + peaks[b][end, 2]
            if len(owners) == 0:
                person = np.full(num_keypoints, -1, dtype=np.int64)
                person[a], person[b] = start, end
                parts = np.vstack([parts, person])
                totals = np.append(totals, gain)
            elif len(owners) == 1:
                p = owners[0]
                added = 0.0
                if parts[p, a] < 0:
                    parts[p, a] = start
                    added += peaks[a][start, 2]
                if parts[p, b] < 0:
                    parts[p, b] = end
                    added += peaks[b][end, 2]
                if parts[p, a] == start and parts[p, b] == end:
                    totals[p] += score + added
            else:
                first, second = owners[:2]
                if np.all((parts[first] < 0) | (parts[second] < 0)):
                    parts[first] = np.maximum(parts[first], parts[second])
                    totals[first] += totals[second] + score
                    parts = np.delete(parts, second, axis=0)
                    totals = np.delete(totals, second)
    return parts, totals


def _add_single_part_people(parts: np.ndarray, totals: np.ndarray, peaks: Sequence[np.ndarray]):
    extra_parts, extra_totals = [], []
    for k, channel in enumerate(peaks):
        for index in np.setdiff1d(np.arange(len(channel)), parts[:, k]):
            person = np.full(parts.shape[1], -1, dtype=np.int64)
            person[k] = index
            extra_parts.append(person)
            extra_totals.append(channel[index, 2])
    if not extra_parts:
        return parts, totals
    return np.vstack([parts, extra_parts]), np.concatenate([totals, extra_totals])


def merge_fragments(parts: np.ndarray, totals: np.ndarray, peaks: Sequence[np.ndarray], merge_distance: float):
    """Join partial skeletons that no limb links (a person whose connecting keypoints are unlabeled or
    unseen) to the nearest larger compatible person, nearest pairs first."""
    def points(row):
        found = np.flatnonzero(row >= 0)
        return np.array([peaks[k][row[k], :2] for k in found]).reshape(-1, 2)

    while True:
        counts = (parts >= 0).sum(axis=1)
        best = None
        for small in np.argsort(counts, kind="stable"):
            small_points = points(parts[small])
            for host in np.flatnonzero(counts > counts[small]):
                if np.any((parts[small] >= 0) & (parts[host] >= 0)):
                    continue
                host_points = points(parts[host])
                extent = max(np.ptp(host_points, axis=0).max(), 1.0)
                gap = np.min(np.linalg.norm(small_points[:, None] - host_points[None], axis=-1)) / extent
                if gap < merge_distance and (best is None or gap < best[0]):
                    best = (gap, small, host)
        if best is None:
            return parts, totals
        _, small, host = best
        parts[host] = np.maximum(parts[host], parts[small])
        totals[host] += totals[small]
        parts, totals = np.delete(parts, small, axis=0), np.delete(totals, small)


def decode(heatmaps: np.ndarray, pafs: np.ndarray, limbs: Sequence[Tuple[int, int]],
           params: DecoderParams = DecoderParams()) -> People:
    """Decode one image's maps into people (see the module docstring for layouts)."""
    num_keypoints = heatmaps.shape[-1] - 1
    if pafs.shape[-1] != 2 * len(limbs) or pafs.shape[:2] != heatmaps.shape[:2]:
        raise ValueError(f"maps do not match the skeleton: heatmaps {heatmaps.shape}, pafs {pafs.shape}, "
                         f"{num_keypoints} keypoints and {len(limbs)} limbs")
    peaks = find_peaks(heatmaps[..., :num_keypoints], params)
    connections = [
        match(limb_candidates(peaks[a], peaks[b], pafs[..., 2 * l], pafs[..., 2 * l + 1], params, heatmaps.shape[0]),
              params.matching)
        for l, (a, b) in enumerate(limbs)
    ]
    parts, totals = assemble(peaks, connections, limbs, num_keypoints)
    if params.single_part_people:
        parts, totals = _add_single_part_people(parts, totals, peaks)
    if params.merge_distance > 0:
        parts, totals = merge_fragments(parts, totals, peaks, params.merge_distance)
    counts = (parts >= 0).sum(axis=1)
    keep = (counts >= params.min_parts) & (totals / np.maximum(counts, 1) >= params.min_mean_score)
    parts, totals, counts = parts[keep], totals[keep], counts[keep]
    keypoints = np.zeros((len(parts), num_keypoints, 3))
    for k in range(num_keypoints):
        found = parts[:, k] >= 0
        keypoints[found, k] = peaks[k][parts[found, k]]
    scores = keypoints[..., 2].sum(axis=1) / num_keypoints if num_keypoints else np.zeros(len(parts))
    order = np.argsort(-scores, kind="stable")
    return People(keypoints[order], scores[order])
