"""Distillation (bpnet addition; TLT has none): a student learns a teacher's heatmaps and PAFs.

``distillation`` in the train spec names a teacher (any Keras bpnet model: an import, the unpruned network, a
bpnet model) and, optionally, unlabelled images: folders, image files and videos (every ``video_frame_step``-th
frame, extracted once into ``<results>/unlabeled_frames/``). Each step's batch is the spec's ``batch_size``
labelled samples followed by ``unlabeled_batch_size`` unlabelled ones; an unlabelled sample has the labelled
samples' random spatial draw (flip, rotation, zoom, translation) and colour jitter, framed as a whole image
(``standard`` mode: there is no person to centre on), and zero ground-truth targets and loss mask.

Loss per step, with ``B`` labelled and ``U`` unlabelled images and ``T_s`` the teacher's heatmaps and PAFs for
student stage ``s`` on the same augmented images (fed in the teacher's own input convention)::

    L = Σ_s masked L2(stage s, ground truth) / B  +  weight · Σ_s ½ ‖stage s − T_s‖² / (B + U)  +  regularisation

``T_s`` is the teacher's stage ``s`` when teacher and student have as many stages (a pruned or fine-tuned copy
learns what each of its stages did: every term can reach zero), else the teacher's last stage for every student
stage, as every stage learns the ground truth. The teacher's loss has no mask: it labels the people the
annotations leave out. Teacher and student must share the skeleton and the output stride.
"""

import dataclasses
import hashlib
import logging
import os
from typing import Any, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from bpnet.data import augment
from bpnet.data.pipeline import SampleMaker
from bpnet.errors import BpnetError
from bpnet.images import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, check_pixels, header_size
from bpnet.model.io import ModelInfo
from bpnet.skeleton import Skeleton
from bpnet.specs import DistillationSpec

logger = logging.getLogger(__name__)

_FIELD = "distillation.unlabeled_images"
_COMPLETE = ".complete"


def _video_folder(video: str, cache_root: str, frame_step: int) -> str:
    """The frame cache of one video: named after it and keyed by its path, size, mtime and the frame step."""
    stat = os.stat(video)
    key = f"{os.path.abspath(video)}|{stat.st_size}|{stat.st_mtime_ns}|{frame_step}"
    stem = os.path.splitext(os.path.basename(video))[0]
    return os.path.join(cache_root, f"{stem}-{hashlib.sha256(key.encode()).hexdigest()[:10]}")


def extract_frames(video: str, cache_root: str, frame_step: int, field: str = _FIELD) -> List[str]:
    """Every ``frame_step``-th frame of ``video`` as JPEG files under ``cache_root`` (reused when complete)."""
    from bpnet.infer.inference import open_video

    folder = _video_folder(video, cache_root, frame_step)
    if not os.path.isfile(os.path.join(folder, _COMPLETE)):
        os.makedirs(folder, exist_ok=True)
        opened = open_video(video, None, frame_step)
        for index, frame in opened.frames:
            if not cv2.imwrite(os.path.join(folder, f"frame-{index:06d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 95]):
                raise BpnetError(f"{folder}: cannot write extracted video frames")
        if opened.partial:
            logger.warning("%s: %s", video, opened.partial)
        open(os.path.join(folder, _COMPLETE), "w").close()
    frames = sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".jpg"))
    if not frames:
        raise BpnetError(f"{video}: no frames could be read ({field})")
    return frames


def unlabeled_image_files(sources: Sequence[str], cache_root: str, frame_step: int, field: str = _FIELD) -> List[str]:
    """The image files of folders (their images and videos, not recursive), image files and videos (their extracted
    frames); errors name ``field``."""
    files: List[str] = []
    for source in sources:
        if os.path.isdir(source):
            names = sorted(n for n in os.listdir(source) if n.lower().endswith(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS))
            if not names:
                raise BpnetError(f"{source}: no images or videos in the folder ({field})")
            for name in names:
                path = os.path.join(source, name)
                is_video = name.lower().endswith(VIDEO_EXTENSIONS)
                files.extend(extract_frames(path, cache_root, frame_step, field) if is_video else [path])
        elif not os.path.isfile(source):
            raise BpnetError(f"{source}: no such file or folder ({field})")
        elif source.lower().endswith(VIDEO_EXTENSIONS):
            files.extend(extract_frames(source, cache_root, frame_step, field))
        elif source.lower().endswith(IMAGE_EXTENSIONS):
            files.append(source)
        else:
            raise BpnetError(
                f"{source}: neither an image ({', '.join(IMAGE_EXTENSIONS)}) nor a video "
                f"({', '.join(VIDEO_EXTENSIONS)}) ({field})"
            )
    for path in files:
        check_pixels(*header_size(path), path)
    return files


