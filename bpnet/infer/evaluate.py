"""``bpnet evaluate``: COCO keypoint AP of a model over a dataset spec's ``test_data``, with TLT's outputs
(``detections.json``, ``detections_coco_format.json``, ``results.csv``, ``status.json`` KPIs) and bpnet's
report folder (``report/index.html``: AP per image, size and keypoint count, the worst images rendered)."""

import contextlib
import csv
import io
import logging
import os
from typing import Dict, List, Optional, Sequence, Tuple, Union

from tqdm import tqdm

from bpnet import spec_loader
from bpnet.errors import BpnetError, SpecError
from bpnet.files import atomic_path, contained_path
from bpnet.images import read_image
from bpnet.infer.coco_eval import KPI_NAMES, evaluate_keypoints
from bpnet.infer.evaluation_report import write_report
from bpnet.infer.predict import Predictor, load_predictor
from bpnet.infer.results import prepare_results_dir, tlt_header, write_json
from bpnet.specs import DatasetSpec, InferenceSpec, spec_object, spec_source
from bpnet.status import task_status

logger = logging.getLogger(__name__)

RESULTS_CSV_COLUMNS = ("metric", "IoU", "area", "maxDets", "score")
"""TLT's ``results.csv`` header (reference §3.17): one row per COCOeval stat."""


def results_csv_row(kpi_name: str, value: float) -> Tuple[str, str, str, int, str]:
    """``AP_0.50:0.95_medium`` → ``("AP", "0.50:0.95", "medium", 20, "0.123456")`` (TLT's columns)."""
    metric, iou, *area = kpi_name.split("_")
    return metric, iou, area[0] if area else "all", 20, f"{value:.6f}"


def _test_split(dataset: DatasetSpec) -> Tuple[Optional[str], str]:
    """``(annotation file or None when test_data is not set, image folder)`` of a dataset spec, resolved."""
    if dataset.test_data is None:
        return None, ""
    split = dataset.test_data
    return dataset.resolve(split.annotation_root_dir_path), dataset.resolve(split.images_root_dir_path)


def _evaluation_inputs(dataset_spec: Union[DatasetSpec, str]) -> Tuple[DatasetSpec, str, str]:
    """The dataset spec, its test annotation file and image folder, checked before anything is written."""
    dataset = spec_object(DatasetSpec, dataset_spec)
    annotation_file, images_dir = _test_split(dataset)
    if annotation_file is None:
        raise SpecError(f"{spec_source(dataset_spec)}: test_data: not set (evaluate uses it)")
    if not os.path.isfile(annotation_file):
        raise BpnetError(f"{annotation_file}: annotation file not found (test_data.annotation_root_dir_path)")
    return dataset, annotation_file, images_dir


def annotations_dataset(annotation_file: str, images_dir: str) -> DatasetSpec:
    """The dataset spec that ``evaluate --annotations FILE --images DIR`` stands for: ``test_data`` is the pair,
    the keypoint category is the annotation file's own (its first category that lists keypoints)."""
    import json

    if not os.path.isfile(annotation_file):
        raise BpnetError(f"{annotation_file}: annotation file not found (--annotations)")
    if not os.path.isdir(images_dir):
        raise BpnetError(f"{images_dir}: image folder not found (--images)")
    try:
        with open(annotation_file, encoding="utf-8") as handle:
            categories = json.load(handle).get("categories")
    except (OSError, ValueError, AttributeError) as exc:
        raise BpnetError(f"{annotation_file}: not a COCO annotation file ({type(exc).__name__}) (--annotations)") from None
    keypoint_categories = [c for c in categories or [] if isinstance(c, dict) and c.get("keypoints")]
    if not keypoint_categories:
        raise BpnetError(f"{annotation_file}: categories: no category lists keypoints; not a keypoint annotation file")
    category = {key: keypoint_categories[0].get(key) for key in ("id", "name", "keypoints", "skeleton")}
    data = {
        "dataset": "coco",
        "root_directory_path": os.path.dirname(os.path.abspath(annotation_file)),
        "categories": [{**category, "name": category["name"] or "person", "skeleton": category["skeleton"] or []}],
        "test_data": {
            "images_root_dir_path": os.path.abspath(images_dir),
            "annotation_root_dir_path": os.path.abspath(annotation_file),
        },
    }
    return spec_loader.from_dict(DatasetSpec, data, source=f"{annotation_file}: categories")


def _load_coco(annotation_file: str):
    from pycocotools.coco import COCO

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(annotation_file)
    except (ValueError, KeyError, TypeError) as exc:
        raise BpnetError(
            f"{annotation_file}: not a COCO annotation file ({type(exc).__name__}: {exc}) (test_data.annotation_root_dir_path)"
        ) from None


