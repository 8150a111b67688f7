"""Test-time flip (``flip_test``): the unmirroring of heatmaps and PAFs, checked against the target renderer.

A perfect network renders the training targets of the people in its input. Shown the mirror image, it
renders the mirrored people (x → W' − 1 − x, left and right keypoints swapped). Unmirroring those maps
must give back exactly the maps of the original people, so the flip-averaged output equals them.
"""

import numpy as np
import pytest

from bpnet.data import targets
from bpnet.errors import BpnetError
from bpnet.infer.predict import FlipTest, Predictor, PredictorSettings
from bpnet.model.io import ModelInfo
from bpnet.skeleton import Skeleton

from .conftest import BODY18

STRIDE = 8


def random_people(rng: np.random.Generator, count: int, height: int, width: int) -> np.ndarray:
    """``(P, 18, 3)`` joints anywhere in a ``height × width`` input, all labeled (flag 0), a few unlabeled."""
    joints = np.zeros((count, BODY18.num_keypoints, 3))
    joints[..., 0] = rng.uniform(0, width - 1, joints.shape[:2])
    joints[..., 1] = rng.uniform(0, height - 1, joints.shape[:2])
    joints[..., 2] = np.where(rng.random(joints.shape[:2]) < 0.15, 4.0, 0.0)
    return joints


class RenderingBackend:
    """A perfect network for ``joints``: it renders their targets, or the mirrored people's when its input is
    the mirror image. Inputs grow from left to right, so the mirror image is the one brightest on its left."""

    def __init__(self, joints: np.ndarray):
        self.joints = joints

    def __call__(self, batch: np.ndarray):
        height, width = batch.shape[1:3]
        joints = self.joints
        if np.argmax(batch[0, 0, :, 0]) < width / 2:
            joints = joints[:, BODY18.flip_permutation].copy()
            joints[..., 0] = width - 1 - joints[..., 0]
        shape = (-(-height // STRIDE), -(-width // STRIDE))
        heat = targets.heatmaps(joints, shape, STRIDE, sigma=7.0)
        paf = targets.pafs(joints, BODY18.limbs, shape, STRIDE, half_width_cells=1.0)
        return heat[None], paf[None]


def marked_input(height: int, width: int) -> np.ndarray:
    tensor = np.zeros((height, width, 3), np.float32)
    tensor[..., 0] = np.arange(1, width + 1, dtype=np.float32)
    return tensor


@pytest.mark.parametrize("width", [160, 157])
def test_flip_averaged_maps_of_a_perfect_network_equal_its_plain_maps(width):
    height = 120
    backend = RenderingBackend(random_people(np.random.default_rng(width), 4, height, width))
    tensor = marked_input(height, width)
    plain_heat, plain_paf = backend(tensor[None])
    heat, paf = FlipTest(BODY18, STRIDE)(backend, tensor)
    assert np.abs(plain_paf).max() > 0.5 and plain_heat[..., :-1].max() > 0.9
    np.testing.assert_allclose(heat, plain_heat, atol=1e-5)
    np.testing.assert_allclose(paf, plain_paf, atol=1e-5)


def test_the_predictor_with_flip_test_sees_the_same_maps():
    height, width = 96, 128
    backend = RenderingBackend(random_people(np.random.default_rng(3), 3, height, width))
    info = ModelInfo(BODY18, (256.0,) * 3, (0.5,) * 3, STRIDE)
    image = np.broadcast_to(np.arange(width, dtype=np.uint8)[None, :, None], (height, width, 3)).copy()
    calls = []

    def recording(batch):
        calls.append(batch.shape)
        return backend(batch)

    plain = Predictor(recording, info, PredictorSettings(input_shape=(height, width), keep_aspect_ratio_mode=None))
    flipped = Predictor(
        recording, info, PredictorSettings(input_shape=(height, width), keep_aspect_ratio_mode=None, flip_test=True)
    )
    plain_heat, plain_paf, _ = plain.upsampled_maps(image)
    heat, paf, _ = flipped.upsampled_maps(image)
    assert len(calls) == 3
    np.testing.assert_allclose(heat, plain_heat, atol=1e-5)
    np.testing.assert_allclose(paf, plain_paf, atol=1e-5)


def test_paf_flip_of_the_18_joint_skeleton_by_hand():
    perm, sign = BODY18.paf_flip
    limbs = [(BODY18.keypoints[a], BODY18.keypoints[b]) for a, b in BODY18.limbs]
    neck_right_hip, neck_left_hip = limbs.index(("neck", "right_hip")), limbs.index(("neck", "left_hip"))
    assert list(perm[2 * neck_right_hip : 2 * neck_right_hip + 2]) == [2 * neck_left_hip, 2 * neck_left_hip + 1]
    assert list(sign[2 * neck_right_hip : 2 * neck_right_hip + 2]) == [-1.0, 1.0]
    neck_nose = limbs.index(("neck", "nose"))
    assert list(perm[2 * neck_nose : 2 * neck_nose + 2]) == [2 * neck_nose, 2 * neck_nose + 1]
    assert list(sign[2 * neck_nose : 2 * neck_nose + 2]) == [-1.0, 1.0]
    np.testing.assert_array_equal(perm[perm], np.arange(perm.size))
    np.testing.assert_array_equal(BODY18.heatmap_flip_permutation[-1], BODY18.num_keypoints)


def test_a_mirrored_limb_stored_the_other_way_round_flips_its_y_component():
    skeleton = Skeleton("toy", ("left_hand", "right_hand", "chest"), ((0, 2), (2, 1)))
    perm, sign = skeleton.paf_flip
    assert list(perm) == [2, 3, 0, 1]
    assert list(sign) == [1.0, -1.0, 1.0, -1.0]


def test_a_skeleton_without_mirror_limbs_is_a_one_line_error():
    skeleton = Skeleton("lopsided", ("left_hand", "right_hand", "chest"), ((0, 2),))
    with pytest.raises(ValueError, match="left_hand → chest has no mirror image"):
        _ = skeleton.paf_flip
    info = ModelInfo(skeleton, (256.0,) * 3, (0.5,) * 3, STRIDE)
    with pytest.raises(BpnetError, match="^flip_test: skeleton 'lopsided'"):
        Predictor(lambda batch: None, info, PredictorSettings(flip_test=True))
