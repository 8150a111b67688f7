"""Pose decoding in pure numpy/scipy: heatmap peaks → limb candidates (PAF line integral) → people.

Serves every backend (Keras, ONNX Runtime, TensorRT): it only sees arrays. Inputs, in the pixels of
the map the peaks are searched on (usually the network output upsampled by ``stride``):

* ``heatmaps`` ``(H, W, K + 1)`` (the last channel, the background, is ignored)
* ``pafs`` ``(H, W, 2L)``, limb ``l`` in channels ``(2l, 2l + 1)`` = (x, y), pointing from ``limbs[l][0]``
  to ``limbs[l][1]``

With ``upsampling = (fy, fx)`` the maps are the network's own (stride resolution), and the decoder
finds the people it would find on them upsampled bicubically by that factor, without upsampling them:
peaks are searched on the network grid, then located on a small upsampled window around each (the
same bicubic interpolation as OpenCV's ``INTER_CUBIC``, computed only there), and PAF line integrals
sample the network-resolution PAFs bilinearly. Coordinates are then on the upsampled grid.

Output: :class:`People` with ``keypoints (N, K, 3)`` = [x, y, peak score] (score 0: missing) and a
person score. Vectorised over pixels and candidate pairs; Python loops only over limbs and over the
accepted connections of one limb.
"""

import dataclasses
import functools
from typing import Dict, List, Literal, Optional, Sequence, Tuple

import cv2
import numpy as np
from scipy import ndimage, optimize

from bpnet.infer.resize import resize_maps

_MAX_DILATE_CHANNELS = 512  # OpenCV's channel limit


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
    person_score: Literal["skeleton_mean", "found_mean_sqrt"] = "skeleton_mean"  # how people are ranked:
    #   skeleton_mean: the sum of the keypoint scores / K; found_mean_sqrt: the mean score of the found
    #   keypoints × sqrt(found / K), which ranks a confident partial person above a doubtful complete one
    max_peaks_per_part: int = 128  # the strongest peaks kept per part: limb candidates grow with the product of
    #   two parts' peaks, so a near-zero threshold on a noisy map must not exhaust memory (bpnet guard)


DECODER_PRESETS: Dict[str, DecoderParams] = {
    "tlt": DecoderParams(),
    # From tf-pose-estimation (heatmap threshold 0.05) and Lightweight OpenPose (3 parts, mean score 0.2),
    # with bpnet's fragment merging and ranking; measured on real networks' maps in docs/decoding.md.
    "accurate": DecoderParams(
        heatmap_threshold=0.05, min_parts=3, min_mean_score=0.2, merge_distance=1.0, person_score="found_mean_sqrt"
    ),
}
"""Decoder settings by name (the inference spec's ``decoder_preset``)."""


