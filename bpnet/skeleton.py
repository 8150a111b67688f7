"""The model skeleton: keypoint names, limbs, PAF channels, flip pairs, dataset → model keypoint mapping.

This is the only module that knows how keypoints are named and ordered. Channel counts are derived
from the pose config: ``num_keypoints + 1`` heatmap channels (the last is the background) and
``2 · num_limbs`` PAF channels, limb ``k`` owning channels ``(2k, 2k + 1)`` = (x, y).

Joint arrays are ``(P, K, 3)`` float64 with columns ``[x, y, flag]`` in image pixels (x right, y
down). Model flags use TLT's visibility codes (:class:`Visibility`); targets use flags 0, 1, 2.
"""

import dataclasses
import enum
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from bpnet.specs import Category, PoseConfig, VisibilityFlags, load_pose_config


class Visibility(enum.IntEnum):
    """TLT's joint visibility codes (``pose_config.py::JointVisibility``)."""

    VISIBLE = 0
    ANNOTATABLE = 1
    OCCLUDED = 2
    TRUNCATED = 3
    NOT_LABELED = 4
    NOT_LABELED_IN_DATASET = 5


LABELED_FLAGS = (Visibility.VISIBLE, Visibility.ANNOTATABLE, Visibility.OCCLUDED)
"""Flags of joints that are drawn into the targets."""

SYNTHESIZED_KEYPOINTS: Dict[str, Tuple[str, str]] = {"neck": ("left_shoulder", "right_shoulder")}
"""Model keypoints a dataset may lack, made as the midpoint of two dataset keypoints."""

_LEFT, _RIGHT = "left_", "right_"


@dataclasses.dataclass(frozen=True)
class KeypointMapping:
    """Converts dataset joints ``(P, Kd, 3)`` [x, y, dataset flag] into model joints ``(P, K, 3)``.

    ``source[k]`` is the dataset index of model keypoint ``k`` (-1 if the dataset lacks it);
    ``midpoints[k] = (a, b)`` synthesises keypoint ``k`` from dataset keypoints ``a`` and ``b``: it is
    labeled only when both are, at their midpoint, with the worse (larger) of their flags.
    """

    source: Tuple[int, ...]
    midpoints: Mapping[int, Tuple[int, int]]
    flag_values: Tuple[int, ...]
    flag_codes: Tuple[int, ...]
    num_dataset_keypoints: int

    def convert_flags(self, raw_flags: np.ndarray) -> np.ndarray:
        """Map dataset visibility values to :class:`Visibility` codes; unknown values raise ValueError."""
        raw = np.asarray(raw_flags)
        codes = np.full(raw.shape, -1, dtype=np.int64)
        for value, code in zip(self.flag_values, self.flag_codes):
            codes[raw == value] = code
        if np.any(codes < 0):
            unknown = sorted(set(np.asarray(raw[codes < 0]).ravel().tolist()))
            raise ValueError(f"unknown visibility value(s) {unknown}; expected one of {list(self.flag_values)}")
        return codes

    def convert(self, dataset_joints: np.ndarray) -> np.ndarray:
        """``(P, Kd, 3)`` dataset joints → ``(P, K, 3)`` float64 model joints with model flags."""
        joints = np.asarray(dataset_joints, dtype=np.float64)
        if joints.ndim != 3 or joints.shape[1:] != (self.num_dataset_keypoints, 3):
            raise ValueError(f"expected joints of shape (P, {self.num_dataset_keypoints}, 3), got {joints.shape}")
        flags = self.convert_flags(joints[..., 2])
        num_persons = joints.shape[0]
        out = np.zeros((num_persons, len(self.source), 3), dtype=np.float64)
        out[..., 2] = Visibility.NOT_LABELED_IN_DATASET
        present = [k for k, s in enumerate(self.source) if s >= 0]
        sources = [self.source[k] for k in present]
        out[:, present, :2] = joints[:, sources, :2]
        out[:, present, 2] = flags[:, sources]
        for k, (a, b) in self.midpoints.items():
            labeled = np.isin(flags[:, a], LABELED_FLAGS) & np.isin(flags[:, b], LABELED_FLAGS)
            midpoint = (joints[:, a, :2] + joints[:, b, :2]) / 2.0
            out[:, k, :2] = np.where(labeled[:, None], midpoint, 0.0)
            out[:, k, 2] = np.where(labeled, np.maximum(flags[:, a], flags[:, b]), Visibility.NOT_LABELED)
        return out


