"""Spatial augmentation at the pixel, flips, canvas marking, random draws and colour jitter."""

import itertools

import cv2
import numpy as np
import pytest

from bpnet.data import augment
from bpnet.skeleton import Visibility
from bpnet.specs import ColorAugParams, SpatialAugParams

from .conftest import BODY18

MODES = ("person_centric", "standard", "standard_with_fixed_aspect_ratio")
CANVAS = (96, 64)  # (W, H): not square, so width and height cannot be confused


def lit_pixel_position(image_size, point, matrix):
    """Where a single lit source pixel at integer ``point`` lands after the warp (argmax)."""
    source = np.zeros(image_size[::-1], dtype=np.float32)
    source[point[1], point[0]] = 1.0
    warped = augment.warp(source, matrix, CANVAS, 0.0)
    assert warped.max() > 0.2, "the lit pixel must survive the warp"
    y, x = np.unravel_index(np.argmax(warped), warped.shape)
    return np.array([x, y], dtype=float)


@pytest.mark.parametrize("mode, flip_lr, flip_tb", list(itertools.product(MODES, (False, True), (False, True))))
def test_a_lit_pixel_lands_where_its_keypoint_lands(mode, flip_lr, flip_tb):
    rng = np.random.default_rng(hash((mode, flip_lr, flip_tb)) % 2**32)
    image_size = (41, 33)  # (w, h): smaller than the canvas, so the warp magnifies
    checked = 0
    for trial in range(20):
        draw = augment.SpatialDraw(
            flip_lr,
            flip_tb,
            rotate_deg=rng.uniform(-40, 40),
            zoom=rng.uniform(0.9, 1.3),
            translate_x=float(rng.integers(-3, 4)),
            translate_y=float(rng.integers(-3, 4)),
        )
        point = (int(rng.integers(12, 29)), int(rng.integers(10, 23)))
        matrix = augment.spatial_matrix(
            mode, draw, image_size, CANVAS, main_center=(20.0, 16.0), main_scale=20.0, target_person_scale=0.6
        )
        joints = np.zeros((1, BODY18.num_keypoints, 3))
        joints[0, 0] = (*point, Visibility.VISIBLE)  # the nose has no flip partner
        moved = augment.transform_joints(joints, matrix, CANVAS, BODY18.flip_permutation, flip_lr)
        if moved[0, 0, 2] == Visibility.TRUNCATED:
            continue
        found = lit_pixel_position(image_size, point, matrix)
        assert np.all(np.abs(found - moved[0, 0, :2]) <= 1.0), (trial, found, moved[0, 0, :2])
        checked += 1
    assert checked >= 10


def test_person_centric_puts_the_main_person_at_the_centre_at_the_target_scale():
    draw = augment.IDENTITY_DRAW
    matrix = augment.spatial_matrix("person_centric", draw, (640, 480), (256, 256), (300.0, 200.0), 320.0, 0.6)
    centre = matrix @ [300.0, 200.0, 1.0]
    np.testing.assert_allclose(centre[:2], [128, 128])
    top, bottom = matrix @ [300.0, 40.0, 1.0], matrix @ [300.0, 360.0, 1.0]
    np.testing.assert_allclose(bottom[1] - top[1], 0.6 * 256, rtol=1e-4)


def test_standard_modes_fit_or_stretch_the_whole_image():
    size, canvas = (200, 100), (64, 64)
    corners = np.array([[0, 0, 1], [199, 99, 1]], dtype=float).T
    kept = augment.spatial_matrix("standard", augment.IDENTITY_DRAW, size, canvas, (0, 0), 1.0, 0.6) @ corners
    np.testing.assert_allclose(kept[:2, 1] - kept[:2, 0], [199 * 64 / 200, 99 * 64 / 200])  # aspect kept
    stretched = (
        augment.spatial_matrix("standard_with_fixed_aspect_ratio", augment.IDENTITY_DRAW, size, canvas, (0, 0), 1.0, 0.6)
        @ corners
    )
    np.testing.assert_allclose(stretched[:2, 1] - stretched[:2, 0], [199 * 64 / 200, 99 * 64 / 100])


