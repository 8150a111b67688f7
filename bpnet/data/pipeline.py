"""The training input pipeline: TFRecords → augmented, normalised images with heatmap/PAF targets.

Per record (:class:`SampleMaker`, numpy/OpenCV, run through ``tf.numpy_function``): read the image and
its loss mask from ``root_data_path``, convert the dataset's joints to the model skeleton, draw one
spatial augmentation matrix and apply it to image, mask and joints, jitter colours, normalise, render
the targets. The random draws of the ``n``-th sample come from ``numpy.random.default_rng([seed, n])``,
so a seed fixes every batch.

Batch layout (``docs/data_pipeline.md``)::

    images            (B, H, W, 3)      float32  RGB (BGR for a network that takes BGR), image / image_scale − image_offset
    labels["heatmaps"] (B, h, w, K + 1)  float32  keypoint heatmaps, background last
    labels["pafs"]     (B, h, w, 2L)     float32  limb l: channel 2l = x, 2l + 1 = y
    labels["mask"]     (B, h, w, 1)      float32  loss weight, mask / mask_scale − mask_offset
"""

import dataclasses
import os
from typing import Dict, Mapping, Optional, Sequence, Tuple, cast

import cv2
import numpy as np

from bpnet.data import augment, targets
from bpnet.data.records import parsing_spec
from bpnet.errors import BpnetError
from bpnet.images import check_pixels, header_size
from bpnet.skeleton import KeypointMapping, Skeleton
from bpnet.specs import DataloaderSpec, TrainSpec, load_dataset_spec


@dataclasses.dataclass(frozen=True)
class Sample:
    """One prepared training example (see the module docstring for layouts)."""

    image: np.ndarray
    heatmaps: np.ndarray
    pafs: np.ndarray
    mask: np.ndarray
    joints: np.ndarray  # (P, K, 3) model joints in network-input pixels, flags after augmentation
    matrix: np.ndarray  # (3, 3) source → network-input pixels


def dataset_mappings(dataloader: DataloaderSpec, skeleton: Skeleton) -> Dict[str, KeypointMapping]:
    """Keypoint mappings for every dataset named in ``dataset_config.dataset_specs``."""
    mappings = {}
    for name, path in dataloader.dataset_config.dataset_specs.items():
        dataset_spec = load_dataset_spec(path)
        mappings[name] = skeleton.mapping_from(dataset_spec.category, dataset_spec.visibility_flags)
    return mappings


