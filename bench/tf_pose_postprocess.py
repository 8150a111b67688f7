"""A port of tf-pose-estimation's post-processing, written for bpnet's benchmarks from a reading of
ildoonet/tf-pose-estimation (``tf_pose/estimator.py`` and ``tf_pose/pafprocess/pafprocess.cpp``, .h).

What it does, in the original's order:

1. Upsample the network's heatmaps and PAFs by ``factor`` with TensorFlow's ``resize_area``, which for
   an integer enlargement repeats each cell ``factor × factor`` times.
2. Smooth the upsampled heatmaps with a 25-tap Gaussian (σ 3, zero padding: a depthwise 'SAME'
   convolution), keep the pixels equal to the 3 × 3 max-pool of the smoothed map ('SAME').
3. pafprocess: a peak is such a pixel whose *smoothed* value is above ``THRESH_HEAT`` (0.05); its score
   is the unsmoothed upsampled value. For every limb and every (start, end) pair: 10 samples at
   ``start + i · (end − start) / 10`` (i = 0..9, rounded by ``int(v + 0.5)``), the PAF projected on the
   unit direction; a pair needs more than ``THRESH_VECTOR_CNT1`` (6) samples above
   ``THRESH_VECTOR_SCORE`` (0.05) and a positive score ``mean(samples) + min(0, 0.5 · H / length − 1)``
   (H: the upsampled map's height). Pairs by decreasing score, each peak used once per limb.
4. Assembly into ``subset`` rows (18 peak ids, score sum, part count), limb by limb: a connection whose
   start or end is in one row sets that row's end part (even over another peak) and adds the end's
   score and the connection's; in two rows it merges them when no part is set in both (a set part being
   an id > 0, as the original tests it) or else extends the first; in none, it starts a row, except for
   the last two limbs (ear–shoulder); in three or more, nothing happens. Rows with fewer than
   ``THRESH_PART_CNT`` (4) parts or a mean ``score / count`` below ``THRESH_HUMAN_SCORE`` (0.3) are
   dropped; a person's score is ``score / count``.

The skeleton must be OpenPose COCO-18's, limbs in pafprocess's ``COCOPAIRS`` order (bpnet's
``model_pose_config/openpose_coco18.json``). Output: ``(N, 18, 3)`` [x, y, score] on the upsampled grid and the
person scores.
"""

from typing import List, Sequence, Tuple

import cv2
import numpy as np

THRESH_HEAT = 0.05
THRESH_VECTOR_SCORE = 0.05
THRESH_VECTOR_CNT1 = 6
THRESH_PART_CNT = 4
THRESH_HUMAN_SCORE = 0.3
STEP_PAF = 10
NUM_PART = 18
PAIRS_STARTING_PEOPLE = 17  # the last two limbs (ear–shoulder) never start a row


def _smooth(heatmaps: np.ndarray) -> np.ndarray:
    """The 25 × 25 Gaussian (σ 3) of tf-pose's Smoother, zero padding, per channel."""
    return cv2.GaussianBlur(heatmaps, (25, 25), 3.0, borderType=cv2.BORDER_CONSTANT)


def _peaks(heatmaps: np.ndarray, smoothed: np.ndarray) -> List[List[Tuple[int, int, float]]]:
    """Per part, [(x, y, score)] in row-major order (the C++ loops y, then x)."""
    pooled = cv2.dilate(smoothed, np.ones((3, 3), np.uint8))  # max-pool 3 × 3 'SAME' (border ignored)
    is_peak = (smoothed == pooled) & (smoothed > THRESH_HEAT)
    peaks = []
    for part in range(NUM_PART):
        ys, xs = np.nonzero(is_peak[:, :, part])
        peaks.append([(int(x), int(y), float(heatmaps[y, x, part])) for y, x in zip(ys, xs)])
    return peaks