def make_unlabeled(maker: SampleMaker, path: bytes, index: np.int64) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``tf.numpy_function`` entry: one unlabelled image → (image, zero heatmaps, zero PAFs, zero mask), augmented
    with the random draw of ``index`` (layouts of :mod:`bpnet.data.pipeline`)."""
    source = path.decode("utf-8")
    image = cv2.imread(source, cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"{source}: cannot read image ({_FIELD})")
    height, width = image.shape[:2]
    rng = np.random.default_rng([maker.seed, int(index), 1])  # a stream of its own, apart from the labelled samples'
    aug = maker.dataloader.augmentation_config
    draw = augment.draw_spatial(aug.spatial_aug_params, width, height, rng)
    matrix = augment.spatial_matrix("standard", draw, (width, height), maker.canvas_size, (0.0, 0.0), 1.0, 1.0)
    warped = augment.warp(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), matrix, maker.canvas_size, augment.IMAGE_FILL)
    warped = warped.astype(np.float32)
    if maker.color_jitter:
        warped = augment.color_augment(warped, aug.color_aug_params, rng)
    if maker.channel_order == "BGR":
        warped = np.ascontiguousarray(warped[..., ::-1])
    warped = warped * maker.inverse_image_scale - maker.image_offset
    h, w = maker.target_shape
    zeros = np.zeros((h, w, maker.skeleton.num_heatmap_channels), np.float32)
    return (
        warped.astype(np.float32),
        zeros,
        np.zeros((h, w, maker.skeleton.num_paf_channels), np.float32),
        np.zeros((h, w, 1), np.float32),
    )


def unlabeled_dataset(maker: SampleMaker, files: Sequence[str], batch_size: int, seed: int, skip: int = 0):
    """Batches of ``batch_size`` unlabelled samples (shuffled, repeated forever, ``skip`` samples dropped)."""
    import tensorflow as tf

    dims = maker.dataloader.image_config.image_dims
    h, w = maker.target_shape

    def prepare(index, path):
        image, heat, paf, mask = tf.numpy_function(
            lambda p, i: make_unlabeled(maker, p, i), [path, index], [tf.float32] * 4, stateful=False
        )
        image.set_shape((dims.height, dims.width, 3))
        heat.set_shape((h, w, maker.skeleton.num_heatmap_channels))
        paf.set_shape((h, w, maker.skeleton.num_paf_channels))
        mask.set_shape((h, w, 1))
        return image, {"heatmaps": heat, "pafs": paf, "mask": mask}

    dataset = tf.data.Dataset.from_tensor_slices(list(files))
    dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True).repeat()
    dataset = dataset.enumerate().skip(skip).map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.batch(batch_size, drop_remainder=True)


def with_unlabeled(labelled, unlabelled):
    """Each labelled batch followed, along the batch axis, by one unlabelled batch."""
    import tensorflow as tf

    def join(first, second):
        images = tf.concat([first[0], second[0]], axis=0)
        labels = {key: tf.concat([first[1][key], second[1][key]], axis=0) for key in first[1]}
        return images, labels

    return tf.data.Dataset.zip((labelled, unlabelled)).map(join).prefetch(tf.data.AUTOTUNE)


@dataclasses.dataclass
class Teacher:
    """A loaded teacher and the per-channel affine map from the student's input to the teacher's:
    ``x_teacher = x_student[..., order] · scale + offset``."""

    model: Any
    order: Tuple[int, int, int]
    scale: np.ndarray
    offset: np.ndarray
    weight: float

    def targets(self, images, stages: int) -> Tuple[List, List]:
        """Per student stage, the teacher's ``(heatmaps, pafs)`` for a batch of student inputs ``(B, H, W, 3)``, no
        gradient: stage by stage when the teacher has the student's ``stages`` (a pruned or fine-tuned copy learns
        what each of its stages did), else the teacher's last stage for every student stage."""
        from keras import ops

        from bpnet.model.build import stage_outputs

        converted = ops.take(ops.cast(images, "float32"), list(self.order), axis=-1) * self.scale + self.offset
        heats, pafs = stage_outputs(self.model(converted, training=False))
        chosen = range(stages) if len(heats) == stages else [len(heats) - 1] * stages
        return (
            [ops.stop_gradient(ops.cast(heats[k], "float32")) for k in chosen],
            [ops.stop_gradient(ops.cast(pafs[k], "float32")) for k in chosen],
        )


