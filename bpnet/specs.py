"""Typed, frozen spec objects: train spec, inference spec, dataset spec and pose config.

Field names, defaults and ``__class_name__`` values follow TLT bpnet (``docs/specs.md`` lists every
field and where we differ). Load with :func:`load_train_spec`, :func:`load_inference_spec`,
:func:`load_dataset_spec`, :func:`load_pose_config`; write a resolved spec back with
:func:`bpnet.spec_loader.dump_yaml`.
"""

import dataclasses
import math
import os
from typing import Any, ClassVar, Dict, Literal, Optional, Sequence, Tuple, Type, TypeVar, Union

from bpnet import spec_loader
from bpnet.images import MAX_NETWORK_INPUT_SIDE
from bpnet.spec_loader import FieldError, path_field

BPNET_VISIBILITY_NAMES = (
    "visible",
    "annotatable",
    "occluded",
    "truncated",
    "not_labeled",
    "not_labeled_in_dataset",
)
VisibilityName = Literal["visible", "annotatable", "occluded", "truncated", "not_labeled", "not_labeled_in_dataset"]


def _require(condition: bool, field_name: str, message: str) -> None:
    if not condition:
        raise FieldError(field_name, message)


def _default(cls: type) -> Any:
    return dataclasses.field(default_factory=cls)


# --------------------------------------------------------------------------- pose config / categories


@dataclasses.dataclass(frozen=True)
class Category:
    """A COCO-style keypoint category. ``skeleton`` holds 1-based keypoint index pairs (from, to)."""

    id: int
    name: str
    keypoints: Tuple[str, ...]
    skeleton: Tuple[Tuple[int, int], ...]
    supercategory: str = "person"
    num_joints: Optional[int] = None
    skeleton_edge_names: Optional[Tuple[Tuple[str, str], ...]] = None

    def __post_init__(self) -> None:
        _require(len(self.keypoints) > 0, "keypoints", "must list at least one keypoint")
        _require(len(set(self.keypoints)) == len(self.keypoints), "keypoints", "keypoint names must be unique")
        if self.num_joints is not None:
            _require(
                self.num_joints == len(self.keypoints),
                "num_joints",
                f"is {self.num_joints} but keypoints lists {len(self.keypoints)} names",
            )
        n = len(self.keypoints)
        for i, (a, b) in enumerate(self.skeleton):
            _require(1 <= a <= n and 1 <= b <= n, f"skeleton[{i}]", f"indices must be in 1..{n}, got [{a}, {b}]")
            _require(a != b, f"skeleton[{i}]", f"a limb must join two different keypoints, got [{a}, {b}]")
        if self.skeleton_edge_names is not None:
            _require(
                len(self.skeleton_edge_names) == len(self.skeleton),
                "skeleton_edge_names",
                f"has {len(self.skeleton_edge_names)} entries but skeleton has {len(self.skeleton)}",
            )
            for i, ((a, b), names) in enumerate(zip(self.skeleton, self.skeleton_edge_names)):
                expected = (self.keypoints[a - 1], self.keypoints[b - 1])
                _require(
                    tuple(names) == expected,
                    f"skeleton_edge_names[{i}]",
                    f"is {list(names)} but skeleton[{i}] = [{a}, {b}] joins {list(expected)}",
                )


@dataclasses.dataclass(frozen=True)
class PoseConfig:
    """The model's skeleton definition (``model_pose_config/bpnet_18joints.json``)."""

    pose_config_type: str
    categories: Tuple[Category, ...]

    def __post_init__(self) -> None:
        _require(len(self.categories) == 1, "categories", f"must hold exactly one category, got {len(self.categories)}")

    @property
    def category(self) -> Category:
        return self.categories[0]


# --------------------------------------------------------------------------- dataset spec


@dataclasses.dataclass(frozen=True)
class DataSplit:
    """One split of a dataset; every path is relative to ``root_directory_path`` (or absolute). The mask folder
    is needed by ``dataset_convert`` (training data), not by ``evaluate``."""

    images_root_dir_path: str
    mask_root_dir_path: Optional[str] = dataclasses.field(default=None, kw_only=True)
    annotation_root_dir_path: str