@dataclasses.dataclass(frozen=True)
class Skeleton:
    """Keypoints and limbs of a model. ``limbs[k] = (from, to)`` are 0-based keypoint indices."""

    name: str
    keypoints: Tuple[str, ...]
    limbs: Tuple[Tuple[int, int], ...]

    def __post_init__(self) -> None:
        n = len(self.keypoints)
        if n == 0 or len(set(self.keypoints)) != n:
            raise ValueError("a skeleton needs at least one keypoint and unique keypoint names")
        for a, b in self.limbs:
            if not (0 <= a < n and 0 <= b < n) or a == b:
                raise ValueError(f"limb ({a}, {b}) does not join two keypoints of 0..{n - 1}")

    @classmethod
    def from_pose_config(cls, pose_config: PoseConfig) -> "Skeleton":
        category = pose_config.category
        limbs = tuple((a - 1, b - 1) for a, b in category.skeleton)
        return cls(pose_config.pose_config_type, tuple(category.keypoints), limbs)

    @classmethod
    def from_file(cls, pose_config_path: str) -> "Skeleton":
        """Build from a pose config file such as ``model_pose_config/bpnet_18joints.json``."""
        return cls.from_pose_config(load_pose_config(pose_config_path))

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)

    @property
    def num_limbs(self) -> int:
        return len(self.limbs)

    @property
    def num_heatmap_channels(self) -> int:
        """Keypoint heatmaps plus one background channel."""
        return self.num_keypoints + 1

    @property
    def num_paf_channels(self) -> int:
        return 2 * self.num_limbs

    @property
    def paf_channel_pairs(self) -> Tuple[Tuple[int, int], ...]:
        """``(x channel, y channel)`` of each limb, counted from the first PAF channel."""
        return tuple((2 * k, 2 * k + 1) for k in range(self.num_limbs))

    def index(self, name: str) -> int:
        return self.keypoints.index(name)

    @property
    def flip_pairs(self) -> Tuple[Tuple[int, int], ...]:
        """``(left index, right index)`` pairs matched by name (``left_x`` ↔ ``right_x``), in keypoint order."""
        pairs = []
        for i, name in enumerate(self.keypoints):
            if _LEFT in name:
                partner = name.replace(_LEFT, _RIGHT, 1)
                if partner in self.keypoints:
                    pairs.append((i, self.index(partner)))
        return tuple(pairs)

    @property
    def flip_permutation(self) -> np.ndarray:
        """``(K,)`` int array: after a horizontal flip, keypoint ``k`` takes the joint of ``perm[k]``."""
        perm = np.arange(self.num_keypoints)
        for left, right in self.flip_pairs:
            perm[left], perm[right] = right, left
        return perm

    @property
    def heatmap_flip_permutation(self) -> np.ndarray:
        """``(K + 1,)``: after a horizontal flip, heatmap channel ``c`` is channel ``perm[c]`` (background last,
        unmoved)."""
        return np.append(self.flip_permutation, self.num_keypoints)

    @property
    def paf_flip(self) -> Tuple[np.ndarray, np.ndarray]:
        """``(perm, sign)``, each ``(2L,)``: a horizontal flip turns PAF channel ``c`` into ``sign[c] · channel
        perm[c]`` of the mirrored maps. Limb ``a → b`` becomes the skeleton's limb between the mirrored
        keypoints: stored the same way round, only its x component changes sign; stored ``b' → a'``, its y.
        A :class:`ValueError` names a limb whose mirror image is not in the skeleton."""
        mirror = self.flip_permutation
        index = {limb: k for k, limb in enumerate(self.limbs)}
        perm, sign = np.zeros(2 * self.num_limbs, int), np.zeros(2 * self.num_limbs, np.float32)
        for k, (a, b) in enumerate(self.limbs):
            if (mirror[a], mirror[b]) in index:
                target, signs = index[(mirror[a], mirror[b])], (-1.0, 1.0)
            elif (mirror[b], mirror[a]) in index:
                target, signs = index[(mirror[b], mirror[a])], (1.0, -1.0)
            else:
                raise ValueError(
                    f"skeleton '{self.name}': limb {self.keypoints[a]} → {self.keypoints[b]} has no "
                    f"mirror image ({self.keypoints[mirror[a]]} → {self.keypoints[mirror[b]]})"
                )
            channels = list(self.paf_channel_pairs[k])
            perm[channels] = self.paf_channel_pairs[target]
            sign[channels] = signs
        return perm, sign

    def mapping_from(self, category: Category, visibility_flags: VisibilityFlags) -> KeypointMapping:
        """The mapping from a dataset's keypoints (by name) to this skeleton's, with keypoint synthesis."""
        dataset_names: Sequence[str] = category.keypoints
        source = tuple(dataset_names.index(n) if n in dataset_names else -1 for n in self.keypoints)
        midpoints = {}
        for k, name in enumerate(self.keypoints):
            parents = SYNTHESIZED_KEYPOINTS.get(name)
            if source[k] < 0 and parents and all(p in dataset_names for p in parents):
                midpoints[k] = (dataset_names.index(parents[0]), dataset_names.index(parents[1]))
        names = list(visibility_flags.value)
        codes = tuple(int(Visibility[visibility_flags.mapping[n].upper()]) for n in names)
        return KeypointMapping(
            source=source,
            midpoints=midpoints,
            flag_values=tuple(visibility_flags.value[n] for n in names),
            flag_codes=codes,
            num_dataset_keypoints=len(dataset_names),
        )

    def to_dict(self) -> Dict[str, object]:
        """A pose-config-shaped mapping (1-based skeleton), to travel with models and results."""
        return {
            "pose_config_type": self.name,
            "keypoints": list(self.keypoints),
            "skeleton": [[a + 1, b + 1] for a, b in self.limbs],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Skeleton":
        skeleton = data["skeleton"]
        return cls(str(data["pose_config_type"]), tuple(data["keypoints"]), tuple((a - 1, b - 1) for a, b in skeleton))


def check_channel_counts(skeleton: Skeleton, heat_channels: Optional[int], paf_channels: Optional[int]) -> None:
    """Raise ValueError if a spec's explicit channel counts disagree with the skeleton's."""
    if heat_channels is not None and heat_channels != skeleton.num_heatmap_channels:
        raise ValueError(
            f"heat_channels is {heat_channels} but the pose config '{skeleton.name}' needs "
            f"{skeleton.num_heatmap_channels} ({skeleton.num_keypoints} keypoints + background)"
        )
    if paf_channels is not None and paf_channels != skeleton.num_paf_channels:
        raise ValueError(
            f"paf_channels is {paf_channels} but the pose config '{skeleton.name}' needs "
            f"{skeleton.num_paf_channels} (2 x {skeleton.num_limbs} limbs)"
        )