def test_flip_lr_swaps_left_and_right_joints():
    joints = np.zeros((1, 18, 3))
    left, right = BODY18.index("left_wrist"), BODY18.index("right_wrist")
    joints[0, left] = (10, 20, Visibility.VISIBLE)
    joints[0, right] = (30, 20, Visibility.OCCLUDED)
    draw = augment.SpatialDraw(True, False, 0.0, 1.0, 0.0, 0.0)
    matrix = augment.spatial_matrix("standard", draw, (40, 40), (40, 40), (0, 0), 1.0, 0.6)
    moved = augment.transform_joints(joints, matrix, (40, 40), BODY18.flip_permutation, flip_lr=True)
    mirrored_right = matrix @ [30, 20, 1]
    np.testing.assert_allclose(moved[0, left], [*mirrored_right[:2], Visibility.OCCLUDED])
    assert moved[0, left, 0] < moved[0, right, 0]  # the new left wrist is on the left again
    flipped_tb = augment.transform_joints(joints, matrix, (40, 40), BODY18.flip_permutation, flip_lr=False)
    assert flipped_tb[0, left, 2] == Visibility.VISIBLE  # no swap without flip_lr


def test_joints_leaving_the_canvas_are_marked():
    joints = np.array([[[5, 5, 0], [50, 5, 2], [-1, 3, 1], [5, 5, 4]]], dtype=float)
    moved = augment.transform_joints(joints, np.eye(3), (40, 30), np.arange(4), flip_lr=False)
    assert list(moved[0, :, 2]) == [0, Visibility.TRUNCATED, Visibility.TRUNCATED, Visibility.NOT_LABELED]


def test_draws_respect_ranges_and_probabilities():
    params = SpatialAugParams(
        flip_lr_prob=0.5,
        rotate_deg_max=10,
        zoom_prob=1.0,
        zoom_ratio_min=0.5,
        zoom_ratio_max=0.7,
        translate_max_x=3,
        translate_max_y=2,
    )
    rng = np.random.default_rng(0)
    draws = [augment.draw_spatial(params, 100, 50, rng) for _ in range(400)]
    assert 150 < sum(d.flip_lr for d in draws) < 250 and not any(d.flip_tb for d in draws)
    assert all(-10 <= d.rotate_deg <= 10 and 0.5 <= d.zoom <= 0.7 for d in draws)
    assert {d.translate_x for d in draws} == {-3, -2, -1, 0, 1, 2, 3}
    assert {d.translate_y for d in draws} == {-2, -1, 0, 1, 2}
    ratio = SpatialAugParams(use_translate_ratio=True, translate_ratio_max=0.1)
    ratio_draws = [augment.draw_spatial(ratio, 100, 50, rng) for _ in range(200)]
    assert max(abs(d.translate_x) for d in ratio_draws) <= 10 and max(abs(d.translate_y) for d in ratio_draws) <= 5
    assert len({d.translate_x for d in ratio_draws}) > 50  # continuous, not integer


def test_reduced_decoding_warps_like_the_full_image():
    rng = np.random.default_rng(1)
    full = cv2.GaussianBlur(rng.uniform(0, 255, (120, 160)).astype(np.float32), (0, 0), 4)
    matrix = augment.spatial_matrix("person_centric", augment.IDENTITY_DRAW, (160, 120), (32, 32), (80, 60), 60.0, 0.6)
    reduction = augment.decode_reduction(matrix)
    assert reduction == 2
    half = cv2.resize(full, (80, 60), interpolation=cv2.INTER_AREA)  # what a 1/2 JPEG decode gives
    direct = augment.warp(full, matrix, (32, 32), 0.0)
    reduced = augment.warp(half, augment.reduced_matrix(matrix, reduction), (32, 32), 0.0)
    assert np.abs(direct - reduced)[2:-2, 2:-2].mean() < 1.0  # values span ~60 grey levels


def test_colour_jitter():
    rng = np.random.default_rng(0)
    image = rng.uniform(40, 200, (16, 16, 3)).astype(np.float32)
    gray = augment.color_augment(image, ColorAugParams(saturation_prob=1, saturation_min=0, saturation_max=0), rng)
    np.testing.assert_allclose(gray[..., 0], gray[..., 2], atol=1e-3)
    flat = augment.color_augment(image, ColorAugParams(contrast_prob=1, contrast_min=0, contrast_max=0), rng)
    np.testing.assert_allclose(flat, image.mean(), atol=1e-3)
    brighter = augment.color_augment(image, ColorAugParams(brightness_prob=1, brightness_max_delta=0.1), rng)
    shift = brighter - image
    assert np.ptp(shift) < 1e-3 and 0 < abs(shift.mean()) <= 25.5
    red = np.zeros((2, 2, 3), np.float32)
    red[..., 0] = 255
    hue = augment.color_augment(red, ColorAugParams(hue_prob=1, hue_max_delta=0.0), rng)
    np.testing.assert_allclose(hue, red, atol=1e-2)
    untouched = augment.color_augment(image, ColorAugParams(), rng)
    np.testing.assert_array_equal(untouched, image)