@dataclasses.dataclass(frozen=True)
class VisibilityFlags:
    """``value``: flag name → value used in the dataset; ``mapping``: flag name → bpnet visibility name."""

    value: Dict[str, int]
    mapping: Dict[str, VisibilityName]

    def __post_init__(self) -> None:
        for name in self.mapping:
            _require(name in self.value, f"mapping.{name}", f"has no entry in value ({', '.join(self.value)})")
        for name in self.value:
            _require(name in self.mapping, f"value.{name}", "has no entry in mapping")
        values = list(self.value.values())
        _require(len(set(values)) == len(values), "value", "flag values must be distinct")


@dataclasses.dataclass(frozen=True)
class DataFilteringParams:
    """Which persons may be the centre of a training example (main persons)."""

    min_acceptable_height: float = 32.0
    min_acceptable_width: float = 32.0
    min_acceptable_kpts: int = 5
    min_acceptable_interperson_dist_ratio: float = 0.3


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A COCO-format keypoint dataset (``data_pose_config/coco_spec.json``)."""

    dataset: str
    root_directory_path: str = path_field()
    categories: Tuple[Category, ...]  # type: ignore[misc]  # path_field() has no default (mypy cannot see it)
    visibility_flags: VisibilityFlags = dataclasses.field(
        default_factory=lambda: VisibilityFlags(
            value={"visible": 2, "occluded": 1, "not_labeled": 0},
            mapping={"visible": "visible", "occluded": "occluded", "not_labeled": "not_labeled"},
        )
    )
    train_data: Optional[DataSplit] = None
    test_data: Optional[DataSplit] = None
    duplicate_data_with_each_person_as_center: bool = True
    data_filtering_params: DataFilteringParams = _default(DataFilteringParams)

    def __post_init__(self) -> None:
        _require(len(self.categories) == 1, "categories", f"must hold exactly one category, got {len(self.categories)}")

    @property
    def category(self) -> Category:
        return self.categories[0]

    def split(self, mode: str) -> DataSplit:
        """The split for a ``dataset_convert -m`` mode: ``train`` → ``train_data``, else ``test_data``."""
        name = "train_data" if mode == "train" else "test_data"
        split = getattr(self, name)
        if split is None:
            raise FieldError(name, f"is not set, but mode '{mode}' needs it")
        return split

    def resolve(self, relative: str) -> str:
        """A split path (relative to ``root_directory_path`` or absolute) as an absolute path."""
        return os.path.normpath(os.path.join(self.root_directory_path, relative))


# --------------------------------------------------------------------------- train spec: dataloader


@dataclasses.dataclass(frozen=True)
class PoseConfigRef:
    """``BpNetPoseConfig``: output map size and the model's pose config file."""

    CLASS_NAME: ClassVar[str] = "BpNetPoseConfig"
    target_shape: Tuple[int, int]
    pose_config_path: str = path_field()

    def __post_init__(self) -> None:
        _require(min(self.target_shape) > 0, "target_shape", f"must be positive, got {list(self.target_shape)}")


@dataclasses.dataclass(frozen=True)
class ImageDims:
    height: int
    width: int
    channels: int = 3

    def __post_init__(self) -> None:
        for name in ("height", "width"):
            value = getattr(self, name)
            _require(0 < value <= MAX_NETWORK_INPUT_SIDE, name, f"must be between 1 and {MAX_NETWORK_INPUT_SIDE}, got {value}")
        _require(self.channels == 3, "channels", f"must be 3 (RGB), got {self.channels}")


@dataclasses.dataclass(frozen=True)
class ImageConfig:
    image_dims: ImageDims
    image_encoding: Literal["jpg", "jpeg", "png"] = "jpg"


@dataclasses.dataclass(frozen=True)
class DatasetConfig:
    """Where the TFRecords and the images/masks they name live."""

    root_data_path: str = path_field()
    train_records_folder_path: str = path_field()
    train_records_path: Tuple[str, ...]  # type: ignore[misc]  # path_field() has no default (mypy cannot see it)
    dataset_specs: Dict[str, str] = path_field()
    val_records_folder_path: Optional[str] = path_field(None)
    val_records_path: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _require(len(self.train_records_path) > 0, "train_records_path", "must list at least one TFRecord file")
        _require(len(self.dataset_specs) > 0, "dataset_specs", "must name at least one dataset spec")

    @property
    def train_record_files(self) -> Tuple[str, ...]:
        return tuple(os.path.join(self.train_records_folder_path, p) for p in self.train_records_path)

    @property
    def val_record_files(self) -> Tuple[str, ...]:
        folder = self.val_records_folder_path or self.train_records_folder_path
        return tuple(os.path.join(folder, p) for p in self.val_records_path)


