"""INT8 calibration data (reference §1.8, §5.3): image sampling, batches preprocessed exactly as inference.

A calibration batch is ``(batch_size, H, W, 3)`` float32, each image passed through
:func:`bpnet.infer.predict.preprocess` at the deploy size ``H × W`` with ``pad_image_input`` (aspect ratio kept,
padded, as the strict inference specs deploy), so the INT8 ranges are those the engine will see.
TLT resized without keeping the aspect ratio and fell back to random tensors when the image folder was
missing; bpnet keeps the aspect ratio and refuses to calibrate on nothing.

``--cal_data_file`` is a ``.npy`` file of all batches ``(batches, batch_size, H, W, 3)``: written on the
first run, reused afterwards if its shape fits (TLT wrote its own TensorFile format).
"""

import collections
import json
import logging
import os
import random
import shutil
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from bpnet.data.coco import is_integer
from bpnet.errors import BpnetError
from bpnet.files import atomic_path, contained_path
from bpnet.model.io import ModelInfo

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
CALIBRATION_MODE = "pad_image_input"


def sample_images(image_dir: str, count: int, seed: int = 0) -> List[str]:
    """``count`` image paths drawn at random (reproducibly) from ``image_dir``."""
    if not os.path.isdir(image_dir):
        raise BpnetError(f"{image_dir}: calibration image folder not found (--cal_image_dir)")
    paths = sorted(str(p) for p in Path(image_dir).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(paths) < count:
        raise BpnetError(f"{image_dir}: {len(paths)} images, fewer than --batches × --batch_size = {count} (--cal_image_dir)")
    return sorted(random.Random(seed).sample(paths, count))


def preprocess_for_calibration(path: str, input_hw: Tuple[int, int], info: ModelInfo) -> np.ndarray:
    """``(H, W, 3)`` float32: what inference feeds the network at the deploy size for this image."""
    from bpnet.images import read_image
    from bpnet.infer.predict import preprocess

    tensor, _ = preprocess(read_image(path), input_hw, CALIBRATION_MODE, info)
    return tensor


def calibration_batches(
    paths: Sequence[str], batch_size: int, input_hw: Tuple[int, int], info: ModelInfo
) -> Iterator[np.ndarray]:
    """``(batch_size, H, W, 3)`` float32 batches of ``paths`` in order (the last partial batch dropped)."""
    for start in range(0, len(paths) - batch_size + 1, batch_size):
        yield np.stack([preprocess_for_calibration(p, input_hw, info) for p in paths[start : start + batch_size]])


def model_layout(data: np.ndarray, info: ModelInfo) -> np.ndarray:
    """Calibration data ``(..., H, W, 3)`` as the network's own input takes it: unchanged for an NHWC model,
    ``(..., 3, H, W)`` for an NCHW one (the quantisers feed the graph directly, not through a backend)."""
    return data if info.input_layout == "NHWC" else np.ascontiguousarray(np.moveaxis(data, -1, -3))


def calibration_data(
    input_hw: Tuple[int, int],
    info: ModelInfo,
    batches: int,
    batch_size: int,
    image_dir: Optional[str] = None,
    data_file: Optional[str] = None,
    seed: int = 0,
) -> np.ndarray:
    """``(batches, batch_size, H, W, 3)``: from ``data_file`` if it exists and fits, else from ``image_dir``
    (and then saved to ``data_file`` if given)."""
    shape = (batches, batch_size, input_hw[0], input_hw[1], 3)
    if data_file and os.path.isfile(data_file):
        try:
            data = np.load(data_file, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise BpnetError(
                f"{data_file}: not a plain .npy array of calibration data ({exc}) (--cal_data_file; delete it to recalibrate)"
            ) from None
        if not isinstance(data, np.ndarray) or data.dtype.kind != "f":
            raise BpnetError(f"{data_file}: not a float .npy array (--cal_data_file; delete it to recalibrate)")
        if tuple(data.shape) != shape:
            raise BpnetError(
                f"{data_file}: holds calibration data of shape {tuple(data.shape)}, not {shape} "
                "(--cal_data_file; delete it to recalibrate)"
            )
        values = np.asarray(data, np.float32)
        if not np.isfinite(values).all():
            bad = int(values.size - np.isfinite(values).sum())
            raise BpnetError(
                f"{data_file}: {bad} of its {values.size} calibration values are NaN or infinite "
                "(--cal_data_file; delete it to recalibrate)"
            )
        return values
    if not image_dir:
        raise BpnetError("--cal_image_dir: needed for INT8 calibration (or an existing --cal_data_file)")
    paths = sample_images(image_dir, batches * batch_size, seed)
    data = np.stack(list(calibration_batches(paths, batch_size, input_hw, info)))
    if data_file:
        os.makedirs(os.path.dirname(os.path.abspath(data_file)), exist_ok=True)
        with atomic_path(data_file) as tmp, open(tmp, "wb") as handle:
            np.save(handle, data)
    return data


def sample_calibration_images(
    annotation_file: str, image_dir: str, output_dir: str, count: int, min_people: int = 1, randomize: bool = False, seed: int = 0
) -> List[str]:
    """Copy ``count`` images with at least ``min_people`` labeled, non-crowd people from a COCO keypoint
    annotation file into ``output_dir`` (TLT notebook's ``sample_calibration_images.py``); returns the names.

    The file is hostile input: annotations without an integer ``image_id``, and image entries whose
    ``file_name`` is not a path inside ``image_dir``, are skipped and counted in the log."""
    try:
        with open(annotation_file, encoding="utf-8") as handle:
            coco = json.load(handle)
    except FileNotFoundError:
        raise BpnetError(f"{annotation_file}: annotation file not found (-a)") from None
    except json.JSONDecodeError as exc:
        raise BpnetError(f"{annotation_file}: not valid JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(coco, dict) or "images" not in coco or "annotations" not in coco:
        raise BpnetError(f"{annotation_file}: not a COCO annotation file (needs 'images' and 'annotations')")
    if not isinstance(coco["images"], list) or not isinstance(coco["annotations"], list):
        raise BpnetError(f"{annotation_file}: images and annotations must be lists")
    skipped: collections.Counter = collections.Counter()
    people: Dict[int, int] = collections.Counter()
    for annotation in coco["annotations"]:
        if not isinstance(annotation, dict) or not is_integer(annotation.get("image_id")):
            skipped["annotation without an integer image_id"] += 1
        elif (
            annotation.get("iscrowd", 0) in (0, False)
            and is_integer(annotation.get("num_keypoints"))
            and annotation["num_keypoints"] > 0
        ):
            people[annotation["image_id"]] += 1
    images = []
    for image in coco["images"]:
        if not isinstance(image, dict) or not is_integer(image.get("id")) or not isinstance(image.get("file_name"), str):
            skipped["image entry without an integer id and a file_name"] += 1
        elif contained_path(image_dir, image["file_name"]) is None:
            skipped["file_name outside the image folder"] += 1
        else:
            images.append(image)
    for reason, number in skipped.items():
        logger.warning("%s: %d skipped: %s", annotation_file, number, reason)
    names = [image["file_name"] for image in sorted(images, key=lambda i: i["id"]) if people.get(image["id"], 0) >= min_people]
    if randomize:
        random.Random(seed).shuffle(names)
    if len(names) < count:
        raise BpnetError(
            f"{annotation_file}: only {len(names)} images have at least {min_people} labeled people; {count} asked (-n)"
        )
    chosen = names[:count]
    os.makedirs(output_dir, exist_ok=True)
    for name in chosen:
        source = contained_path(image_dir, name) or ""
        if not os.path.isfile(source):
            raise BpnetError(f"{source}: image named in {annotation_file} not found (-i)")
        shutil.copyfile(source, os.path.join(output_dir, os.path.basename(name)))
    return chosen