def load_teacher(spec: DistillationSpec, student: ModelInfo, skeleton: Skeleton) -> Teacher:
    """Load ``spec.teacher`` and check it can teach a student with ``student``'s input convention and ``skeleton``."""
    from bpnet.model.io import load_model

    field = "distillation.teacher"
    if not spec.teacher.endswith((".keras", ".h5", ".hdf5")):
        raise BpnetError(
            f"{spec.teacher}: the teacher must be a Keras model (.keras, .h5); convert ONNX networks with "
            f"bpnet import_model -o NAME.keras ({field})"
        )
    if not os.path.isfile(spec.teacher):
        raise BpnetError(f"{spec.teacher}: model file not found ({field})")
    model, info = load_model(spec.teacher)
    if info is None:
        raise BpnetError(f"{spec.teacher}: no bpnet metadata (skeleton, normalisation) ({field})")
    if (info.skeleton.keypoints, info.skeleton.limbs) != (skeleton.keypoints, skeleton.limbs):
        raise BpnetError(
            f"{spec.teacher}: the teacher's skeleton ({info.skeleton.name}) is not the student's ({skeleton.name}): "
            f"same keypoints and limbs in the same order are needed ({field})"
        )
    if info.stride != student.stride:
        raise BpnetError(f"{spec.teacher}: output stride {info.stride}, the student's is {student.stride} ({field})")
    model.trainable = False
    same_order = info.channel_order == student.channel_order
    order = (0, 1, 2) if same_order else (2, 1, 0)
    student_scale = np.asarray(student.image_scale, np.float32)[list(order)]
    student_offset = np.asarray(student.image_offset, np.float32)[list(order)]
    teacher_scale = np.asarray(info.image_scale, np.float32)
    scale = student_scale / teacher_scale
    offset = student_offset * student_scale / teacher_scale - np.asarray(info.image_offset, np.float32)
    logger.info("Distillation: teacher %s (weight %g)", spec.teacher, spec.weight)
    return Teacher(model, order, scale.astype(np.float32), offset.astype(np.float32), spec.weight)


def distillation_losses(heats: Sequence, pafs: Sequence, teacher_heats: Sequence, teacher_pafs: Sequence) -> List:
    """Per stage, ``½ Σ (stage − teacher)²`` of heatmaps plus PAFs over the batch (scalars); the teacher's lists
    hold its target for each student stage (:meth:`Teacher.targets`)."""
    from keras import ops

    return [
        0.5 * ops.sum(ops.square(ops.cast(h, "float32") - th)) + 0.5 * ops.sum(ops.square(ops.cast(p, "float32") - tp))
        for h, p, th, tp in zip(heats, pafs, teacher_heats, teacher_pafs)
    ]


def unlabeled_cache(results_dir: str) -> str:
    return os.path.join(results_dir, "unlabeled_frames")


def resolve_unlabeled(spec: Optional[DistillationSpec], results_dir: str) -> List[str]:
    """The unlabelled image files of a distillation spec (none without one)."""
    if spec is None or not spec.unlabeled_images:
        return []
    files = unlabeled_image_files(spec.unlabeled_images, unlabeled_cache(results_dir), spec.video_frame_step)
    logger.info("Distillation: %d unlabelled images from %d sources", len(files), len(spec.unlabeled_images))
    return files