@dataclasses.dataclass(frozen=True)
class NormalizationParams:
    """``image = image / image_scale - image_offset`` (RGB); ``mask = mask / mask_scale - mask_offset``."""

    image_scale: Tuple[float, ...] = (256.0, 256.0, 256.0)
    image_offset: Tuple[float, ...] = (0.5, 0.5, 0.5)
    mask_scale: Tuple[float, ...] = (255.0,)
    mask_offset: Tuple[float, ...] = (0.0,)

    def __post_init__(self) -> None:
        for name, size in (("image_scale", 3), ("image_offset", 3), ("mask_scale", 1), ("mask_offset", 1)):
            _require(len(getattr(self, name)) == size, name, f"must hold {size} value(s)")
        for name in ("image_scale", "mask_scale"):
            _require(all(v != 0 for v in getattr(self, name)), name, "must not contain 0")


@dataclasses.dataclass(frozen=True)
class SpatialAugParams:
    """Random spatial augmentation; a ``*_min`` left null is the negative of its ``*_max``."""

    flip_lr_prob: float = 0.0
    flip_tb_prob: float = 0.0
    rotate_deg_max: float = 0.0
    rotate_deg_min: Optional[float] = None
    zoom_prob: float = 0.0
    zoom_ratio_min: float = 1.0
    zoom_ratio_max: float = 1.0
    translate_max_x: float = 0.0
    translate_min_x: Optional[float] = None
    translate_max_y: float = 0.0
    translate_min_y: Optional[float] = None
    use_translate_ratio: bool = False
    translate_ratio_max: float = 0.0
    translate_ratio_min: Optional[float] = None
    target_person_scale: float = 0.6

    def __post_init__(self) -> None:
        for prob in ("flip_lr_prob", "flip_tb_prob", "zoom_prob"):
            _require(0.0 <= getattr(self, prob) <= 1.0, prob, f"must be in [0, 1], got {getattr(self, prob)}")
        for low, high in (
            ("rotate_deg_min", "rotate_deg_max"),
            ("translate_min_x", "translate_max_x"),
            ("translate_min_y", "translate_max_y"),
            ("translate_ratio_min", "translate_ratio_max"),
        ):
            if getattr(self, low) is None:
                object.__setattr__(self, low, -getattr(self, high))
            _require(getattr(self, low) <= getattr(self, high), low, f"must be <= {high}")
        _require(0 < self.zoom_ratio_min <= self.zoom_ratio_max, "zoom_ratio_min", "must be > 0 and <= zoom_ratio_max")
        _require(self.target_person_scale > 0, "target_person_scale", "must be positive")


@dataclasses.dataclass(frozen=True)
class ColorAugParams:
    """Random colour jitter (bpnet addition; TLT accepts ``color_aug_params`` but ignores it). Off by default.

    Each effect is applied with its probability: brightness adds U(-delta, delta) (fraction of full
    range), contrast and saturation multiply by U(min, max), hue rotates by U(-delta, delta) turns.
    """

    brightness_prob: float = 0.0
    brightness_max_delta: float = 0.2
    contrast_prob: float = 0.0
    contrast_min: float = 0.7
    contrast_max: float = 1.3
    saturation_prob: float = 0.0
    saturation_min: float = 0.7
    saturation_max: float = 1.3
    hue_prob: float = 0.0
    hue_max_delta: float = 0.05

    def __post_init__(self) -> None:
        for prob in ("brightness_prob", "contrast_prob", "saturation_prob", "hue_prob"):
            _require(0.0 <= getattr(self, prob) <= 1.0, prob, f"must be in [0, 1], got {getattr(self, prob)}")
        _require(0 <= self.contrast_min <= self.contrast_max, "contrast_min", "must be >= 0 and <= contrast_max")
        _require(0 <= self.saturation_min <= self.saturation_max, "saturation_min", "must be >= 0 and <= saturation_max")
        _require(0 <= self.hue_max_delta <= 0.5, "hue_max_delta", "must be in [0, 0.5]")
        _require(0 <= self.brightness_max_delta <= 1, "brightness_max_delta", "must be in [0, 1]")