def predict_dataset(
    predictor: Predictor,
    dataset: DatasetSpec,
    coco,
    image_ids: Sequence[int],
    annotation_file: str,
    images_dir: str,
    progress: bool = True,
) -> Tuple[List[dict], List[dict], Dict[int, str]]:
    """Run ``predictor`` on the annotated images ``image_ids``: ``(COCO results, detections.json entries,
    image id → path)``. A ``file_name`` that leaves ``images_dir`` is refused, naming the annotation file."""
    coco_results: List[dict] = []
    raw: List[dict] = []
    image_paths: Dict[int, str] = {}
    for image_id in tqdm(image_ids, desc="evaluate", unit="img", disable=not progress):
        file_name = coco.loadImgs(image_id)[0].get("file_name")
        path = contained_path(images_dir, file_name) if isinstance(file_name, str) else None
        if path is None:
            raise BpnetError(
                f"{annotation_file}: image {image_id}: file_name {file_name!r} is not a path inside the image folder {images_dir}"
            )
        prediction = predictor.predict_one(read_image(path), path)
        image_paths[image_id] = path
        coco_results += prediction.to_coco(image_id, dataset.category.keypoints, dataset.category.id)
        raw.append({"full_image_path": path, "image_id": image_id, **prediction.to_json()})
    return coco_results, raw, image_paths


def validation_ap(predictor: Predictor, dataset_spec: Union[DatasetSpec, str], max_images: int) -> Optional[float]:
    """COCO keypoint AP of ``predictor`` on the first ``max_images`` images (by id) of the dataset spec's
    ``test_data`` (training's validation; nothing is written); None when the spec has no test split on disk."""
    dataset = spec_object(DatasetSpec, dataset_spec)
    annotation_file, images_dir = _test_split(dataset)
    if annotation_file is None or not os.path.isfile(annotation_file):
        return None
    coco = _load_coco(annotation_file)
    image_ids = sorted(coco.getImgIds())[:max_images]
    coco_results, _, _ = predict_dataset(predictor, dataset, coco, image_ids, annotation_file, images_dir, progress=False)
    return evaluate_keypoints(coco, coco_results, image_ids)["AP_0.50:0.95_all"]


def evaluate(
    inference_spec: Union[InferenceSpec, str, None],
    dataset_spec: Union[DatasetSpec, str],
    results_dir: str,
    model_path: Optional[str] = None,
    progress: bool = True,
    overrides: Sequence[str] = (),
    report: bool = True,
) -> Dict[str, float]:
    """COCO keypoint AP of a model over the dataset spec's ``test_data``; writes TLT's evaluation files and, with
    ``report``, the report folder ``report/`` (:mod:`bpnet.infer.evaluation_report`).

    Specs are objects or files (see :func:`load_predictor`; ``overrides`` apply to the inference spec)."""
    dataset, annotation_file, images_dir = _evaluation_inputs(dataset_spec)
    prepare_results_dir(results_dir)
    with task_status(results_dir, "Starting bpnet evaluate.") as status:
        predictor, spec = load_predictor(inference_spec, model_path, overrides)
        coco = _load_coco(annotation_file)
        image_ids = sorted(coco.getImgIds())
        coco_results, raw, image_paths = predict_dataset(
            predictor, dataset, coco, image_ids, annotation_file, images_dir, progress
        )
        stats = evaluate_keypoints(coco, coco_results, image_ids)
        write_json(os.path.join(results_dir, "detections.json"), {**tlt_header(predictor.info.skeleton, spec), "images": raw})
        write_json(os.path.join(results_dir, "detections_coco_format.json"), coco_results)
        with atomic_path(os.path.join(results_dir, "results.csv")) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(RESULTS_CSV_COLUMNS)
            writer.writerows(results_csv_row(name, stats[name]) for name in KPI_NAMES)
        if report:
            limbs = [(a - 1, b - 1) for a, b in dataset.category.skeleton]
            index = write_report(
                os.path.join(results_dir, "report"),
                coco,
                coco_results,
                image_paths,
                stats,
                limbs,
                len(dataset.category.keypoints),
            )
            logger.info("Evaluation report: %s", index)
        if not coco_results:
            logger.warning(
                "No person was found in any of the %d images: check the model (-m), the inference spec's "
                "input_shape and keep_aspect_ratio_mode (the scale the model was trained at), and "
                "heatmap_threshold",
                len(image_ids),
            )
        status.write("SUCCESS", "Evaluation finished successfully.", kpi=stats)
    return stats
