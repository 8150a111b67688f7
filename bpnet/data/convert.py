"""``bpnet dataset_convert``: COCO-format keypoints → loss masks (PNG) + TFRecords (TLT schema).

One record per (image, main person) (reference §3.1). Main persons have at least
``min_acceptable_kpts`` labeled keypoints, a segment area of at least ``min_acceptable_width ×
min_acceptable_height`` and a bbox centre at least ``min_acceptable_interperson_dist_ratio ×
max(w, h)`` away from every main person accepted before, measured with *that* person's bbox (TLT
used the image's last annotation: bug §8 item 4). Each record lists the main person first, then every
other person with keypoints; crowds and people without keypoints are left to the mask.
"""

import collections
import concurrent.futures
import dataclasses
import logging
import multiprocessing
import os
import random
from typing import Any, Counter, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
from tqdm import tqdm

from bpnet.data.coco import ImageEntry, Person, read_coco_persons
from bpnet.data.masks import loss_mask
from bpnet.data.records import PoseRecord, write_records
from bpnet.errors import BpnetError, SpecError
from bpnet.files import contained_path, is_gray_png, remove_stale_temporaries, resolves_inside, write_png
from bpnet.images import read_image
from bpnet.spec_loader import FieldError
from bpnet.specs import DataFilteringParams, DatasetSpec, spec_object, spec_source
from bpnet.status import task_status
from bpnet.workers import die_with_parent

logger = logging.getLogger(__name__)

PARTITION_SHUFFLE_SEED = 42
"""Seed of the per-partition record shuffle (TLT's converter seed)."""


@dataclasses.dataclass
class ConvertSummary:
    """What a conversion produced and what it skipped, by reason."""

    output_files: List[str]
    num_images: int
    num_records: int
    num_labeled_persons: int
    num_masks: int
    skipped_images: Counter[str]
    bad_annotations: Counter[str]

    def line(self) -> str:
        """One human-readable summary line."""
        skipped = sum(self.skipped_images.values())
        reasons = ", ".join(f"{n} {why}" for why, n in self.skipped_images.most_common())
        bad = sum(self.bad_annotations.values())
        bad_reasons = ", ".join(f"{n} {why}" for why, n in self.bad_annotations.most_common())
        return (
            f"{self.num_images} images, {self.num_records} records, {self.num_labeled_persons} persons with "
            f"keypoints, {self.num_masks} masks written; {skipped} images skipped"
            + (f" ({reasons})" if reasons else "")
            + f"; {bad} bad annotations skipped"
            + (f" ({bad_reasons})" if bad_reasons else "")
        )

    def kpi(self) -> Dict[str, int]:
        return {
            "images": self.num_images,
            "records": self.num_records,
            "persons": self.num_labeled_persons,
            "masks": self.num_masks,
            "images_skipped": sum(self.skipped_images.values()),
            "bad_annotations": sum(self.bad_annotations.values()),
        }


def select_main_persons(persons: Sequence[Person], filtering: DataFilteringParams) -> List[Person]:
    """Main persons of one image, in annotation order (see the module docstring)."""
    accepted: List[Person] = []
    min_area = filtering.min_acceptable_width * filtering.min_acceptable_height
    for person in persons:
        if person.iscrowd or person.num_keypoints < filtering.min_acceptable_kpts or person.area < min_area:
            continue
        cx, cy = person.center
        too_close = any(
            np.hypot(cx - other.center[0], cy - other.center[1])
            < filtering.min_acceptable_interperson_dist_ratio * max(other.bbox[2], other.bbox[3])
            for other in accepted
        )
        if not too_close:
            accepted.append(person)
    return accepted