@dataclasses.dataclass(frozen=True)
class AugmentationConfig:
    CLASS_NAME: ClassVar[str] = "AugmentationConfig"
    spatial_augmentation_mode: Optional[Literal["person_centric", "standard", "standard_with_fixed_aspect_ratio"]] = (
        "person_centric"
    )
    spatial_aug_params: SpatialAugParams = _default(SpatialAugParams)
    color_aug_params: ColorAugParams = _default(ColorAugParams)
    identity_spatial_aug_params: Any = None  # accepted for TLT compatibility; unused there too

    def __post_init__(self) -> None:
        if self.spatial_augmentation_mode is None:
            object.__setattr__(self, "spatial_augmentation_mode", "person_centric")


@dataclasses.dataclass(frozen=True)
class LabelProcessorConfig:
    """Target generation: σ in network-input pixels, PAF half-width in output cells."""

    heatmap_gaussian_sigma: float = 0.15
    paf_ortho_dist_thresh: float = 1.0
    paf_gaussian_sigma: float = 0.03  # accepted for TLT compatibility; unused (binary PAF band)

    def __post_init__(self) -> None:
        _require(self.heatmap_gaussian_sigma > 0, "heatmap_gaussian_sigma", "must be positive")
        _require(self.paf_ortho_dist_thresh > 0, "paf_ortho_dist_thresh", "must be positive")


@dataclasses.dataclass(frozen=True)
class DataloaderSpec:
    CLASS_NAME: ClassVar[str] = "BpNetDataloader"
    batch_size: int
    pose_config: PoseConfigRef
    image_config: ImageConfig
    dataset_config: DatasetConfig
    normalization_params: NormalizationParams = _default(NormalizationParams)
    augmentation_config: AugmentationConfig = _default(AugmentationConfig)
    label_processor_config: LabelProcessorConfig = _default(LabelProcessorConfig)
    shuffle_buffer_size: Optional[int] = None

    def __post_init__(self) -> None:
        _require(self.batch_size > 0, "batch_size", "must be positive")
        shuffle_buffer_size = 20000 if self.shuffle_buffer_size is None else self.shuffle_buffer_size
        object.__setattr__(self, "shuffle_buffer_size", shuffle_buffer_size)
        _require(shuffle_buffer_size > 0, "shuffle_buffer_size", "must be positive")
        dims, (target_h, target_w) = self.image_config.image_dims, self.pose_config.target_shape
        _require(
            dims.height % target_h == 0 and dims.width % target_w == 0 and dims.height // target_h == dims.width // target_w,
            "pose_config.target_shape",
            f"{[target_h, target_w]} must divide image_dims {dims.height}x{dims.width} with one stride",
        )

    @property
    def stride(self) -> int:
        """Input pixels per output cell (8 for 256 → 32)."""
        return self.image_config.image_dims.height // self.pose_config.target_shape[0]


# --------------------------------------------------------------------------- train spec: model


@dataclasses.dataclass(frozen=True)
class BackboneAttributes:
    architecture: Literal["vgg"]
    use_bias: bool = False
    nlayers: int = 19
    mtype: str = "default"  # helnet stride variant in TLT; unused for vgg
    use_batch_norm: Optional[bool] = None  # TLT: helnet/resnet only; vgg always uses batch norm
    add_final_c128_conv: Optional[bool] = None  # TLT: ignored; the channel reduction conv is always added

    def __post_init__(self) -> None:
        _require(self.nlayers == 19, "nlayers", f"the vgg backbone has 19 layers, got {self.nlayers}")

    @property
    def stride(self) -> int:
        """Input pixels per output cell, fixed by the architecture: VGG19 to conv4_2 halves the size 3 times."""
        return VGG_OUTPUT_STRIDE


VGG_OUTPUT_STRIDE = 8
"""The output stride of the VGG backbone (three stride-2 convolutions); :mod:`bpnet.model.build` builds it."""

RegularizationType = Literal["l1", "l2", "l1_l2"]


