"""Heatmap and PAF targets against an independent per-pixel loop, overlap averaging, round trip."""

import math

import numpy as np
import pytest

from bpnet.data import augment, targets
from bpnet.skeleton import Skeleton, Visibility

from .conftest import REPO_ROOT

BODY18 = Skeleton.from_file(str(REPO_ROOT / "model_pose_config" / "bpnet_18joints.json"))
STRIDE, SIGMA, HALF_WIDTH = 8, 7.0, 1.0


def slow_targets(joints, limbs, shape, stride, sigma, half_width):
    """Every cell, every keypoint, every person, one at a time."""
    h, w = shape
    num_k = joints.shape[1]
    heat = np.zeros((h, w, num_k + 1))
    paf = np.zeros((h, w, 2 * len(limbs)))
    for row in range(h):
        for col in range(w):
            cx, cy = col * stride + (stride - 1) / 2, row * stride + (stride - 1) / 2
            for k in range(num_k):
                best = 0.0
                for person in joints:
                    x, y, flag = person[k]
                    if flag in (0, 1, 2):
                        best = max(best, math.exp(-((cx - x) ** 2 + (cy - y) ** 2) / (2 * sigma**2)))
                heat[row, col, k] = best
            heat[row, col, num_k] = min(1.0, max(0.0, 1.0 - max(heat[row, col, :num_k])))
            for limb, (a, b) in enumerate(limbs):
                total, count = np.zeros(2), 0
                for person in joints:
                    (ax, ay, fa), (bx, by, fb) = person[a], person[b]
                    length = math.hypot(bx - ax, by - ay)
                    if fa not in (0, 1, 2) or fb not in (0, 1, 2) or length == 0:
                        continue
                    ux, uy = (bx - ax) / length, (by - ay) / length
                    along = (cx - ax) * ux + (cy - ay) * uy
                    across = abs((cx - ax) * uy - (cy - ay) * ux)
                    if 0 <= along <= length and across <= half_width * stride:
                        total += (ux, uy)
                        count += 1
                if count:
                    paf[row, col, 2 * limb : 2 * limb + 2] = total / count
    return heat, paf


def random_people(rng, count, canvas, flags=(0, 0, 0, 1, 2, 4)):
    xy = rng.uniform(-20, canvas + 20, (count, 18, 2))
    flag = rng.choice(flags, (count, 18, 1))
    return np.concatenate([xy, flag], axis=-1)


def assert_equal_to_slow(joints, shape):
    heat = targets.heatmaps(joints, shape, STRIDE, SIGMA)
    paf = targets.pafs(joints, BODY18.limbs, shape, STRIDE, HALF_WIDTH)
    slow_heat, slow_paf = slow_targets(joints, BODY18.limbs, shape, STRIDE, SIGMA, HALF_WIDTH)
    assert heat.dtype == paf.dtype == np.float32
    np.testing.assert_allclose(heat, slow_heat, atol=1e-5)
    np.testing.assert_allclose(paf, slow_paf, atol=1e-5)
    return heat, paf


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_scenes_equal_the_slow_loop(seed):
    rng = np.random.default_rng(seed)
    joints = random_people(rng, 4, 128)
    _, paf = assert_equal_to_slow(joints, (16, 16))
    assert np.abs(paf).sum() > 0


def test_non_square_targets():
    joints = random_people(np.random.default_rng(5), 3, 96)
    assert_equal_to_slow(joints, (8, 12))


def test_overlapping_limbs_are_averaged_not_overwritten():
    joints = np.zeros((2, 18, 3))
    joints[..., 2] = Visibility.NOT_LABELED
    neck, hip = BODY18.index("neck"), BODY18.index("right_hip")
    joints[0, neck], joints[0, hip] = (20, 60, 0), (100, 60, 0)  # horizontal limb
    joints[1, neck], joints[1, hip] = (60, 20, 0), (60, 100, 1)  # vertical limb crossing it
    _, paf = assert_equal_to_slow(joints, (16, 16))
    limb = BODY18.limbs.index((neck, hip))
    crossing = paf[7, 7, 2 * limb : 2 * limb + 2]  # cell centre (59.5, 59.5), inside both bands
    np.testing.assert_allclose(crossing, [0.5, 0.5], atol=1e-6)
    np.testing.assert_allclose(paf[7, 3, 2 * limb : 2 * limb + 2], [1, 0], atol=1e-6)  # only the first person


def test_a_person_partly_outside_the_canvas():
    joints = np.zeros((1, 18, 3))
    joints[0, :, :2] = np.linspace([-40, 10], [90, 120], 18)
    moved = augment.transform_joints(joints, np.eye(3), (64, 64), BODY18.flip_permutation, flip_lr=False)
    assert (moved[0, :, 2] == Visibility.TRUNCATED).sum() > 4
    heat, _ = assert_equal_to_slow(moved, (8, 8))
    outside = moved[0, :, 2] == Visibility.TRUNCATED
    assert heat[..., :18][..., outside].max() == 0  # marked joints draw nothing


def test_heatmap_peaks_are_within_half_a_cell_of_the_keypoint():
    rng = np.random.default_rng(3)
    for _ in range(30):
        joints = np.zeros((1, 18, 3))
        joints[0, :, :2] = rng.uniform(0, 255, (18, 2))
        heat = targets.heatmaps(joints, (32, 32), STRIDE, SIGMA)
        for k in range(18):
            row, col = np.unravel_index(np.argmax(heat[..., k]), (32, 32))
            centre = np.array([col, row]) * STRIDE + (STRIDE - 1) / 2
            assert np.all(np.abs(centre - joints[0, k, :2]) <= STRIDE / 2 + 1e-9)


def test_background_and_empty_scenes():
    empty = np.zeros((0, 18, 3))
    heat = targets.heatmaps(empty, (4, 4), STRIDE, SIGMA)
    assert heat.shape == (4, 4, 19) and np.all(heat[..., 18] == 1) and np.all(heat[..., :18] == 0)
    assert np.all(targets.pafs(empty, BODY18.limbs, (4, 4), STRIDE, HALF_WIDTH) == 0)


def test_the_benchmark_baseline_computes_the_same_targets():
    import sys

    sys.path.insert(0, str(REPO_ROOT / "bench"))
    from loop_targets import loop_heatmaps, loop_pafs

    joints = random_people(np.random.default_rng(9), 5, 128)
    expected = loop_heatmaps(joints, (16, 16), STRIDE, SIGMA)
    np.testing.assert_allclose(expected, targets.heatmaps(joints, (16, 16), STRIDE, SIGMA), atol=1e-5)
    np.testing.assert_allclose(
        loop_pafs(joints, BODY18.limbs, (16, 16), STRIDE, HALF_WIDTH),
        targets.pafs(joints, BODY18.limbs, (16, 16), STRIDE, HALF_WIDTH),
        atol=1e-5,
    )