def build_records(
    image: ImageEntry, main_persons: Sequence[Person], dataset: str, image_path: str, mask_path: str
) -> List[PoseRecord]:
    """One record per main person: that person first, then every other non-crowd person with keypoints."""
    others = [p for p in image.persons if p.num_keypoints > 0 and not p.iscrowd]
    records = []
    for main in main_persons:
        persons = [main] + [p for p in others if p is not main]
        records.append(
            PoseRecord(
                image_id=image.image_id,
                height=image.height,
                width=image.width,
                image_path=image_path,
                mask_path=mask_path,
                dataset=dataset,
                joints=np.stack([p.joints for p in persons]),
                scales=np.array([p.scale for p in persons], dtype=np.float64),
                centers=np.array([p.center for p in persons], dtype=np.float64),
                person_idx=main.annotation_index,
            )
        )
    return records


def record_file_names(prefix: str, num_partitions: int, num_shards: int) -> List[List[str]]:
    """TLT's names: ``{prefix}-fold-{p:03d}-of-{P:03d}`` (+ ``-shard-{s:05d}-of-{S:05d}`` if S > 0)."""
    names = []
    for p in range(num_partitions):
        fold = f"{prefix}-fold-{p:03d}-of-{num_partitions:03d}"
        names.append([f"{fold}-shard-{s:05d}-of-{num_shards:05d}" for s in range(num_shards)] if num_shards else [fold])
    return names


def partition_records(records: Sequence[PoseRecord], file_names: List[List[str]]) -> Dict[str, List[PoseRecord]]:
    """Round-robin into partitions, shuffle each (seeded), cut each into contiguous shards."""
    out: Dict[str, List[PoseRecord]] = {}
    num_partitions = len(file_names)
    for p, shard_names in enumerate(file_names):
        partition = list(records[p::num_partitions])
        random.Random(PARTITION_SHUFFLE_SEED).shuffle(partition)
        for name, shard in zip(shard_names, np.array_split(np.arange(len(partition)), len(shard_names))):
            out[name] = [partition[i] for i in shard]
    return out


@dataclasses.dataclass(frozen=True)
class _ImageTask:
    """File work for one image, run in a worker process."""

    image_file: str
    mask_file: str
    height: int
    width: int
    people: Tuple[Tuple[Any, bool, int], ...]
    generate_mask: bool
    check_files: bool


def _check_image(path: str, height: int, width: int) -> Optional[str]:
    try:
        image = read_image(path)
    except BpnetError as exc:
        return str(exc)
    if image.shape[:2] != (height, width):
        return f"{path}: image is {image.shape[1]}x{image.shape[0]} but its annotation says {width}x{height}"
    return None


def _process_image(task: _ImageTask) -> Optional[str]:
    """Check files and/or write the loss mask of one image; returns an error message or None."""
    if task.check_files:
        problem = _check_image(task.image_file, task.height, task.width)
        if problem:
            return problem
    if task.generate_mask:
        try:
            mask = loss_mask(task.people, task.height, task.width)
        except (ValueError, OverflowError, MemoryError) as exc:
            return f"{task.image_file}: cannot rasterise its segmentations: {exc}"
        try:
            write_png(task.mask_file, mask)
        except OSError as exc:
            return f"{task.mask_file}: cannot write mask: {exc.strerror or exc}"
    elif task.check_files and not os.path.isfile(task.mask_file):
        return f"{task.mask_file}: mask not found (run with --generate_masks)"
    return None