def _connections(peaks_a, peaks_b, paf_x: np.ndarray, paf_y: np.ndarray, height: int) -> List[Tuple[int, int, float]]:
    candidates = []
    for ia, (xa, ya, _) in enumerate(peaks_a):
        for ib, (xb, yb, _) in enumerate(peaks_b):
            dx, dy = xb - xa, yb - ya
            norm = float(np.sqrt(dx * dx + dy * dy))
            if norm < 1e-12:
                continue
            ux, uy = dx / norm, dy / norm
            total, above = 0.0, 0
            for i in range(STEP_PAF):
                px = int(xa + i * dx / STEP_PAF + 0.5)
                py = int(ya + i * dy / STEP_PAF + 0.5)
                value = ux * paf_x[py, px] + uy * paf_y[py, px]
                total += value
                above += value > THRESH_VECTOR_SCORE
            score = total / STEP_PAF + min(0.0, 0.5 * height / norm - 1.0)
            if above > THRESH_VECTOR_CNT1 and score > 0:
                candidates.append((score, ia, ib))
    candidates.sort(key=lambda c: -c[0])
    used_a, used_b, chosen = set(), set(), []
    for score, ia, ib in candidates:
        if ia in used_a or ib in used_b:
            continue
        used_a.add(ia)
        used_b.add(ib)
        chosen.append((ia, ib, score))
    return chosen


def tf_pose_postprocess(
    heatmaps: np.ndarray, pafs: np.ndarray, limbs: Sequence[Tuple[int, int]], factor: int = 8
) -> Tuple[np.ndarray, np.ndarray]:
    """Network-resolution ``heatmaps (h, w, 19)`` and ``pafs (h, w, 38)`` (x, y per limb, ``limbs`` order)
    → ``(N, 18, 3)`` keypoints on the ×``factor`` grid and ``(N,)`` scores."""
    heat_up = np.repeat(np.repeat(heatmaps, factor, axis=0), factor, axis=1)
    paf_up = np.repeat(np.repeat(pafs, factor, axis=0), factor, axis=1)
    peaks = _peaks(heat_up, _smooth(heat_up))
    ids, offset = [], 0  # global peak ids, as peak_infos_line
    for part_peaks in peaks:
        ids.append(list(range(offset, offset + len(part_peaks))))
        offset += len(part_peaks)
    flat = [peak for part_peaks in peaks for peak in part_peaks]
    rows: List[List[float]] = []  # 18 peak ids (-1: none), score sum, part count
    for limb, (a, b) in enumerate(limbs):
        for ia, ib, score in _connections(
            peaks[a], peaks[b], paf_up[:, :, 2 * limb], paf_up[:, :, 2 * limb + 1], heat_up.shape[0]
        ):
            cid_a, cid_b = ids[a][ia], ids[b][ib]
            holders = [r for r, row in enumerate(rows) if row[a] == cid_a or row[b] == cid_b]
            if len(holders) == 1:
                row = rows[holders[0]]
                if row[b] != cid_b:
                    row[b] = cid_b
                    row[19] += 1
                    row[18] += flat[cid_b][2] + score
            elif len(holders) == 2:
                first, second = rows[holders[0]], rows[holders[1]]
                if not any(first[k] > 0 and second[k] > 0 for k in range(NUM_PART)):
                    for k in range(NUM_PART):
                        first[k] += second[k] + 1
                    first[19] += second[19]
                    first[18] += second[18] + score
                    del rows[holders[1]]
                else:
                    first[b] = cid_b
                    first[19] += 1
                    first[18] += flat[cid_b][2] + score
            elif limb < PAIRS_STARTING_PEOPLE:
                row = [-1.0] * 20
                row[a], row[b] = cid_a, cid_b
                row[19] = 2
                row[18] = flat[cid_a][2] + flat[cid_b][2] + score
                rows.append(row)
    rows = [row for row in rows if row[19] >= THRESH_PART_CNT and row[18] / row[19] >= THRESH_HUMAN_SCORE]
    keypoints = np.zeros((len(rows), NUM_PART, 3))
    for n, row in enumerate(rows):
        for k in range(NUM_PART):
            if row[k] >= 0:
                keypoints[n, k] = flat[int(row[k])]
    return keypoints, np.array([row[18] / row[19] for row in rows])
