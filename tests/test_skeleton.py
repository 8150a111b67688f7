"""Skeleton: derived channel counts, flip pairs and the dataset → model mapping, for two configs."""

import json

import numpy as np
import pytest

from bpnet import specs
from bpnet.skeleton import Skeleton, Visibility, check_channel_counts

from .conftest import BODY18, REPO_ROOT

COCO_SPEC = specs.load_dataset_spec(REPO_ROOT / "data_pose_config" / "coco_spec.json")

# Reference §2.12.6: BPNet index -> COCO index (-1: synthesised neck).
REFERENCE_COCO_INDEX = [0, -1, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3]


def test_18_joint_counts_are_derived():
    assert (BODY18.num_keypoints, BODY18.num_limbs) == (18, 19)
    assert (BODY18.num_heatmap_channels, BODY18.num_paf_channels) == (19, 38)
    assert BODY18.paf_channel_pairs[14] == (28, 29)
    assert BODY18.limbs[14] == (1, 0)  # neck -> nose, as the reference table


def test_18_joint_flip_pairs_match_the_reference():
    assert [list(p) for p in BODY18.flip_pairs] == [[5, 2], [6, 3], [7, 4], [11, 8], [12, 9], [13, 10], [15, 14], [17, 16]]
    perm = BODY18.flip_permutation
    for left, right in BODY18.flip_pairs:
        assert (perm[left], perm[right]) == (right, left)
    assert perm[0] == 0 and perm[1] == 1


def test_coco_to_18_joint_mapping_matches_the_reference():
    mapping = BODY18.mapping_from(COCO_SPEC.category, COCO_SPEC.visibility_flags)
    assert list(mapping.source) == REFERENCE_COCO_INDEX
    assert dict(mapping.midpoints) == {1: (5, 6)}


def _coco_person(**joints):
    """COCO (17, 3) joints, every keypoint unlabeled except those given by name as (x, y, v)."""
    out = np.zeros((1, 17, 3))
    for name, value in joints.items():
        out[0, COCO_SPEC.category.keypoints.index(name)] = value
    return out


def test_flags_and_positions_are_converted():
    mapping = BODY18.mapping_from(COCO_SPEC.category, COCO_SPEC.visibility_flags)
    model = mapping.convert(_coco_person(nose=(10, 20, 2), left_wrist=(5, 6, 1)))
    assert model.shape == (1, 18, 3)
    np.testing.assert_array_equal(model[0, 0], [10, 20, Visibility.VISIBLE])
    np.testing.assert_array_equal(model[0, BODY18.index("left_wrist")], [5, 6, Visibility.OCCLUDED])
    assert model[0, BODY18.index("right_ankle"), 2] == Visibility.NOT_LABELED


def test_neck_is_the_midpoint_of_labeled_shoulders_with_the_worse_flag():
    mapping = BODY18.mapping_from(COCO_SPEC.category, COCO_SPEC.visibility_flags)
    both = mapping.convert(_coco_person(left_shoulder=(10, 10, 2), right_shoulder=(30, 20, 1)))
    np.testing.assert_array_equal(both[0, 1], [20, 15, Visibility.OCCLUDED])
    visible = mapping.convert(_coco_person(left_shoulder=(10, 10, 2), right_shoulder=(30, 20, 2)))
    assert visible[0, 1, 2] == Visibility.VISIBLE


def test_no_neck_when_a_shoulder_is_unlabeled():
    """TLT (§3.4 quirk) would emit a 'visible' neck halfway to (0, 0) here."""
    mapping = BODY18.mapping_from(COCO_SPEC.category, COCO_SPEC.visibility_flags)
    one = mapping.convert(_coco_person(left_shoulder=(10, 10, 2)))
    np.testing.assert_array_equal(one[0, 1], [0, 0, Visibility.NOT_LABELED])


def test_unknown_visibility_value_is_an_error():
    mapping = BODY18.mapping_from(COCO_SPEC.category, COCO_SPEC.visibility_flags)
    with pytest.raises(ValueError, match=r"unknown visibility value\(s\) \[3.0\]"):
        mapping.convert(_coco_person(nose=(1, 1, 3)))


# A second, different keypoint set: a quadruped whose dataset orders keypoints differently, lacks
# one of the model's keypoints, and has no shoulders (so no neck can be made).
ANIMAL_POSE = {
    "pose_config_type": "quadruped_7",
    "categories": [
        {
            "id": 1,
            "name": "animal",
            "keypoints": ["snout", "neck", "left_front_paw", "right_front_paw", "left_hind_paw", "right_hind_paw", "tail"],
            "skeleton": [[2, 1], [2, 3], [2, 4], [2, 7], [7, 5], [7, 6]],
        }
    ],
}
ANIMAL_DATASET_CATEGORY = specs.Category(
    id=3,
    name="animal",
    keypoints=("tail", "right_hind_paw", "left_hind_paw", "right_front_paw", "left_front_paw", "snout"),
    skeleton=((6, 5), (6, 4)),
)
ANIMAL_FLAGS = specs.VisibilityFlags(
    value={"seen": 1, "hidden": 2, "absent": 0}, mapping={"seen": "visible", "hidden": "occluded", "absent": "not_labeled"}
)


def test_a_different_skeleton(tmp_path):
    path = tmp_path / "animal.json"
    path.write_text(json.dumps(ANIMAL_POSE))
    skeleton = Skeleton.from_file(str(path))
    assert (skeleton.num_heatmap_channels, skeleton.num_paf_channels) == (8, 12)
    assert skeleton.flip_pairs == ((2, 3), (4, 5))
    mapping = skeleton.mapping_from(ANIMAL_DATASET_CATEGORY, ANIMAL_FLAGS)
    assert mapping.source == (5, -1, 4, 3, 2, 1, 0)
    assert not mapping.midpoints
    dataset = np.array([[[1, 2, 1], [3, 4, 2], [5, 6, 0], [7, 8, 1], [9, 10, 1], [11, 12, 2]]], dtype=float)
    model = mapping.convert(dataset)
    expected = [[11, 12, 2], [0, 0, Visibility.NOT_LABELED_IN_DATASET], [9, 10, 0], [7, 8, 0], [5, 6, 4], [3, 4, 2], [1, 2, 0]]
    np.testing.assert_array_equal(model[0], expected)


def test_explicit_channel_counts_must_agree():
    check_channel_counts(BODY18, 19, 38)
    check_channel_counts(BODY18, None, None)
    with pytest.raises(ValueError, match="heat_channels is 18 but .* needs 19"):
        check_channel_counts(BODY18, 18, 38)
    with pytest.raises(ValueError, match="paf_channels is 36 but .* needs 38"):
        check_channel_counts(BODY18, 19, 36)


def test_dict_round_trip():
    assert Skeleton.from_dict(json.loads(json.dumps(BODY18.to_dict()))) == BODY18