@dataclasses.dataclass(frozen=True)
class _ModelSpecBase:
    backbone_attributes: BackboneAttributes
    stages: int = 6  # bpnet allows 1 (the initial stage only; TLT's smallest model has 2)
    heat_channels: Optional[int] = None  # derived from the pose config; if set it must agree
    paf_channels: Optional[int] = None  # derived from the pose config; if set it must agree
    use_self_attention: bool = False
    data_format: Literal["channels_last"] = "channels_last"
    use_bias: bool = True
    regularization_type: RegularizationType = "l1"
    kernel_regularization_factor: float = 1e-9
    bias_regularization_factor: float = 1e-9
    kernel_initializer: str = "random_normal"
    width_multiplier: float = 1.0  # bpnet addition: scales every hidden layer's filters (1.0 = TLT's model)
    freeze_blocks: Tuple[int, ...] = ()  # bpnet addition: backbone blocks not trained (bpnet.train.freeze)
    freeze_bn: bool = False  # bpnet addition: batch norms keep their statistics and scales

    def __post_init__(self) -> None:
        _require(self.stages >= 1, "stages", f"must be >= 1, got {self.stages}")
        _require(all(b >= 0 for b in self.freeze_blocks), "freeze_blocks", "block numbers must be >= 0")
        _require(self.width_multiplier > 0, "width_multiplier", "must be positive")
        _require(self.kernel_regularization_factor >= 0, "kernel_regularization_factor", "must be >= 0")
        _require(self.bias_regularization_factor >= 0, "bias_regularization_factor", "must be >= 0")


@dataclasses.dataclass(frozen=True)
class BpNetLiteModelSpec(_ModelSpecBase):
    """The shipped "m1" model: a shared trunk per stage split into heatmap and PAF heads."""

    CLASS_NAME: ClassVar[str] = "BpNetLiteModel"
    stage1_kernel_sizes: Tuple[int, ...] = (3, 3, 3)
    stageT_kernel_sizes: Tuple[int, ...] = (7, 7, 7, 7, 7)


@dataclasses.dataclass(frozen=True)
class BpNetModelSpec(_ModelSpecBase):
    """The original OpenPose-style two-branch model."""

    CLASS_NAME: ClassVar[str] = "BpNetModel"


# --------------------------------------------------------------------------- train spec: optimisation


@dataclasses.dataclass(frozen=True)
class SoftstartAnnealingSchedule:
    """Log-linear ramp from ``min`` to ``base`` over ``soft_start``, back down after ``annealing``."""

    CLASS_NAME: ClassVar[str] = "SoftstartAnnealingLearningRateSchedule"
    base_learning_rate: float
    min_learning_rate: float
    soft_start: float = 0.05
    annealing: float = 0.5
    last_step: Optional[int] = None  # set by the trainer from num_epoch × steps per epoch

    def __post_init__(self) -> None:
        _require(
            0 < self.min_learning_rate <= self.base_learning_rate, "min_learning_rate", "must be > 0 and <= base_learning_rate"
        )
        _require(0 <= self.soft_start <= self.annealing <= 1, "soft_start", "need 0 <= soft_start <= annealing <= 1")


@dataclasses.dataclass(frozen=True)
class ExponentialDecaySchedule:
    """``lr = max(learning_rate · decay_rate^(step / decay_steps), min_learning_rate)``."""

    CLASS_NAME: ClassVar[str] = "BpNetExponentialDecayLRSchedule"
    learning_rate: float
    decay_epochs: float
    decay_rate: float
    staircase: bool = False
    min_learning_rate: float = 0.0
    decay_steps: Optional[int] = None  # set by the trainer from decay_epochs × steps per epoch

    def __post_init__(self) -> None:
        _require(self.learning_rate > 0, "learning_rate", f"must be positive, got {self.learning_rate}")
        _require(
            0 <= self.min_learning_rate <= self.learning_rate,
            "min_learning_rate",
            f"must be >= 0 and <= learning_rate, got {self.min_learning_rate}",
        )
        _require(self.decay_epochs > 0, "decay_epochs", "must be positive")
        _require(0 < self.decay_rate <= 1, "decay_rate", "must be in (0, 1]")


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    CLASS_NAME: ClassVar[str] = "WeightedMomentumOptimizer"
    learning_rate_schedule: Union[SoftstartAnnealingSchedule, ExponentialDecaySchedule]
    grad_weights_dict: Optional[Dict[str, float]] = None
    weight_default_value: float = 1.0
    momentum: float = 0.9
    use_nesterov: bool = False

    def __post_init__(self) -> None:
        _require(0 <= self.momentum < 1, "momentum", "must be in [0, 1)")


