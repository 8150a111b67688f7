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
import functools
from typing import Dict, List, Literal, Optional, Sequence, Tuple

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
    search_step: int = 1  # >1: search every search_step-th pixel, then refine around each coarse maximum
    #   (exact for maps without detail finer than the step, e.g. maps upsampled by 2·search_step)
    line_integral_samples: int = 10
    min_fraction_above: float = 0.8  # a candidate needs more than this fraction of samples above paf_threshold
    limb_length_prior: bool = False  # OpenPose's penalty min(0.5·H / length − 1, 0)
    matching: Literal["greedy", "optimal"] = "greedy"
    min_parts: int = 4  # people with fewer keypoints are dropped (TLT: num_parts_thresh)
    min_mean_score: float = 0.4  # people whose score sum / parts is lower are dropped (TLT: overall_score_thresh)
    single_part_people: bool = False  # peaks joined to nobody become one-keypoint people (COCO scores them)
    merge_distance: float = 0.0  # >0: join a fragment to the nearest larger person with none of its keypoint
    #   types if their closest keypoints are nearer than this × that person's keypoint extent (0: off)
    max_peaks_per_part: int = 128  # the strongest peaks kept per part: limb candidates grow with the product of
    #   two parts' peaks, so a near-zero threshold on a noisy map must not exhaust memory (bpnet guard)


@dataclasses.dataclass
class People:
    """Decoded people. ``keypoints (N, K, 3)``: x, y, score (0 where missing); ``scores (N,)``."""

    keypoints: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def find_peaks(heatmaps: np.ndarray, params: DecoderParams, channels: Optional[int] = None) -> List[np.ndarray]:
    """Per channel of ``heatmaps (H, W, C)`` (the first ``channels`` of them, default all), ``(n, 3)``
    peaks [x, y, score], strongest first.

    A peak is a maximum of the smoothed map over an ``nms_window`` square whose unsmoothed value is
    above ``heatmap_threshold``; its score is the unsmoothed value. At most ``max_peaks_per_part`` (the
    strongest) are kept per channel.
    """
    maps = np.ascontiguousarray(heatmaps, dtype=np.float32)
    channels = maps.shape[-1] if channels is None else channels
    if params.search_step > 1:
        ys, xs, ks, offsets = _coarse_to_fine_peaks(maps, channels, params)
    else:
        maps = maps[..., :channels]
        ys, xs, ks, offsets = _full_search_peaks(maps, params)
    height, width = maps.shape[:2]
    at_edge = np.stack([(xs == 0) | (xs == width - 1), (ys == 0) | (ys == height - 1)], axis=1)
    offsets = np.where(at_edge, 0.0, offsets)  # no neighbour on one side: no refinement
    scores = maps[ys, xs, ks]
    positions = np.stack([xs, ys], axis=1).astype(np.float64) + offsets
    peaks = []
    for k in range(channels):
        mine = np.flatnonzero(ks == k)
        mine = mine[np.lexsort((ys[mine], xs[mine], -scores[mine]))]
        peaks.append(np.column_stack([positions[mine], scores[mine]])[:params.max_peaks_per_part])
    return peaks


def _smoothing_kernel(params: DecoderParams) -> np.ndarray:
    """The 1-D Gaussian of the smoothing (``smoothing_kernel`` taps), normalised, as scipy's gaussian_filter."""
    radius = params.smoothing_kernel // 2
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / params.smoothing_sigma) ** 2)
    return (taps / taps.sum()).astype(np.float32)