def _run_tasks(tasks: Sequence[_ImageTask], workers: int, progress: bool) -> None:
    """Run image tasks on ``workers`` processes with a progress bar; the first error stops the run."""
    if not tasks or not any(t.generate_mask or t.check_files for t in tasks):
        return
    description = "masks" if tasks[0].generate_mask else "checking files"
    bar = tqdm(total=len(tasks), desc=description, unit="img", disable=not progress)
    try:
        results: Iterable[Optional[str]]
        if workers <= 1:
            results = map(_process_image, tasks)
            executor = None
        else:
            executor = concurrent.futures.ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn"), initializer=die_with_parent
            )
            results = executor.map(_process_image, tasks, chunksize=max(1, min(16, len(tasks) // (4 * workers))))
        try:
            for problem in results:
                if problem:
                    raise BpnetError(problem)
                bar.update(1)
        finally:
            if executor is not None:
                executor.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()


def _mask_relative_path(mask_root: str, file_name: str, spec: DatasetSpec, generate_masks: bool) -> str:
    """``<mask_root>/<image stem>.png``; when reading masks (not generating them), an existing TLT JPEG
    mask named like the image is used instead. Generated masks are always PNGs under the PNG name."""
    png = os.path.join(mask_root, os.path.splitext(file_name)[0] + ".png")
    tlt = os.path.join(mask_root, file_name)
    if not generate_masks and not os.path.isfile(spec.resolve(png)) and os.path.isfile(spec.resolve(tlt)):
        return tlt
    return png


@dataclasses.dataclass(frozen=True)
class _SplitRoots:
    """A split's image and mask folders, resolved once per conversion."""

    images: str
    masks: str
    masks_exist: bool  # a symlink inside the mask folder can only exist if the folder does

    @classmethod
    def of(cls, split: Any, spec: DatasetSpec) -> "_SplitRoots":
        masks = spec.resolve(split.mask_root_dir_path)
        return cls(spec.resolve(split.images_root_dir_path), masks, os.path.isdir(masks))


def _path_problem(image: ImageEntry, roots: _SplitRoots, generate_masks: bool) -> Optional[str]:
    """Why the image's file_name cannot be used safely, or None: it must stay inside the image folder,
    and a generated mask may replace only a mask bpnet wrote (an 8-bit gray PNG of the image's size)."""
    if contained_path(roots.images, image.file_name) is None:
        return "file_name leaves the image folder"
    mask_file = contained_path(roots.masks, os.path.splitext(image.file_name)[0] + ".png")
    if mask_file is None:
        return "file_name leaves the mask folder"
    if generate_masks:
        if os.path.lexists(mask_file) and not is_gray_png(mask_file, image.height, image.width):
            return "its mask path names an existing file that is not a bpnet mask"
        if roots.masks_exist and not resolves_inside(roots.masks, mask_file):
            return "its mask path leaves the mask folder through a symlink"
    return None


def _prepare_output_dir(folder: str, what: str) -> None:
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise BpnetError(f"{folder}: cannot create {what}: {exc.strerror or exc}") from None
    if not os.access(folder, os.W_OK):
        raise BpnetError(f"{folder}: {what} is not writable")


def convert_dataset(
    dataset_spec: Union[DatasetSpec, str],
    output_filename: str,
    mode: str = "train",
    num_partitions: int = 1,
    num_shards: int = 0,
    generate_masks: bool = False,
    check_files: bool = False,
    results_dir: Optional[str] = None,
    workers: Optional[int] = None,
    progress: bool = True,
    overrides: Sequence[str] = (),
) -> ConvertSummary:
    """Convert the ``train_data`` (mode ``train``) or ``test_data`` split of a dataset spec.

    Writes TFRecords named from ``output_filename`` (a prefix), masks under the split's
    ``mask_root_dir_path`` when ``generate_masks``, and ``status.json`` in ``results_dir`` (default:
    the output folder). Every output is written under a temporary name and renamed when complete.
    """
    if num_partitions < 1 or num_shards < 0:
        raise BpnetError(f"--num_partitions must be >= 1 and --num_shards >= 0, got {num_partitions}, {num_shards}")
    source = spec_source(dataset_spec)
    spec = spec_object(DatasetSpec, dataset_spec, overrides)
    try:
        split = spec.split(mode)
    except FieldError as exc:
        raise SpecError(f"{source}: {exc.field_name}: {exc}") from None
    if split.mask_root_dir_path is None:
        field = "train_data" if mode == "train" else "test_data"
        raise SpecError(
            f"{source}: {field}.mask_root_dir_path: not set; dataset_convert records each image's mask path (and "
            "writes the masks with --generate_masks)"
        )
    output_filename = os.path.abspath(output_filename)
    _prepare_output_dir(os.path.dirname(output_filename), "output folder")
    results_dir = os.path.abspath(results_dir) if results_dir else os.path.dirname(output_filename)
    _prepare_output_dir(results_dir, "results folder")
    with task_status(results_dir, "Starting bpnet dataset_convert.") as status:
        summary = _convert(
            spec,
            source,
            split,
            mode,
            output_filename,
            num_partitions,
            num_shards,
            generate_masks,
            check_files,
            workers or os.cpu_count() or 1,
            progress,
        )
        status.write("SUCCESS", "Dataset convert finished successfully.", kpi=summary.kpi())
    return summary


def _convert(
    spec: DatasetSpec,
    spec_path: str,
    split: Any,
    mode: str,
    output_filename: str,
    num_partitions: int,
    num_shards: int,
    generate_masks: bool,
    check_files: bool,
    workers: int,
    progress: bool,
) -> ConvertSummary:
    split_field = "train_data" if mode == "train" else "test_data"
    flags = spec.visibility_flags
    unlabeled = [flags.value[name] for name, bpnet_name in flags.mapping.items() if bpnet_name == "not_labeled"]
    coco = read_coco_persons(
        spec.resolve(split.annotation_root_dir_path),
        f"{split_field}.annotation_root_dir_path of {spec_path}",
        spec.category.id,
        len(spec.category.keypoints),
        tuple(flags.value.values()),
        unlabeled[0] if unlabeled else None,
    )
    for reason, count in coco.bad_annotations.items():
        logger.warning("%s: %d annotation(s) skipped: %s", split.annotation_root_dir_path, count, reason)
    skipped: Counter[str] = collections.Counter(coco.bad_images)
    records: List[PoseRecord] = []
    tasks: List[_ImageTask] = []
    roots = _SplitRoots.of(split, spec)
    num_labeled = 0
    for image in coco.images:
        if not image.persons:
            skipped["without person annotations"] += 1
            continue
        num_labeled += sum(1 for p in image.persons if p.num_keypoints > 0 and not p.iscrowd)
        main_persons = select_main_persons(image.persons, spec.data_filtering_params)
        if not main_persons:
            skipped["without a main person"] += 1
            continue
        if not spec.duplicate_data_with_each_person_as_center:
            main_persons = main_persons[:1]
        problem = _path_problem(image, roots, generate_masks)
        if problem:
            skipped[problem] += 1
            continue
        image_path = os.path.join(split.images_root_dir_path, image.file_name)
        mask_path = _mask_relative_path(split.mask_root_dir_path, image.file_name, spec, generate_masks)
        records.extend(build_records(image, main_persons, spec.dataset, image_path, mask_path))
        people = tuple((p.segmentation, p.iscrowd, p.num_keypoints) for p in image.persons) if generate_masks else ()
        tasks.append(
            _ImageTask(
                spec.resolve(image_path), spec.resolve(mask_path), image.height, image.width, people, generate_masks, check_files
            )
        )
    if generate_masks:
        _prepare_output_dir(spec.resolve(split.mask_root_dir_path), "mask folder")
        remove_stale_temporaries(spec.resolve(split.mask_root_dir_path))
    remove_stale_temporaries(os.path.dirname(output_filename))
    _run_tasks(tasks, min(workers, max(1, len(tasks))), progress)
    outputs = partition_records(records, record_file_names(output_filename, num_partitions, num_shards))
    for path, part in outputs.items():
        write_records(path, part)
        logger.info("Wrote %d records to %s", len(part), path)
    return ConvertSummary(
        output_files=list(outputs),
        num_images=coco.num_image_entries,
        num_records=len(records),
        num_labeled_persons=num_labeled,
        num_masks=len(tasks) if generate_masks else 0,
        skipped_images=skipped,
        bad_annotations=coco.bad_annotations,
    )