@dataclasses.dataclass(frozen=True)
class AdamOptimizerSpec:
    """bpnet addition: Adam (``keras.optimizers.Adam``) for training from scratch, where it converges much
    faster than TLT's momentum optimiser (the quickstart uses it). Gradient weights do not apply: Adam
    normalises each gradient, so ``use_stagewise_lr_multipliers`` must be False."""

    CLASS_NAME: ClassVar[str] = "AdamOptimizer"
    learning_rate_schedule: Union[SoftstartAnnealingSchedule, ExponentialDecaySchedule]
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7

    def __post_init__(self) -> None:
        _require(0 <= self.beta_1 < 1, "beta_1", "must be in [0, 1)")
        _require(0 <= self.beta_2 < 1, "beta_2", "must be in [0, 1)")
        _require(self.epsilon > 0, "epsilon", "must be positive")


@dataclasses.dataclass(frozen=True)
class FocalLossParams:
    use_focal_loss: bool = False
    alpha: float = 0.1
    beta: float = 0.02
    bkg_thresh: float = 0.01
    gamma: float = 1.0


@dataclasses.dataclass(frozen=True)
class LossSpec:
    CLASS_NAME: ClassVar[str] = "BpNetLoss"
    focal_loss_params: Optional[FocalLossParams] = None


@dataclasses.dataclass(frozen=True)
class FinetuningConfig:
    is_finetune_exp: bool = False
    checkpoint_path: Optional[str] = path_field(None)
    ckpt_epoch_num: int = 0


@dataclasses.dataclass(frozen=True)
class DistillationSpec:
    """bpnet addition (``docs/transfer_learning.md``): a teacher model whose last-stage heatmaps and PAFs every
    stage of the student learns, on the labelled batch and on ``unlabeled_images`` (folders, images, videos)."""

    teacher: str = path_field()
    weight: float = 1.0
    unlabeled_images: Tuple[str, ...] = path_field(())
    unlabeled_batch_size: int = 0  # 0: the dataloader's batch_size (when there are unlabeled_images)
    video_frame_step: int = 10

    def __post_init__(self) -> None:
        _require(math.isfinite(self.weight) and self.weight >= 0, "weight", f"must be >= 0, got {self.weight}")
        _require(self.unlabeled_batch_size >= 0, "unlabeled_batch_size", "must be >= 0 (0: batch_size)")
        _require(self.video_frame_step >= 1, "video_frame_step", f"must be >= 1, got {self.video_frame_step}")