@dataclasses.dataclass
class People:
    """Decoded people. ``keypoints (N, K, 3)``: x, y, score (0 where missing); ``scores (N,)``."""

    keypoints: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def find_peaks(
    heatmaps: np.ndarray, params: DecoderParams, channels: Optional[int] = None, upsampling: Tuple[int, int] = (1, 1)
) -> List[np.ndarray]:
    """Per channel of ``heatmaps (H, W, C)`` (the first ``channels`` of them, default all), ``(n, 3)``
    peaks [x, y, score], strongest first.

    A peak is a maximum of the smoothed map over an ``nms_window`` square whose unsmoothed value is
    above ``heatmap_threshold``; its score is the unsmoothed value. At most ``max_peaks_per_part`` (the
    strongest) are kept per channel. With ``upsampling (fy, fx)`` other than 1, the map searched is
    ``heatmaps`` upsampled bicubically by that factor (computed only around the network-grid maxima),
    and x, y are its pixels.
    """
    maps = np.ascontiguousarray(heatmaps, dtype=np.float32)
    channels = maps.shape[-1] if channels is None else channels
    factor_y, factor_x = upsampling
    if (factor_y, factor_x) != (1, 1):
        ys, xs, ks, offsets, scores = _local_upsampling_peaks(maps, channels, params, (factor_y, factor_x))
        height, width = maps.shape[0] * factor_y, maps.shape[1] * factor_x
    else:
        if params.search_step > 1:
            ys, xs, ks, offsets = _coarse_to_fine_peaks(maps, channels, params)
        else:
            maps = maps[..., :channels]
            ys, xs, ks, offsets = _full_search_peaks(maps, params)
        scores = maps[ys, xs, ks]
        height, width = maps.shape[:2]
    at_edge = np.stack([(xs == 0) | (xs == width - 1), (ys == 0) | (ys == height - 1)], axis=1)
    offsets = np.where(at_edge, 0.0, offsets)  # no neighbour on one side: no refinement
    positions = np.stack([xs, ys], axis=1).astype(np.float64) + offsets
    order = np.lexsort((ys, xs, -scores, ks))  # by channel, then strongest first
    table = np.column_stack([positions, scores])[order]
    bounds = np.searchsorted(ks[order], np.arange(channels + 1))
    return [table[bounds[k] : min(bounds[k + 1], bounds[k] + params.max_peaks_per_part)] for k in range(channels)]


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
        offsets = _parabola_offsets(
            smoothed[ys, xs, ks], smoothed[ys, xl, ks], smoothed[ys, xr, ks], smoothed[yu, xs, ks], smoothed[yd, xs, ks]
        )
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
    window = np.arange(-half, half + 1)
    rows = np.clip(cy[:, None] * step + window, 0, height - 1)  # (C, n)
    cols = np.clip(cx[:, None] * step + window, 0, width - 1)
    flat = (rows[:, :, None] * width + cols[:, None, :]) * depth + ks[:, None, None]
    windows = maps.reshape(-1)[flat]  # (C, n, n)
    smoothed = windows
    if radius:
        kernel = _smoothing_kernel(params)
        inner = windows.shape[1] - 2 * radius
        smoothed = sum(w * smoothed[:, t : t + inner] for t, w in enumerate(kernel))
        smoothed = sum(w * smoothed[:, :, t : t + inner] for t, w in enumerate(kernel))
        rows, cols = rows[:, radius:-radius], cols[:, radius:-radius]
        windows = windows[:, radius:-radius, radius:-radius]
    size = smoothed.shape[1] - 2 * nms
    local_max = functools.reduce(np.maximum, (smoothed[:, t : t + size] for t in range(2 * nms + 1)))
    local_max = functools.reduce(np.maximum, (local_max[:, :, t : t + size] for t in range(2 * nms + 1)))
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
        offsets = _parabola_offsets(
            smoothed[c, i, j], smoothed[c, i, j - 1], smoothed[c, i, j + 1], smoothed[c, i - 1, j], smoothed[c, i + 1, j]
        )
    return ys, xs, ks, offsets


