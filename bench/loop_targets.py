"""Baseline for bench/data_pipeline.py: heatmap/PAF targets with a plain loop over persons and parts.

Same outputs as ``bpnet.data.targets`` (tests compare both), computed the way TLT's label processor
does: one full-grid numpy pass per (person, keypoint) and per (person, limb).
"""

import numpy as np

from bpnet.data.targets import cell_centres
from bpnet.skeleton import LABELED_FLAGS


def loop_heatmaps(joints, target_shape, stride, sigma):
    height, width = target_shape
    num_keypoints = joints.shape[1]
    out = np.zeros((height, width, num_keypoints + 1), dtype=np.float32)
    xs, ys = cell_centres(width, stride), cell_centres(height, stride)
    for person in joints:
        for k, (x, y, flag) in enumerate(person):
            if flag in LABELED_FLAGS:
                gaussian = np.outer(np.exp(-((ys - y) ** 2) / (2 * sigma**2)), np.exp(-((xs - x) ** 2) / (2 * sigma**2)))
                out[..., k] = np.maximum(out[..., k], gaussian)
    out[..., num_keypoints] = np.clip(1.0 - out[..., :num_keypoints].max(axis=-1, initial=0.0), 0.0, 1.0)
    return out


def loop_pafs(joints, limbs, target_shape, stride, half_width_cells):
    height, width = target_shape
    out = np.zeros((height, width, 2 * len(limbs)), dtype=np.float32)
    gx, gy = np.meshgrid(cell_centres(width, stride), cell_centres(height, stride))
    for limb, (a, b) in enumerate(limbs):
        total = np.zeros((height, width, 2))
        count = np.zeros((height, width))
        for person in joints:
            if person[a, 2] not in LABELED_FLAGS or person[b, 2] not in LABELED_FLAGS:
                continue
            vector = person[b, :2] - person[a, :2]
            length = np.hypot(*vector)
            if length == 0:
                continue
            ux, uy = vector / length
            along = (gx - person[a, 0]) * ux + (gy - person[a, 1]) * uy
            across = np.abs((gx - person[a, 0]) * uy - (gy - person[a, 1]) * ux)
            inside = (along >= 0) & (along <= length) & (across <= half_width_cells * stride)
            total[inside] += (ux, uy)
            count[inside] += 1
        np.divide(total, count[..., None], out=total, where=count[..., None] > 0)
        out[..., 2 * limb : 2 * limb + 2] = total
    return out