def _full_search_peaks(maps: np.ndarray, params: DecoderParams):
    smoothed = maps
    if params.smoothing_sigma > 0:
        truncate = (params.smoothing_kernel // 2) / params.smoothing_sigma
        smoothed = ndimage.gaussian_filter(maps, (params.smoothing_sigma, params.smoothing_sigma, 0), truncate=truncate)
    maxima = ndimage.maximum_filter(smoothed, size=(params.nms_window, params.nms_window, 1), mode="constant", cval=-np.inf)
    ys, xs, ks = np.nonzero((smoothed == maxima) & (maps > params.heatmap_threshold))
    offsets = np.zeros((len(xs), 2))
    if params.subpixel and len(xs):
        height, width = maps.shape[:2]
        xl, xr = np.clip(xs - 1, 0, width - 1), np.clip(xs + 1, 0, width - 1)
        yu, yd = np.clip(ys - 1, 0, height - 1), np.clip(ys + 1, 0, height - 1)
        offsets = _parabola_offsets(smoothed[ys, xs, ks], smoothed[ys, xl, ks], smoothed[ys, xr, ks],
                                    smoothed[yu, xs, ks], smoothed[yd, xs, ks])
    return ys, xs, ks, offsets


def _coarse_to_fine_peaks(maps: np.ndarray, channels: int, params: DecoderParams):
    """Maxima of every ``search_step``-th pixel, then, in a window of ± step around each, the peaks at
    full resolution: smoothing, NMS and threshold as the full search, on ``(C, n, n)`` windows at once."""
    step, (height, width, depth) = params.search_step, maps.shape
    coarse = np.pad(maps[::step, ::step, :channels], ((1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    rows_max = np.maximum(np.maximum(coarse[:-2], coarse[1:-1]), coarse[2:])
    coarse_max = np.maximum(np.maximum(rows_max[:, :-2], rows_max[:, 1:-1]), rows_max[:, 2:])
    coarse = coarse[1:-1, 1:-1]
    cy, cx, ks = np.nonzero((coarse == coarse_max) & (coarse > 0.5 * params.heatmap_threshold))
    radius = params.smoothing_kernel // 2 if params.smoothing_sigma > 0 else 0
    nms = params.nms_window // 2
    half = step + nms + 1 + radius  # one extra pixel for the sub-pixel neighbours
    offsets = np.arange(-half, half + 1)
    rows = np.clip(cy[:, None] * step + offsets, 0, height - 1)  # (C, n)
    cols = np.clip(cx[:, None] * step + offsets, 0, width - 1)
    flat = (rows[:, :, None] * width + cols[:, None, :]) * depth + ks[:, None, None]
    windows = maps.reshape(-1)[flat]  # (C, n, n)
    smoothed = windows
    if radius:
        kernel = _smoothing_kernel(params)
        inner = windows.shape[1] - 2 * radius
        smoothed = sum(w * smoothed[:, t:t + inner] for t, w in enumerate(kernel))
        smoothed = sum(w * smoothed[:, :, t:t + inner] for t, w in enumerate(kernel))
        rows, cols = rows[:, radius:-radius], cols[:, radius:-radius]
        windows = windows[:, radius:-radius, radius:-radius]
    size = smoothed.shape[1] - 2 * nms
    local_max = functools.reduce(np.maximum, (smoothed[:, t:t + size] for t in range(2 * nms + 1)))
    local_max = functools.reduce(np.maximum, (local_max[:, :, t:t + size] for t in range(2 * nms + 1)))
    inner = slice(nms, smoothed.shape[1] - nms)
    is_peak = (smoothed[:, inner, inner] == local_max) & (windows[:, inner, inner] > params.heatmap_threshold)
    is_peak[:, :1] = is_peak[:, -1:] = is_peak[:, :, :1] = is_peak[:, :, -1:] = False  # the sub-pixel margin
    c, i, j = np.nonzero(is_peak)
    ys, xs, ks = rows[c, i + nms], cols[c, j + nms], ks[c]
    _, first = np.unique((ks * height + ys) * width + xs, return_index=True)
    c, i, j = c[first], i[first] + nms, j[first] + nms
    ys, xs, ks = ys[first], xs[first], ks[first]
    offsets = np.zeros((len(xs), 2))
    if params.subpixel and len(xs):
        offsets = _parabola_offsets(smoothed[c, i, j], smoothed[c, i, j - 1], smoothed[c, i, j + 1],
                                    smoothed[c, i - 1, j], smoothed[c, i + 1, j])
    return ys, xs, ks, offsets


def _parabola_offsets(centre, left, right, up, down) -> np.ndarray:
    """Sub-pixel (dx, dy) in [-0.5, 0.5]: a parabola through the log values of each peak and its 4 neighbours.

    On the log of a Gaussian the parabola is exact, so a Gaussian blob's centre is recovered exactly.
    """
    logs = [np.log(np.maximum(v, 1e-12)) for v in (centre, left, right, up, down)]
    offsets = []
    for before, after in ((logs[1], logs[2]), (logs[3], logs[4])):
        curvature = before - 2 * logs[0] + after
        offset = np.where(curvature < 0, 0.5 * (before - after) / np.where(curvature < 0, curvature, 1), 0.0)
        offsets.append(np.clip(offset, -0.5, 0.5))
    return np.stack(offsets, axis=1)


def limb_candidates(peaks: Sequence[np.ndarray], pafs: np.ndarray, limbs: Sequence[Tuple[int, int]],
                    params: DecoderParams, image_height: int) -> List[np.ndarray]:
    """Per limb, ``(m, 3)`` candidates [start index, end index, score], best first.

    Every (start, end) peak pair of every limb is scored at once: ``N`` points sampled on the segment
    (rounded to pixels), the limb's PAF ``pafs[..., 2l : 2l + 2]`` projected on the segment direction;
    a pair needs more than ``min_fraction_above · N`` samples above ``paf_threshold`` and a positive
    score, the mean of the samples above the threshold (TLT).
    """
    if not limbs:
        return []
    pairs = []
    for limb, (a, b) in enumerate(limbs):
        starts = np.repeat(np.arange(len(peaks[a])), len(peaks[b]))
        ends = np.tile(np.arange(len(peaks[b])), len(peaks[a]))
        pairs.append((np.full(starts.size, limb), starts, ends, peaks[a][starts, :2], peaks[b][ends, :2]))
    limb_ids, start_ids, end_ids, start_xy, end_xy = (np.concatenate(x) for x in zip(*pairs))
    n = params.line_integral_samples
    vector = end_xy - start_xy  # (P, 2)
    length = np.linalg.norm(vector, axis=-1)
    unit = vector / (length[:, None] + 1e-6)
    t = np.linspace(0.0, 1.0, n)
    needed = int(np.floor(params.min_fraction_above * n)) + 1  # samples that must be above the threshold
    if n - needed + 1 < n // 2:  # a cheap screen: a pair with n - needed + 1 samples below it is out
        screen = np.linspace(0, n - 1, n - needed + 3)[1:-1].round().astype(np.int64)
        passed = (_projected_samples(pafs, limb_ids, start_xy, vector, unit, t[screen]) > params.paf_threshold).any(-1)
        limb_ids, start_ids, end_ids, start_xy = limb_ids[passed], start_ids[passed], end_ids[passed], start_xy[passed]
        vector, length, unit = vector[passed], length[passed], unit[passed]
    samples = _projected_samples(pafs, limb_ids, start_xy, vector, unit, t)  # (P, n)
    above = samples > params.paf_threshold
    count = above.sum(axis=-1)
    score = (samples * above).sum(axis=-1) / (count + 1e-6)
    if params.limb_length_prior:
        score = score + np.minimum(0.5 * image_height / (length + 1e-6) - 1.0, 0.0)
    kept = np.flatnonzero((count >= needed) & (score > 0))
    kept = kept[np.lexsort((-score[kept], limb_ids[kept]))]
    bounds = np.searchsorted(limb_ids[kept], np.arange(len(limbs) + 1))
    table = np.column_stack([start_ids[kept], end_ids[kept], score[kept]])
    return [table[bounds[limb]:bounds[limb + 1]] for limb in range(len(limbs))]


def _projected_samples(pafs: np.ndarray, limb_ids: np.ndarray, start_xy: np.ndarray, vector: np.ndarray,
                       unit: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``(P, len(t))`` PAF of each pair's limb at ``start + t · vector`` (rounded to pixels), projected on ``unit``."""
    height, width, channels = pafs.shape
    points = start_xy[:, None, :] + t[None, :, None] * vector[:, None, :]  # (P, T, 2)
    px = np.clip(np.round(points[..., 0]).astype(np.int64), 0, width - 1)
    py = np.clip(np.round(points[..., 1]).astype(np.int64), 0, height - 1)
    flat = (py * width + px) * channels + 2 * limb_ids[:, None]
    values = np.ascontiguousarray(pafs).reshape(-1)
    return values[flat] * unit[:, :1] + values[flat + 1] * unit[:, 1:]


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
    with no keypoint in common, the two partial skeletons merge. Every peak has at most one owner.
    """
    people: List[List[int]] = []
    totals: List[float] = []
    alive: List[bool] = []
    owner: Dict[Tuple[int, int], int] = {}  # (keypoint, peak index) -> person
    for (a, b), connection in zip(limbs, connections):
        for start, end, score in connection.tolist():
            start, end = int(start), int(end)
            owners = sorted({owner[key] for key in ((a, start), (b, end)) if key in owner})
            if not owners:
                row = [-1] * num_keypoints
                row[a], row[b] = start, end
                owner[(a, start)] = owner[(b, end)] = len(people)
                people.append(row)
                totals.append(score + peaks[a][start, 2] + peaks[b][end, 2])
                alive.append(True)
            elif len(owners) == 1:
                person = owners[0]
                row, added = people[person], 0.0
                for keypoint, index in ((a, start), (b, end)):
                    if row[keypoint] < 0:
                        row[keypoint] = index
                        owner[(keypoint, index)] = person
                        added += peaks[keypoint][index, 2]
                if row[a] == start and row[b] == end:
                    totals[person] += score + added
            else:
                first, second = owners
                if all(x < 0 or y < 0 for x, y in zip(people[first], people[second])):
                    for keypoint, index in enumerate(people[second]):
                        if index >= 0:
                            people[first][keypoint] = index
                            owner[(keypoint, index)] = first
                    totals[first] += totals[second] + score
                    alive[second] = False
    kept = [i for i, is_alive in enumerate(alive) if is_alive]
    parts = np.array([people[i] for i in kept], dtype=np.int64).reshape(len(kept), num_keypoints)
    return parts, np.array([totals[i] for i in kept], dtype=np.float64)


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
    peaks = find_peaks(heatmaps, params, num_keypoints)
    candidates = limb_candidates(peaks, pafs, limbs, params, heatmaps.shape[0])
    connections = [match(c, params.matching) for c in candidates]
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