def _candidate_maxima(grid: np.ndarray, threshold: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(my, mx, k)``: the 3 × 3 maxima above ``threshold`` of ``grid (H, W, C)`` upsampled ×2 bicubically,
    around which the map upsampled by any factor peaks. (On the network grid itself two blobs two cells
    apart often leave a single maximum; the ×2 grid separates them, as the full path's coarse search.)"""
    height, width, channels = grid.shape
    double = resize_maps(grid, (2 * width, 2 * height)).reshape(2 * height, 2 * width, channels)
    above = np.flatnonzero(double > threshold)
    square = np.ones((3, 3), np.uint8)  # OpenCV's dilation ignores the border, as padding with -inf
    local_max = np.concatenate(
        [
            cv2.dilate(double[..., first : first + _MAX_DILATE_CHANNELS], square).reshape(2 * height, 2 * width, -1)
            for first in range(0, channels, _MAX_DILATE_CHANNELS)
        ],
        axis=-1,
    ).reshape(-1)
    peaks = above[double.reshape(-1)[above] == local_max[above]]
    rest, ks = np.divmod(peaks, channels)
    my, mx = np.divmod(rest, 2 * width)
    return my, mx, ks


_CUBIC_A = -0.75  # OpenCV's bicubic kernel parameter


def _cubic_weights(fraction: np.ndarray) -> np.ndarray:
    """``(n, 4)`` weights of taps −1, 0, 1, 2 for sample positions ``fraction`` past tap 0 (OpenCV's formula)."""
    a, x = _CUBIC_A, fraction[:, None]
    w0 = ((a * (x + 1) - 5 * a) * (x + 1) + 8 * a) * (x + 1) - 4 * a
    w1 = ((a + 2) * x - (a + 3)) * x * x + 1
    w2 = ((a + 2) * (1 - x) - (a + 3)) * (1 - x) * (1 - x) + 1
    return np.concatenate([w0, w1, w2, 1 - w0 - w1 - w2], axis=1)


def _upsampling_matrix(factor: int, pixels: np.ndarray, first_cell: int, cells: int) -> np.ndarray:
    """Bicubic upsampling by ``factor`` as a ``(len(pixels), cells)`` matrix: row ``i`` gives upsampled pixel
    ``c·factor + pixels[i]`` from the network cells ``c + first_cell + j`` (column ``j``), for any cell ``c``.

    OpenCV maps upsampled pixel ``u`` to ``(u + 0.5) / factor − 0.5`` and replicates the border, which the
    caller reproduces by clamping the cells it gathers."""
    source = (pixels + 0.5) / factor - 0.5
    base = np.floor(source)
    taps = base.astype(np.int64)[:, None] + np.arange(-1, 3) - first_cell
    matrix = np.zeros((len(pixels), cells))
    np.add.at(matrix, (np.arange(len(pixels))[:, None], taps), _cubic_weights(source - base))
    return matrix


@dataclasses.dataclass(frozen=True)
class _WindowOperators:
    """For one axis and a ×2 maximum ``m = 2c + phase``: ``raw[phase] (S, n)`` and ``smoothed[phase]
    (S + 2·margin, n)`` matrices from the ``n`` network cells ``c + first_cell ..`` to the upsampled pixels
    ``c·f + start[phase] ..`` (``S`` of them: the ×2 pixel's reach of ± f / 2, and a pixel more), the
    smoothed ones with ``margin`` more on each side for the NMS and the sub-pixel neighbours."""

    raw: np.ndarray  # (2, S, n)
    smoothed: np.ndarray  # (2, S + 2 margin, n)
    start: np.ndarray  # (2,)
    first_cell: int
    margin: int


@functools.lru_cache(maxsize=32)
def _window_operators(factor: int, params: DecoderParams) -> _WindowOperators:
    radius = params.smoothing_kernel // 2 if params.smoothing_sigma > 0 else 0
    margin = params.nms_window // 2 + 1
    centres = factor * (np.arange(2) + 0.5) / 2 - 0.5  # the ×2 pixels' centres, upsampled pixels from c·f
    start = np.floor(centres - factor / 2 - 1).astype(np.int64)
    span = int(np.ceil(factor + 3))
    extended = [np.arange(s - margin - radius, s + span + margin + radius) for s in start]
    taps = np.floor((np.concatenate(extended) + 0.5) / factor - 0.5).astype(np.int64)
    first_cell, cells = int(taps.min()) - 1, int(taps.max() - taps.min()) + 4
    raw, smoothed = [], []
    for pixels in extended:
        matrix = _upsampling_matrix(factor, pixels, first_cell, cells)
        raw.append(matrix[radius + margin : radius + margin + span])
        if radius:
            kernel = _smoothing_kernel(params)
            smoothed.append(sum(weight * matrix[t : t + span + 2 * margin] for t, weight in enumerate(kernel)))
        else:
            smoothed.append(matrix[: span + 2 * margin])
    as_array = functools.partial(np.asarray, dtype=np.float32)
    return _WindowOperators(as_array(raw), as_array(smoothed), start, first_cell, margin)


def _local_upsampling_peaks(maps: np.ndarray, channels: int, params: DecoderParams, upsampling: Tuple[int, int]):
    """The peaks of ``maps`` upsampled by ``upsampling (fy, fx)``, computed only on small upsampled windows
    around the ×2 maxima above half the threshold (:func:`_candidate_maxima`). Returns upsampled-grid
    ``ys, xs``, channels, sub-pixel offsets and unsmoothed scores."""
    height, width = maps.shape[:2]
    factor_y, factor_x = upsampling
    grid = np.ascontiguousarray(maps[..., :channels])
    my, mx, ks = _candidate_maxima(grid, 0.5 * params.heatmap_threshold)
    along_y, along_x = _window_operators(factor_y, params), _window_operators(factor_x, params)
    (cy, phase_y), (cx, phase_x) = np.divmod(my, 2), np.divmod(mx, 2)
    rows = np.clip(cy[:, None] + along_y.first_cell + np.arange(along_y.raw.shape[2]), 0, height - 1)
    cols = np.clip(cx[:, None] + along_x.first_cell + np.arange(along_x.raw.shape[2]), 0, width - 1)
    patches = grid[rows[:, :, None], cols[:, None, :], ks[:, None, None]]  # (n, cells_y, cells_x)
    smoothed = along_y.smoothed[phase_y] @ patches @ along_x.smoothed[phase_x].transpose(0, 2, 1)
    raw = along_y.raw[phase_y] @ patches @ along_x.raw[phase_x].transpose(0, 2, 1)  # (n, S_y, S_x)
    margin, nms = along_y.margin, params.nms_window // 2
    span_y, span_x = raw.shape[1:]
    local_max = functools.reduce(
        np.maximum, (smoothed[:, margin - nms + t : margin - nms + t + span_y] for t in range(2 * nms + 1))
    )
    local_max = functools.reduce(
        np.maximum, (local_max[:, :, margin - nms + t : margin - nms + t + span_x] for t in range(2 * nms + 1))
    )
    centre = smoothed[:, margin : margin + span_y, margin : margin + span_x]
    up_y = (cy * factor_y + along_y.start[phase_y])[:, None] + np.arange(span_y)  # (n, S_y) upsampled rows
    up_x = (cx * factor_x + along_x.start[phase_x])[:, None] + np.arange(span_x)
    inside = ((up_y >= 0) & (up_y < height * factor_y))[:, :, None] & ((up_x >= 0) & (up_x < width * factor_x))[:, None]
    c, i, j = np.nonzero((centre == local_max) & (raw > params.heatmap_threshold) & inside)
    ys, xs, ks = up_y[c, i], up_x[c, j], ks[c]
    _, first = np.unique((ks * height * factor_y + ys) * width * factor_x + xs, return_index=True)
    c, i, j, ys, xs, ks = c[first], i[first], j[first], ys[first], xs[first], ks[first]
    scores = raw[c, i, j]
    offsets = np.zeros((len(xs), 2))
    if params.subpixel and len(xs):
        i, j = i + margin, j + margin
        offsets = _parabola_offsets(
            smoothed[c, i, j], smoothed[c, i, j - 1], smoothed[c, i, j + 1], smoothed[c, i - 1, j], smoothed[c, i + 1, j]
        )
    return ys, xs, ks, offsets, scores


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


def limb_candidates(
    peaks: Sequence[np.ndarray],
    pafs: np.ndarray,
    limbs: Sequence[Tuple[int, int]],
    params: DecoderParams,
    image_height: int,
    upsampling: Tuple[int, int] = (1, 1),
) -> List[np.ndarray]:
    """Per limb, ``(m, 3)`` candidates [start index, end index, score], best first.

    Every (start, end) peak pair of every limb is scored at once: ``N`` points sampled on the segment
    (rounded to pixels; or, with ``upsampling (fy, fx)`` other than 1, peaks on the upsampled grid and
    ``pafs`` at network resolution, sampled bilinearly there), the limb's PAF ``pafs[..., 2l : 2l + 2]``
    projected on the segment direction;
    a pair needs more than ``min_fraction_above · N`` samples above ``paf_threshold`` and a positive
    score, the mean of the samples above the threshold (TLT).
    """
    if not limbs:
        return []
    limb_starts, limb_ends = np.array(limbs, dtype=np.int64).T
    counts = np.array([len(p) for p in peaks], dtype=np.int64)
    first_peak = np.cumsum(counts) - counts  # of each keypoint in the concatenated peaks
    all_xy = np.concatenate([p[:, :2] for p in peaks]).reshape(-1, 2)
    sizes = counts[limb_starts] * counts[limb_ends]  # pairs per limb
    limb_ids = np.repeat(np.arange(len(limbs)), sizes)
    within = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    start_ids, end_ids = np.divmod(within, counts[limb_ends][limb_ids])  # start-major, as the peaks' order
    start_xy = all_xy[first_peak[limb_starts][limb_ids] + start_ids]
    end_xy = all_xy[first_peak[limb_ends][limb_ids] + end_ids]
    n = params.line_integral_samples
    sample = _line_sampler(upsampling)
    vector = end_xy - start_xy  # (P, 2)
    length = np.linalg.norm(vector, axis=-1)
    unit = vector / (length[:, None] + 1e-6)
    t = np.linspace(0.0, 1.0, n)
    needed = int(np.floor(params.min_fraction_above * n)) + 1  # samples that must be above the threshold
    if n - needed + 1 < n // 2:  # a cheap screen: a pair with n - needed + 1 samples below it is out
        screen = np.linspace(0, n - 1, n - needed + 3)[1:-1].round().astype(np.int64)
        passed = (sample(pafs, limb_ids, start_xy, vector, unit, t[screen]) > params.paf_threshold).any(-1)
        limb_ids, start_ids, end_ids, start_xy = limb_ids[passed], start_ids[passed], end_ids[passed], start_xy[passed]
        vector, length, unit = vector[passed], length[passed], unit[passed]
    samples = sample(pafs, limb_ids, start_xy, vector, unit, t)  # (P, n)
    above = samples > params.paf_threshold
    count = above.sum(axis=-1)
    score = (samples * above).sum(axis=-1) / (count + 1e-6)
    if params.limb_length_prior:
        score = score + np.minimum(0.5 * image_height / (length + 1e-6) - 1.0, 0.0)
    kept = np.flatnonzero((count >= needed) & (score > 0))
    kept = kept[np.lexsort((-score[kept], limb_ids[kept]))]
    bounds = np.searchsorted(limb_ids[kept], np.arange(len(limbs) + 1))
    table = np.column_stack([start_ids[kept], end_ids[kept], score[kept]])
    return [table[bounds[limb] : bounds[limb + 1]] for limb in range(len(limbs))]


def _projected_samples(
    pafs: np.ndarray, limb_ids: np.ndarray, start_xy: np.ndarray, vector: np.ndarray, unit: np.ndarray, t: np.ndarray
) -> np.ndarray:
    """``(P, len(t))`` PAF of each pair's limb at ``start + t · vector`` (rounded to pixels), projected on ``unit``."""
    height, width, channels = pafs.shape
    px = np.clip(np.round(start_xy[:, 0] + t[:, None] * vector[:, 0]).astype(np.int64), 0, width - 1)  # (T, P)
    py = np.clip(np.round(start_xy[:, 1] + t[:, None] * vector[:, 1]).astype(np.int64), 0, height - 1)
    flat = (py * width + px) * channels + 2 * limb_ids
    values = np.ascontiguousarray(pafs).reshape(-1)
    return (values[flat] * unit[:, 0] + values[flat + 1] * unit[:, 1]).T


def _bilinear_samples(
    pafs: np.ndarray,
    limb_ids: np.ndarray,
    start_xy: np.ndarray,
    vector: np.ndarray,
    unit: np.ndarray,
    t: np.ndarray,
    upsampling: Tuple[int, int],
) -> np.ndarray:
    """As :func:`_projected_samples` for points on the grid upsampled by ``upsampling (fy, fx)`` and ``pafs``
    at network resolution: each point ``u`` maps to ``(u + 0.5) / f − 0.5`` there, sampled bilinearly
    (border replicated). Computed as ``(T, P)`` arrays: long inner loops."""
    height, width, channels = pafs.shape
    factor_y, factor_x = upsampling
    x = np.clip((start_xy[:, 0] + t[:, None] * vector[:, 0] + 0.5) / factor_x - 0.5, 0, width - 1)  # (T, P)
    y = np.clip((start_xy[:, 1] + t[:, None] * vector[:, 1] + 0.5) / factor_y - 0.5, 0, height - 1)
    x0 = np.minimum(x.astype(np.int64), max(width - 2, 0))  # x ≥ 0: truncation is floor
    y0 = np.minimum(y.astype(np.int64), max(height - 2, 0))
    wx, wy = x - x0, y - y0  # in [0, 1]
    step_x, step_y = (channels if width > 1 else 0), (width * channels if height > 1 else 0)
    flat = (y0 * width + x0) * channels + 2 * limb_ids
    values = np.ascontiguousarray(pafs).reshape(-1)
    unit_x, unit_y = unit[:, 0], unit[:, 1]

    def projected(offset):
        return values[flat + offset] * unit_x + values[flat + offset + 1] * unit_y

    top = projected(0) * (1 - wx) + projected(step_x) * wx
    bottom = projected(step_y) * (1 - wx) + projected(step_y + step_x) * wx
    return (top * (1 - wy) + bottom * wy).T


def mean_paf_projections(
    start_xy: np.ndarray, end_xy: np.ndarray, pafs: np.ndarray, upsampling: Tuple[int, int] = (1, 1), samples: int = 10
) -> np.ndarray:
    """``(P,)`` mean projection of one limb's PAF ``pafs (h, w, 2)`` on the direction of each segment
    ``start_xy (P, 2)`` → ``end_xy (P, 2)``, over ``samples`` points: the line integral without thresholds
    (coordinates and sampling as :func:`limb_candidates` with this ``upsampling``)."""
    vector = end_xy - start_xy
    unit = vector / (np.linalg.norm(vector, axis=-1, keepdims=True) + 1e-6)
    t = np.linspace(0.0, 1.0, samples)
    return _line_sampler(upsampling)(pafs, np.zeros(len(start_xy), np.int64), start_xy, vector, unit, t).mean(axis=1)


def _line_sampler(upsampling: Tuple[int, int]):
    """The PAF reader of the line integrals: rounded pixels of maps at the searched resolution, or bilinear
    samples of network-resolution maps for peaks on the grid upsampled by ``upsampling``."""
    if tuple(upsampling) == (1, 1):
        return _projected_samples
    return functools.partial(_bilinear_samples, upsampling=upsampling)


def match(candidates: np.ndarray, method: str) -> np.ndarray:
    """One-to-one connections from candidates [a, b, score]: greedy by score, or optimal assignment."""
    if len(candidates) == 0:
        return candidates
    if method == "greedy":
        used_a, used_b, chosen = set(), set(), []
        pairs = candidates[:, :2].tolist()
        most = min(len({a for a, _ in pairs}), len({b for _, b in pairs}))  # then every later pair is blocked
        for row, (a, b) in enumerate(pairs):
            if a not in used_a and b not in used_b:
                used_a.add(a)
                used_b.add(b)
                chosen.append(row)
                if len(chosen) == most:
                    break
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


def assemble(
    peaks: Sequence[np.ndarray], connections: Sequence[np.ndarray], limbs: Sequence[Tuple[int, int]], num_keypoints: int
) -> Tuple[np.ndarray, np.ndarray]:
    """OpenPose-style assembly. Returns ``parts (N, K)`` peak indices (-1 missing) and ``(N,)`` score sums.

    A connection extends the person holding one of its ends; when its two ends belong to two people
    with no keypoint in common, the two partial skeletons merge. Every peak has at most one owner.
    """
    people: List[List[int]] = []
    totals: List[float] = []
    alive: List[bool] = []
    owner: Dict[Tuple[int, int], int] = {}  # (keypoint, peak index) -> person
    peak_scores = [channel[:, 2].tolist() for channel in peaks]
    for (a, b), connection in zip(limbs, connections):
        for start, end, score in connection.tolist():
            start, end = int(start), int(end)
            owner_a, owner_b = owner.get((a, start)), owner.get((b, end))
            person = owner_a if owner_a is not None else owner_b
            if person is None:
                row = [-1] * num_keypoints
                row[a], row[b] = start, end
                owner[(a, start)] = owner[(b, end)] = len(people)
                people.append(row)
                totals.append(score + peak_scores[a][start] + peak_scores[b][end])
                alive.append(True)
            elif owner_b is None or owner_b == person:
                row, added = people[person], 0.0
                for keypoint, index in ((a, start), (b, end)):
                    if row[keypoint] < 0:
                        row[keypoint] = index
                        owner[(keypoint, index)] = person
                        added += peak_scores[keypoint][index]
                if row[a] == start and row[b] == end:
                    totals[person] += score + added
            else:
                first, second = min(person, owner_b), max(person, owner_b)
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
    unseen) to the nearest larger compatible person, nearest pairs first.

    ``gaps[i, j]``: the distance between the closest keypoints of fragment ``i`` and person ``j`` over ``j``'s
    keypoint extent, where ``j`` has more keypoints and none of ``i``'s types (else inf); after a merge only
    the host's row and column change."""
    parts, totals = parts.copy(), totals.astype(np.float64, copy=True)
    found = parts >= 0
    xy = np.full(parts.shape + (2,), np.nan)
    for k, channel in enumerate(peaks):
        xy[found[:, k], k] = channel[parts[found[:, k], k], :2]
    everyone = np.arange(len(parts))
    gaps = _fragment_gaps(found, xy, everyone, everyone)
    while len(parts) > 1:
        small, host = np.unravel_index(np.argmin(gaps), gaps.shape)
        if not gaps[small, host] < merge_distance:
            break
        parts[host] = np.maximum(parts[host], parts[small])
        totals[host] += totals[small]
        xy[host] = np.where(found[small][:, None], xy[small], xy[host])
        found[host] |= found[small]
        keep = np.arange(len(parts)) != small
        parts, totals, found, xy, gaps = parts[keep], totals[keep], found[keep], xy[keep], gaps[keep][:, keep]
        host -= host > small
        everyone = np.arange(len(parts))
        gaps[host] = _fragment_gaps(found, xy, np.array([host]), everyone)[0]
        gaps[:, host] = _fragment_gaps(found, xy, everyone, np.array([host]))[:, 0]
    return parts, totals


def _fragment_gaps(found: np.ndarray, xy: np.ndarray, smalls: np.ndarray, hosts: np.ndarray) -> np.ndarray:
    """``(len(smalls), len(hosts))`` gaps of :func:`merge_fragments` (``found (N, K)``, ``xy (N, K, 2)``, NaN where
    missing)."""
    counts = found.sum(axis=1)
    allowed = (counts[hosts][None, :] > counts[smalls][:, None]) & ~(
        found[smalls].astype(np.int64) @ found[hosts].T.astype(np.int64)
    ).astype(bool)
    if not allowed.any():
        return np.full(allowed.shape, np.inf)
    gaps = np.full(allowed.shape, np.inf)
    some_small, some_host = np.flatnonzero(allowed.any(axis=1)), np.flatnonzero(allowed.any(axis=0))
    smalls, hosts, allowed = smalls[some_small], hosts[some_host], allowed[np.ix_(some_small, some_host)]
    host_xy = xy[hosts]
    extent = np.maximum(np.nan_to_num(np.nanmax(host_xy, axis=1) - np.nanmin(host_xy, axis=1), nan=0.0).max(axis=1), 1.0)

    def points(rows):  # the found keypoints of ``rows`` (each has one at least), and where each row's begin
        owner, keypoint = np.nonzero(found[rows])
        return xy[rows[owner], keypoint], np.searchsorted(owner, np.arange(len(rows)))

    (small_points, small_starts), (host_points, host_starts) = points(smalls), points(hosts)
    distances = np.hypot(small_points[:, None, 0] - host_points[None, :, 0], small_points[:, None, 1] - host_points[None, :, 1])
    closest = np.minimum.reduceat(np.minimum.reduceat(distances, small_starts, axis=0), host_starts, axis=1)
    gaps[np.ix_(some_small, some_host)] = np.where(allowed, closest / extent[None, :], np.inf)
    return gaps


def _person_scores(keypoint_scores: np.ndarray, counts: np.ndarray, rule: str) -> np.ndarray:
    """``(N,)`` person scores from ``keypoint_scores (N, K)`` (0: missing) and ``counts (N,)`` found keypoints."""
    num_keypoints = keypoint_scores.shape[1]
    if num_keypoints == 0:
        return np.zeros(len(keypoint_scores))
    total = keypoint_scores.sum(axis=1)
    if rule == "skeleton_mean":
        return total / num_keypoints
    return total / np.maximum(counts, 1) * np.sqrt(counts / num_keypoints)


def decode(
    heatmaps: np.ndarray,
    pafs: np.ndarray,
    limbs: Sequence[Tuple[int, int]],
    params: DecoderParams = DecoderParams(),
    upsampling: Tuple[int, int] = (1, 1),
) -> People:
    """Decode one image's maps into people (see the module docstring for layouts). With ``upsampling
    (fy, fx)``, the maps are at network resolution and keypoints come back on the grid upsampled by it."""
    num_keypoints = heatmaps.shape[-1] - 1
    if pafs.shape[-1] != 2 * len(limbs) or pafs.shape[:2] != heatmaps.shape[:2]:
        raise ValueError(
            f"maps do not match the skeleton: heatmaps {heatmaps.shape}, pafs {pafs.shape}, "
            f"{num_keypoints} keypoints and {len(limbs)} limbs"
        )
    peaks = find_peaks(heatmaps, params, num_keypoints, upsampling)
    candidates = limb_candidates(peaks, pafs, limbs, params, heatmaps.shape[0] * upsampling[0], upsampling)
    connections = [match(c, params.matching) for c in candidates]
    parts, totals = assemble(peaks, connections, limbs, num_keypoints)
    if params.single_part_people:
        parts, totals = _add_single_part_people(parts, totals, peaks)
    if params.merge_distance > 0:
        parts, totals = merge_fragments(parts, totals, peaks, params.merge_distance)
    counts = (parts >= 0).sum(axis=1)
    keep = (counts >= params.min_parts) & (totals / np.maximum(counts, 1) >= params.min_mean_score)
    parts, totals, counts = parts[keep], totals[keep], counts[keep]
    first_peak = np.cumsum([0] + [len(p) for p in peaks[:-1]])
    all_peaks = np.concatenate([np.zeros((1, 3))] + list(peaks))  # row 0: a missing keypoint
    keypoints = all_peaks[np.where(parts >= 0, parts + first_peak + 1, 0)].reshape(len(parts), num_keypoints, 3)
    scores = _person_scores(keypoints[..., 2], counts, params.person_score)
    order = np.argsort(-scores, kind="stable")
    return People(keypoints[order], scores[order])
