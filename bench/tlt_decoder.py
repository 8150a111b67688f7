"""A direct Python port of TLT bpnet's post-processor (reference §3.16), kept as the decoding baseline.

It follows the reference's numpy path (used for TensorRT engines): per-channel ``cv2.GaussianBlur``
(5×5, σ 3), 4-neighbour NMS, a Python loop over every candidate pair with a 10-sample line
integral, greedy matching, OpenPose ``subset`` assembly, then ``count < 4`` / ``score/count < 0.4``
removal. Inputs: ``heatmaps (H, W, K + 1)`` and ``pafs (H, W, 2L)`` at the searched resolution,
``limbs`` as (start, end) keypoint indices in PAF order. Output: ``(N, K, 3)`` [x, y, score] and
person scores ``1 − 1/score_sum``, as TLT writes them (missing keypoints: score 0).
"""

import math

import cv2
import numpy as np


def tlt_decode(
    heatmaps,
    pafs,
    limbs,
    heatmap_threshold=0.1,
    paf_threshold=0.05,
    samples=10,
    count_threshold=0.8,
    num_parts_thresh=4,
    overall_score_thresh=0.4,
):
    num_parts = heatmaps.shape[2] - 1
    all_peaks, peak_counter = [], 0
    for part in range(num_parts):
        heat = heatmaps[:, :, part]
        smoothed = cv2.GaussianBlur(heat, (5, 5), 3)
        left = np.zeros(smoothed.shape)
        left[1:, :] = smoothed[:-1, :]
        right = np.zeros(smoothed.shape)
        right[:-1, :] = smoothed[1:, :]
        up = np.zeros(smoothed.shape)
        up[:, 1:] = smoothed[:, :-1]
        down = np.zeros(smoothed.shape)
        down[:, :-1] = smoothed[:, 1:]
        binary = np.logical_and.reduce(
            (smoothed >= left, smoothed >= right, smoothed >= up, smoothed >= down, smoothed > 0, heat > heatmap_threshold)
        )
        peaks = list(zip(np.nonzero(binary)[1], np.nonzero(binary)[0]))
        with_score = [p + (heat[p[1], p[0]],) for p in peaks]
        ids = range(peak_counter, peak_counter + len(peaks))
        all_peaks.append([with_score[i] + (ids[i],) for i in range(len(ids))])
        peak_counter += len(peaks)

    connection_all, special_k = [], []
    for k, (a, b) in enumerate(limbs):
        score_mid = pafs[:, :, [2 * k, 2 * k + 1]]
        cand_a, cand_b = all_peaks[a], all_peaks[b]
        if len(cand_a) == 0 or len(cand_b) == 0:
            special_k.append(k)
            connection_all.append([])
            continue
        candidates = []
        for i in range(len(cand_a)):
            for j in range(len(cand_b)):
                vec = np.subtract(cand_b[j][:2], cand_a[i][:2])
                norm = math.sqrt(vec[0] * vec[0] + vec[1] * vec[1]) + 1e-6
                vec = np.divide(vec, norm)
                xs = np.round(np.linspace(cand_a[i][0], cand_b[j][0], num=samples)).astype(int)
                ys = np.round(np.linspace(cand_a[i][1], cand_b[j][1], num=samples)).astype(int)
                vec_x = np.array([score_mid[ys[t], xs[t], 0] for t in range(samples)])
                vec_y = np.array([score_mid[ys[t], xs[t], 1] for t in range(samples)])
                sampled = np.multiply(vec_x, vec[0]) + np.multiply(vec_y, vec[1])
                valid = sampled > paf_threshold
                count = np.sum(valid)
                score = np.sum(sampled * valid) / (count + 1e-6)
                if count > count_threshold * samples and score > 0:
                    candidates.append([i, j, score])
        candidates = sorted(candidates, key=lambda c: c[2], reverse=True)
        connection = np.zeros((0, 3))
        for i, j, score in candidates:
            if i not in connection[:, 0] and j not in connection[:, 1]:
                connection = np.vstack([connection, [cand_a[i][3], cand_b[j][3], score]])
        connection_all.append(connection)

    candidate = np.array([item for sublist in all_peaks for item in sublist]).reshape(-1, 4)
    subset = -1 * np.ones((0, num_parts + 2))
    for k, (index_a, index_b) in enumerate(limbs):
        if k in special_k:
            continue
        part_as, part_bs = connection_all[k][:, 0], connection_all[k][:, 1]
        for i in range(len(connection_all[k])):
            found, subset_idx = 0, [-1, -1]
            for j in range(len(subset)):
                if subset[j][index_a] == part_as[i] or subset[j][index_b] == part_bs[i]:
                    if found < 2:
                        subset_idx[found] = j
                    found += 1
            if found == 1:
                j = subset_idx[0]
                if subset[j][index_b] != part_bs[i]:
                    subset[j][index_b] = part_bs[i]
                    subset[j][-1] += 1
                    subset[j][-2] += candidate[part_bs[i].astype(int), 2] + connection_all[k][i][2]
            elif found == 2:
                j1, j2 = subset_idx
                membership = ((subset[j1] >= 0).astype(int) + (subset[j2] >= 0).astype(int))[:-2]
                if len(np.nonzero(membership == 2)[0]) == 0:
                    subset[j1][:-2] += subset[j2][:-2] + 1
                    subset[j1][-2:] += subset[j2][-2:]
                    subset[j1][-2] += connection_all[k][i][2]
                    subset = np.delete(subset, j2, 0)
                elif subset[j1][index_b] != part_bs[i]:
                    subset[j1][index_b] = part_bs[i]
                    subset[j1][-1] += 1
                    subset[j1][-2] += candidate[part_bs[i].astype(int), 2] + connection_all[k][i][2]
            elif not found and k < len(limbs) - 2:
                row = -1 * np.ones(num_parts + 2)
                row[index_a], row[index_b] = part_as[i], part_bs[i]
                row[-1] = 2
                row[-2] = sum(candidate[connection_all[k][i, :2].astype(int), 2]) + connection_all[k][i][2]
                subset = np.vstack([subset, row])
    keep = [
        i
        for i in range(len(subset))
        if subset[i][-1] >= num_parts_thresh and subset[i][-2] / subset[i][-1] >= overall_score_thresh
    ]
    subset = subset[keep]
    people = np.zeros((len(subset), num_parts, 3))
    for n, row in enumerate(subset):
        for part in range(num_parts):
            if row[part] >= 0:
                people[n, part] = candidate[int(row[part]), :3]
    scores = np.array([1 - 1.0 / row[-2] for row in subset])
    return people, scores