@dataclasses.dataclass(frozen=True)
class TrainSpec:
    """The train spec (``specs/bpnet_train_m1_coco.yaml``), ``__class_name__: BpNetTrainer``."""

    CLASS_NAME: ClassVar[str] = "BpNetTrainer"
    dataloader: DataloaderSpec
    model: Union[BpNetLiteModelSpec, BpNetModelSpec]
    optimizer: Union[OptimizerSpec, AdamOptimizerSpec]
    loss: LossSpec = _default(LossSpec)
    checkpoint_dir: Optional[str] = path_field(None)
    log_every_n_secs: float = 1.0
    checkpoint_n_epoch: int = 1
    num_epoch: int = 2
    summary_every_n_steps: int = 1
    infrequent_summary_every_n_steps: int = 0
    validation_every_n_epoch: int = 20
    max_ckpt_to_keep: int = 5
    random_seed: int = 42
    pretrained_weights: Optional[str] = path_field(None, keep=("imagenet",))
    load_graph: bool = False
    finetuning_config: FinetuningConfig = _default(FinetuningConfig)
    use_stagewise_lr_multipliers: bool = False
    inference_spec: Optional[str] = path_field(None)
    evaluator: Any = None  # accepted for TLT compatibility; unused there too
    key: Optional[str] = None  # TLT model key; models are not encrypted here
    final_model_name: str = "bpnet_model"
    distillation: Optional[DistillationSpec] = None  # bpnet addition

    def __post_init__(self) -> None:
        _require(self.num_epoch > 0, "num_epoch", "must be positive")
        _require(self.summary_every_n_steps >= 1, "summary_every_n_steps", f"must be >= 1, got {self.summary_every_n_steps}")
        _require(self.infrequent_summary_every_n_steps >= 0, "infrequent_summary_every_n_steps", "must be >= 0")
        _require(self.validation_every_n_epoch >= 0, "validation_every_n_epoch", "must be >= 0 (0: never)")
        _require(self.max_ckpt_to_keep >= 1, "max_ckpt_to_keep", f"must be >= 1, got {self.max_ckpt_to_keep}")
        _require(self.log_every_n_secs >= 0, "log_every_n_secs", "must be >= 0")
        _require(0 <= self.random_seed < 2**32, "random_seed", f"must be in [0, 2^32), got {self.random_seed}")
        _require(
            self.dataloader.stride == self.model.backbone_attributes.stride,
            "dataloader.pose_config.target_shape",
            f"{list(self.dataloader.pose_config.target_shape)} implies an output stride of {self.dataloader.stride} "
            f"for image_dims, but the model's is {self.model.backbone_attributes.stride} (target_shape must be "
            f"image_dims / {self.model.backbone_attributes.stride})",
        )
        _require(
            0 < self.checkpoint_n_epoch <= self.num_epoch and self.num_epoch % self.checkpoint_n_epoch == 0,
            "checkpoint_n_epoch",
            f"must be positive and divide num_epoch ({self.num_epoch}), got {self.checkpoint_n_epoch}",
        )
        _require(
            not (isinstance(self.optimizer, AdamOptimizerSpec) and self.use_stagewise_lr_multipliers),
            "use_stagewise_lr_multipliers",
            "must be False with AdamOptimizer (Adam normalises gradients, so gradient weights have no effect)",
        )


# --------------------------------------------------------------------------- inference spec


@dataclasses.dataclass(frozen=True)
class NetworkSpec:
    """A network bpnet did not train (bpnet addition), e.g. an OpenPose-style model exported to ONNX.

    ``pose_config_path``: its keypoints (in its heatmap order) and limbs (in the order given by
    ``paf_channels``). ``heatmap_channels``: ``[start, stop)`` of the keypoint heatmaps plus background
    in ``heatmap_output``; ``paf_channels``: for each limb, its x then y channel in ``paf_output``.
    Outputs are named, or the network's only output when null.
    """

    pose_config_path: str = path_field()
    heatmap_channels: Tuple[int, int] = (0, 19)
    paf_channels: Tuple[int, ...] = ()
    heatmap_output: Optional[str] = None
    paf_output: Optional[str] = None
    channel_order: Literal["RGB", "BGR"] = "RGB"
    image_scale: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    image_offset: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    stride: int = 8

    def __post_init__(self) -> None:
        _require(
            0 <= self.heatmap_channels[0] < self.heatmap_channels[1],
            "heatmap_channels",
            "must be [start, stop) with start < stop",
        )
        _require(
            len(self.paf_channels) > 0 and len(self.paf_channels) % 2 == 0,
            "paf_channels",
            "must list an x and a y channel per limb",
        )
        _require(self.stride > 0, "stride", "must be positive")


MAX_UPSAMPLING_FACTOR = 32
"""Maps upsampled by more than this only cost memory (TLT upsamples by the stride, 8)."""


