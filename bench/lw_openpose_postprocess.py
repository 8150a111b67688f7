"""A port of Lightweight OpenPose's post-processing, written for bpnet's benchmarks from a reading of
Daniil-Osokin/lightweight-human-pose-estimation.pytorch (``modules/keypoints.py``: ``extract_keypoints``,
``connections_nms``, ``group_keypoints``; ``demo.py`` and ``val.py`` for the upsampling and the COCO score).

What it does, in the original's order:

1. Upsample the network's heatmaps and PAFs bicubically by ``factor`` (the demo's ``upsample_ratio`` 4).
2. Per part: values below 0.1 set to 0; a peak is a pixel strictly above its 4 neighbours (zero
   padding); peaks sorted by x, and each one suppresses the later ones closer than 6 pixels (of the
   upsampled map), whatever their scores; the score is the heatmap value.
3. Per limb, every (start, end) pair: 10 samples from start to end inclusive (``a + i · (b − a) / 9``,
   rounded), the PAF projected on the unit direction; the score is the mean of the samples above 0.05,
   and a pair needs more than 80% of its samples above 0.05 and a positive score. Pairs by decreasing
   score, each peak used once per limb.
4. Grouping into pose entries (18 peak ids, score sum, part count): the first limb's connections start
   the entries; the last two limbs (ear–shoulder) only fill an ear or a shoulder that an entry holding
   the other end lacks; any other connection sets its end part in every entry holding its start (adding
   the end's score and the connection's, one part each), or starts an entry when none does. Entries with
   fewer than 3 parts or a mean ``score / count`` below 0.2 are dropped.
5. COCO score (val.py): ``score sum × max(0, count − 1)`` (the neck, not a COCO keypoint, is discounted).

The skeleton must be OpenPose COCO-18's, limbs in the order of ``BODY_PARTS_KPT_IDS`` (bpnet's
``model_pose_config/openpose_coco18.json``). Output: ``(N, 18, 3)`` [x, y, score] on the upsampled grid and the
person scores.
"""

from typing import List, Sequence, Tuple

import cv2
import numpy as np

HEATMAP_THRESHOLD = 0.1
SUPPRESSION_DISTANCE = 6
MIN_PAF_SCORE = 0.05
POINTS_PER_LIMB = 10
SUCCESS_RATIO = 0.8
MIN_PARTS = 3
MIN_MEAN_SCORE = 0.2
FILL_ONLY_LIMBS = (17, 18)  # ear–shoulder limbs only complete existing entries


def _keypoints(heatmap: np.ndarray) -> List[Tuple[float, float, float]]:
    heat = np.where(heatmap < HEATMAP_THRESHOLD, 0.0, heatmap)
    padded = np.pad(heat, 1)
    centre = padded[1:-1, 1:-1]
    is_peak = (
        (centre > padded[1:-1, 2:]) & (centre > padded[1:-1, :-2]) & (centre > padded[2:, 1:-1]) & (centre > padded[:-2, 1:-1])
    )
    ys, xs = np.nonzero(is_peak)
    order = np.argsort(xs, kind="stable")
    xs, ys = xs[order], ys[order]
    kept, suppressed = [], np.zeros(len(xs), bool)
    for i in range(len(xs)):
        if suppressed[i]:
            continue
        near = np.hypot(xs[i + 1 :] - xs[i], ys[i + 1 :] - ys[i]) < SUPPRESSION_DISTANCE
        suppressed[i + 1 :] |= near
        kept.append((float(xs[i]), float(ys[i]), float(heat[ys[i], xs[i]])))
    return kept