class SampleMaker:
    """Turns one record's fields into a :class:`Sample` (pure numpy/OpenCV; safe in ``tf.numpy_function``)."""

    def __init__(
        self,
        dataloader: DataloaderSpec,
        skeleton: Skeleton,
        mappings: Mapping[str, KeypointMapping],
        seed: int,
        augment_data: bool = True,
        channel_order: str = "RGB",
    ):
        self.dataloader = dataloader
        self.channel_order = channel_order  # the network's; images are decoded RGB
        self.skeleton = skeleton
        self.mappings = dict(mappings)
        self.seed = seed
        self.augment_data = augment_data
        dims = dataloader.image_config.image_dims
        self.canvas_size = (dims.width, dims.height)
        self.target_shape: Tuple[int, int] = dataloader.pose_config.target_shape
        self.stride = dataloader.stride
        norm = dataloader.normalization_params
        self.image_scale = np.asarray(norm.image_scale, dtype=np.float32)
        self.inverse_image_scale = np.float32(1.0) / self.image_scale
        self.image_offset = np.asarray(norm.image_offset, dtype=np.float32)
        self.mask_scale, self.mask_offset = np.float32(norm.mask_scale[0]), np.float32(norm.mask_offset[0])
        self.flip_permutation = skeleton.flip_permutation
        cv2.setNumThreads(1)  # parallelism comes from tf.data's parallel map; nested pools oversubscribe
        color = dataloader.augmentation_config.color_aug_params
        self.color_jitter = max(color.brightness_prob, color.contrast_prob, color.saturation_prob, color.hue_prob) > 0

    @classmethod
    def from_train_spec(cls, spec: TrainSpec, augment_data: bool = True) -> "SampleMaker":
        skeleton = Skeleton.from_file(spec.dataloader.pose_config.pose_config_path)
        return cls(spec.dataloader, skeleton, dataset_mappings(spec.dataloader, skeleton), spec.random_seed, augment_data)

    def _path(self, relative: str) -> str:
        return os.path.join(self.dataloader.dataset_config.root_data_path, relative)

    def read_image(self, relative: str, reduction: int = 1) -> np.ndarray:
        """``(ceil(h / r), ceil(w / r), 3)`` uint8 RGB, decoded at ``1/reduction`` size."""
        path = self._path(relative)
        try:  # within the pixel budget, judged from the header before decoding
            check_pixels(*header_size(path), path)
        except BpnetError as exc:  # the trainer reports ValueErrors raised in the tf.data pipeline by their message
            raise ValueError(f"{exc} (frame/image_path under root_data_path)") from None
        image = cv2.imread(path, _REDUCED_COLOR[reduction])
        if image is None:
            raise FileNotFoundError(f"{path}: cannot read image (frame/image_path under root_data_path)")
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def read_mask(self, relative: str, reduction: int = 1) -> np.ndarray:
        """``(ceil(h / r), ceil(w / r))`` uint8 loss mask, decoded at ``1/reduction`` size."""
        path = self._path(relative)
        mask = cv2.imread(path, _REDUCED_GRAYSCALE[reduction])
        if mask is None:
            raise FileNotFoundError(
                f"{path}: cannot read mask (frame/mask_path under root_data_path; run dataset_convert with --generate_masks)"
            )
        return mask

    def make(
        self,
        image_path: str,
        mask_path: str,
        dataset: str,
        image_size: Tuple[int, int],
        dataset_joints: np.ndarray,
        scales: np.ndarray,
        centers: np.ndarray,
        index: int,
    ) -> Sample:
        """Prepare the ``index``-th sample of a run from one record's fields.

        Paths are relative to ``root_data_path``; ``image_size`` is the record's ``(width, height)``.
        """
        if dataset not in self.mappings:
            raise KeyError(
                f"record of dataset {dataset!r} ({image_path}): add it to dataset_config.dataset_specs "
                f"(has {sorted(self.mappings)})"
            )
        rng = np.random.default_rng([self.seed, int(index)])
        joints = self.mappings[dataset].convert(dataset_joints)
        width, height = image_size
        aug = self.dataloader.augmentation_config
        spatial = aug.spatial_aug_params
        draw = augment.draw_spatial(spatial, width, height, rng) if self.augment_data else augment.IDENTITY_DRAW
        matrix = augment.spatial_matrix(
            cast(str, aug.spatial_augmentation_mode),  # never None after AugmentationConfig.__post_init__
            draw,
            (width, height),
            self.canvas_size,
            tuple(centers[0]),
            float(scales[0]),
            spatial.target_person_scale,
        )
        joints = augment.transform_joints(joints, matrix, self.canvas_size, self.flip_permutation, draw.flip_lr)
        reduction = augment.decode_reduction(matrix)
        source_matrix = augment.reduced_matrix(matrix, reduction)
        image = self.read_image(image_path, reduction)
        warped = augment.warp(image, source_matrix, self.canvas_size, augment.IMAGE_FILL).astype(np.float32)
        if self.augment_data and self.color_jitter:
            warped = augment.color_augment(warped, aug.color_aug_params, rng)
        if self.channel_order == "BGR":
            warped = np.ascontiguousarray(warped[..., ::-1])
        warped *= self.inverse_image_scale
        warped -= self.image_offset
        mask = self.read_mask(mask_path, reduction)
        warped_mask = augment.warp(mask, source_matrix, self.canvas_size, augment.MASK_FILL)
        small_mask = cv2.resize(warped_mask, self.target_shape[::-1], interpolation=cv2.INTER_AREA)
        heatmaps, pafs = self.targets(joints)
        return Sample(
            image=warped,
            heatmaps=heatmaps,
            pafs=pafs,
            mask=(small_mask.astype(np.float32) / self.mask_scale - self.mask_offset)[..., None],
            joints=joints,
            matrix=matrix,
        )

    def targets(self, joints: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """``(h, w, K + 1)`` heatmaps and ``(h, w, 2L)`` PAFs of ``(P, K, 3)`` network-input joints."""
        labels = self.dataloader.label_processor_config
        return (
            targets.heatmaps(joints, self.target_shape, self.stride, labels.heatmap_gaussian_sigma),
            targets.pafs(joints, self.skeleton.limbs, self.target_shape, self.stride, labels.paf_ortho_dist_thresh),
        )

    def make_arrays(
        self,
        image_path: bytes,
        mask_path: bytes,
        dataset: bytes,
        width: np.int64,
        height: np.int64,
        joints: bytes,
        scales: bytes,
        centers: bytes,
        index: np.int64,
    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``tf.numpy_function`` entry: raw record features → (image, heatmaps, pafs, mask)."""
        scales_array = np.frombuffer(scales, dtype=np.float64)
        num_persons = scales_array.shape[0]
        sample = self.make(
            image_path.decode("utf-8"),
            mask_path.decode("utf-8"),
            dataset.decode("utf-8"),
            (int(width), int(height)),
            np.frombuffer(joints, dtype=np.float64).reshape(num_persons, -1, 3),
            scales_array,
            np.frombuffer(centers, dtype=np.float64).reshape(num_persons, 2),
            int(index),
        )
        return sample.image, sample.heatmaps, sample.pafs, sample.mask


_RECORD_FEATURES = (
    "frame/image_path",
    "frame/mask_path",
    "dataset",
    "frame/width",
    "frame/height",
    "person/joints",
    "person/scales",
    "person/centers",
)
_REDUCED_COLOR = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}
_REDUCED_GRAYSCALE = {
    1: cv2.IMREAD_GRAYSCALE,
    2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
    4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
    8: cv2.IMREAD_REDUCED_GRAYSCALE_8,
}


def build_dataset(
    spec: TrainSpec,
    record_files: Optional[Sequence[str]] = None,
    training: bool = True,
    seed: Optional[int] = None,
    batch_size: Optional[int] = None,
    maker: Optional[SampleMaker] = None,
    skip: int = 0,
):
    """A ``tf.data.Dataset`` of ``(images, labels)`` batches (layouts in the module docstring).

    ``training``: shuffle (``shuffle_buffer_size``), repeat forever, augment; otherwise one pass in file
    order without augmentation (validation). ``record_files`` default to the spec's training records;
    ``seed`` to ``random_seed``; ``maker`` to one built from the spec (benchmarks pass their own).
    ``skip`` drops that many samples of the seeded stream unprocessed (resuming a run mid-stream).
    """
    import tensorflow as tf

    dataloader = spec.dataloader
    seed = spec.random_seed if seed is None else seed
    maker = maker or SampleMaker.from_train_spec(spec, augment_data=training)
    maker.seed = seed
    files = list(record_files or dataloader.dataset_config.train_record_files)
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise BpnetError(f"{missing[0]}: TFRecord file not found (dataset_config records path)")
    feature_spec = parsing_spec(_RECORD_FEATURES)
    dims = dataloader.image_config.image_dims
    h, w = dataloader.pose_config.target_shape
    num_heat, num_paf = maker.skeleton.num_heatmap_channels, maker.skeleton.num_paf_channels

    def prepare(index, serialized):
        features = tf.io.parse_single_example(serialized, feature_spec)
        image, heat, paf, mask = tf.numpy_function(
            maker.make_arrays,
            [features[k] for k in _RECORD_FEATURES] + [index],
            [tf.float32, tf.float32, tf.float32, tf.float32],
            stateful=False,
        )
        image.set_shape((dims.height, dims.width, 3))
        heat.set_shape((h, w, num_heat))
        paf.set_shape((h, w, num_paf))
        mask.set_shape((h, w, 1))
        return image, {"heatmaps": heat, "pafs": paf, "mask": mask}

    dataset = tf.data.TFRecordDataset(files)
    if training:
        dataset = dataset.shuffle(dataloader.shuffle_buffer_size, seed=seed, reshuffle_each_iteration=True).repeat()
    dataset = dataset.enumerate().skip(skip).map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.batch(batch_size or dataloader.batch_size, drop_remainder=training)
    return dataset.prefetch(tf.data.AUTOTUNE)