@dataclasses.dataclass(frozen=True)
class InferenceSpec:
    """The inference spec (``specs/infer_spec.yaml``)."""

    train_spec: Optional[str] = path_field(None)  # only for models without bpnet metadata (TLT .hdf5)
    model_path: Optional[str] = path_field(None)
    input_shape: Tuple[int, int] = (256, 256)
    keep_aspect_ratio_mode: Optional[Literal["adjust_network_input", "pad_image_input"]] = "adjust_network_input"
    output_stage_to_use: Optional[int] = None
    output_upsampling_factor: Optional[Tuple[int, int]] = None
    heatmap_threshold: Optional[float] = None  # None: the decoder preset's (TLT: 0.1)
    paf_threshold: Optional[float] = None  # None: the decoder preset's (TLT: 0.05)
    multi_scale_inference: bool = False
    scales: Optional[Tuple[float, ...]] = None
    network: Optional[NetworkSpec] = None  # bpnet addition: describes a third-party network (ONNX)
    flip_test: bool = False  # bpnet addition: average with the mirror image's outputs (2 network runs)
    subpixel_refinement: bool = False  # bpnet addition: quadratic sub-pixel refinement of the heatmap peaks
    upsampling_mode: Literal["local", "full"] = "local"  # bpnet addition: local upsamples only around peaks
    decoder_preset: Literal["tlt", "accurate"] = "tlt"  # bpnet addition: decoder settings (docs/decoding.md)
    min_person_score: float = 0.0  # bpnet addition: people scoring below are dropped (detections, renderings, API)

    def __post_init__(self) -> None:
        _require(
            0 < min(self.input_shape) and max(self.input_shape) <= MAX_NETWORK_INPUT_SIDE,
            "input_shape",
            f"each side must be between 1 and {MAX_NETWORK_INPUT_SIDE}, got {list(self.input_shape)}",
        )
        _require(
            math.isfinite(self.min_person_score) and self.min_person_score >= 0,
            "min_person_score",
            f"must be >= 0, got {self.min_person_score}",
        )
        scales = (1.0,) if self.scales is None else self.scales
        object.__setattr__(self, "scales", scales)
        _require(len(scales) > 0 and min(scales) > 0, "scales", "must be a non-empty list of positive numbers")
        largest = max(self.input_shape) * (max(scales) if self.multi_scale_inference else 1.0)
        _require(
            largest <= MAX_NETWORK_INPUT_SIDE,
            "scales",
            f"the largest scale makes a {largest:.0f}-pixel network input side (at most {MAX_NETWORK_INPUT_SIDE})",
        )
        if self.output_stage_to_use is not None:
            _require(self.output_stage_to_use >= 1, "output_stage_to_use", "must be >= 1 (stages count from 1)")
        if self.output_upsampling_factor is not None:
            _require(
                1 <= min(self.output_upsampling_factor) and max(self.output_upsampling_factor) <= MAX_UPSAMPLING_FACTOR,
                "output_upsampling_factor",
                f"each factor must be between 1 and {MAX_UPSAMPLING_FACTOR}",
            )
        for name in ("heatmap_threshold", "paf_threshold"):
            value = getattr(self, name)
            _require(value is None or 0 <= value <= 1, name, f"must be in [0, 1], got {value}")


# --------------------------------------------------------------------------- loading


def load_train_spec(path: str, overrides: Sequence[str] = ()) -> TrainSpec:
    """Load a train spec (YAML or JSON); relative paths resolve against its folder; ``overrides`` are
    ``key.path=value`` settings applied first (the CLI's ``--set``)."""
    return spec_loader.load(TrainSpec, path, overrides)


def load_inference_spec(path: str, overrides: Sequence[str] = ()) -> InferenceSpec:
    """Load an inference spec (YAML or JSON), as :func:`load_train_spec`."""
    return spec_loader.load(InferenceSpec, path, overrides)


def load_dataset_spec(path: str, overrides: Sequence[str] = ()) -> DatasetSpec:
    """Load a dataset spec such as ``coco_spec.json``, as :func:`load_train_spec`."""
    return spec_loader.load(DatasetSpec, path, overrides)


SpecT = TypeVar("SpecT")


def spec_object(cls: Type[SpecT], spec: Union[SpecT, str, "os.PathLike[str]"], overrides: Sequence[str] = ()) -> SpecT:
    """``spec`` itself when it is already a ``cls``, else the spec file it names loaded with ``overrides``:
    what lets every entry point take a spec object or a path."""
    if isinstance(spec, cls):
        if overrides:
            raise TypeError("overrides apply to spec files; change a spec object with dataclasses.replace")
        return spec
    return spec_loader.load(cls, os.fspath(spec), overrides)  # type: ignore[arg-type]


def spec_source(spec: Any) -> str:
    """How messages name a spec: its path, or its class for an object built in code."""
    return os.path.abspath(os.fspath(spec)) if isinstance(spec, (str, os.PathLike)) else type(spec).__name__


def load_pose_config(path: str) -> PoseConfig:
    """Load a pose config such as ``bpnet_18joints.json``."""
    return spec_loader.load(PoseConfig, path)