def _connections(start: np.ndarray, end: np.ndarray, paf: np.ndarray) -> List[Tuple[int, int, float]]:
    """Greedy one-to-one connections [(start index, end index, score)] of one limb; ``paf (H, W, 2)``."""
    if len(start) == 0 or len(end) == 0:
        return []
    a = np.repeat(start[:, :2], len(end), axis=0)  # pair p = i·len(end) + j
    b = np.tile(end[:, :2], (len(start), 1))
    vector = b - a
    steps = np.arange(POINTS_PER_LIMB)[None, :, None] / (POINTS_PER_LIMB - 1)
    points = np.round(a[:, None] + steps * vector[:, None]).astype(np.int64)
    field = paf[points[..., 1], points[..., 0]]  # (P, T, 2)
    unit = vector / (np.linalg.norm(vector, axis=-1, keepdims=True) + 1e-6)
    projected = (field * unit[:, None]).sum(-1)
    valid = projected > MIN_PAF_SCORE
    count = valid.sum(1)
    score = (projected * valid).sum(1) / (count + 1e-6)
    accepted = np.flatnonzero((score > 0) & (count / POINTS_PER_LIMB > SUCCESS_RATIO))
    accepted = accepted[np.argsort(-score[accepted], kind="stable")]
    used_a, used_b, chosen = set(), set(), []
    for p in accepted:
        i, j = divmod(int(p), len(end))
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            chosen.append((i, j, float(score[p])))
    return chosen


def lw_openpose_postprocess(
    heatmaps: np.ndarray, pafs: np.ndarray, limbs: Sequence[Tuple[int, int]], factor: int = 4
) -> Tuple[np.ndarray, np.ndarray]:
    """Network-resolution ``heatmaps (h, w, 19)`` and ``pafs (h, w, 38)`` (x, y per limb, ``limbs`` order)
    → ``(N, 18, 3)`` keypoints on the ×``factor`` grid and ``(N,)`` COCO scores."""
    size = (heatmaps.shape[1] * factor, heatmaps.shape[0] * factor)
    heat_up = cv2.resize(heatmaps, size, interpolation=cv2.INTER_CUBIC)
    paf_up = cv2.resize(pafs, size, interpolation=cv2.INTER_CUBIC)
    num_parts = heatmaps.shape[2] - 1
    per_part = [np.array(_keypoints(heat_up[:, :, k]), np.float64).reshape(-1, 3) for k in range(num_parts)]
    entries: List[np.ndarray] = []  # num_parts peak indices (-1: none), score sum, part count
    for limb, (a, b) in enumerate(limbs):
        connections = _connections(per_part[a], per_part[b], paf_up[:, :, 2 * limb : 2 * limb + 2])
        if not connections:
            continue
        if limb == 0:
            entries = []
            for i, j, score in connections:
                entry = np.full(num_parts + 2, -1.0)
                entry[a], entry[b], entry[-1] = i, j, 2
                entry[-2] = per_part[a][i, 2] + per_part[b][j, 2] + score
                entries.append(entry)
        elif limb in FILL_ONLY_LIMBS:
            for i, j, _ in connections:
                for entry in entries:
                    if entry[a] == i and entry[b] == -1:
                        entry[b] = j
                    elif entry[b] == j and entry[a] == -1:
                        entry[a] = i
        else:
            for i, j, score in connections:
                holders = [entry for entry in entries if entry[a] == i]
                for entry in holders:
                    entry[b] = j
                    entry[-1] += 1
                    entry[-2] += per_part[b][j, 2] + score
                if not holders:
                    entry = np.full(num_parts + 2, -1.0)
                    entry[a], entry[b], entry[-1] = i, j, 2
                    entry[-2] = per_part[a][i, 2] + per_part[b][j, 2] + score
                    entries.append(entry)
    entries = [e for e in entries if e[-1] >= MIN_PARTS and e[-2] / e[-1] >= MIN_MEAN_SCORE]
    keypoints = np.zeros((len(entries), num_parts, 3))
    for n, entry in enumerate(entries):
        for k in range(num_parts):
            if entry[k] >= 0:
                keypoints[n, k] = per_part[k][int(entry[k])]
    return keypoints, np.array([e[-2] * max(0.0, e[-1] - 1) for e in entries])
