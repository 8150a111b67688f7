"""``bpnet evaluate`` and ``bpnet inference``: a Predictor built from an inference spec, run over images.

The model's skeleton and normalisation come from the model file (``bpnet.json`` in a ``.keras``);
for a model without them (for example a TLT ``.hdf5``) they come from the inference spec's train spec.
"""

import collections
import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import logging
import os
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from tqdm import tqdm

from bpnet import spec_loader
from bpnet.coco_eval import KPI_NAMES, evaluate_keypoints
from bpnet.decode import DECODER_PRESETS, DecoderParams
from bpnet.errors import BpnetError, SpecError
from bpnet.files import atomic_path, contained_path, remove_stale_temporaries, write_png
from bpnet.model.io import ModelInfo, load_model, train_spec_info
from bpnet.predict import KerasBackend, OnnxBackend, OutputLayout, Predictor, PredictorSettings, read_image
from bpnet.skeleton import Skeleton
from bpnet.specs import DatasetSpec, InferenceSpec, NetworkSpec, load_train_spec, spec_object, spec_source
from bpnet.status import task_status

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def _network_predictor_parts(network: NetworkSpec, model_path: str):
    """Backend and ModelInfo of a third-party network described by an inference spec's ``network`` block."""
    skeleton = Skeleton.from_file(network.pose_config_path)
    info = ModelInfo(skeleton, network.image_scale, network.image_offset, network.stride, channel_order=network.channel_order)
    start, stop = network.heatmap_channels
    if stop - start != skeleton.num_heatmap_channels or len(network.paf_channels) != skeleton.num_paf_channels:
        raise SpecError(
            f"network: {stop - start} heatmap and {len(network.paf_channels)} PAF channels do not fit the "
            f"pose config {network.pose_config_path} ({skeleton.num_heatmap_channels} and "
            f"{skeleton.num_paf_channels})"
        )
    if not model_path.endswith(".onnx"):
        raise BpnetError(f"{model_path}: a network described by the inference spec must be an ONNX model")
    layout = OutputLayout(network.heatmap_output, network.heatmap_channels, network.paf_output, network.paf_channels)
    return OnnxBackend(model_path, layout), info


def _exported_predictor_parts(model_path: str):
    """Backend and ModelInfo of a model written by ``bpnet export`` (an ONNX file or a TensorRT engine)."""
    from bpnet.export.onnx_export import read_onnx_metadata
    from bpnet.export.tensorrt import TensorRTBackend, engine_info_path

    if not os.path.isfile(model_path):
        raise BpnetError(f"{model_path}: model file not found")
    if model_path.endswith(".onnx"):
        metadata = read_onnx_metadata(model_path)
        where = "no bpnet metadata (export it with bpnet export, or describe it in the inference spec's network block)"
    else:
        info_path = engine_info_path(model_path)
        metadata = None
        if os.path.isfile(info_path):
            try:
                with open(info_path, encoding="utf-8") as handle:
                    metadata = json.load(handle)
            except ValueError as exc:
                raise BpnetError(f"{info_path}: not valid JSON ({exc})") from None
        where = f"{info_path} (written by bpnet export beside the engine) not found"
    if metadata is None:
        raise BpnetError(f"{model_path}: {where}")
    if metadata.get("sdk_compatible"):
        raise BpnetError(
            f"{model_path}: an --sdk_compatible_model export is for DeepStream only; export without it "
            "for bpnet evaluate/inference"
        )
    info = ModelInfo.parse(metadata, f"{model_path}: bpnet metadata")
    try:
        heatmap, paf = metadata["outputs"]["heatmap"]["name"], metadata["outputs"]["paf"]["name"]
    except (KeyError, TypeError):
        raise BpnetError(f"{model_path}: bpnet metadata: outputs: missing the heatmap and paf output names") from None
    if not model_path.endswith(".onnx"):
        return TensorRTBackend(model_path, heatmap, paf), info
    layout = OutputLayout(heatmap, (0, info.skeleton.num_heatmap_channels), paf, tuple(range(info.skeleton.num_paf_channels)))
    return OnnxBackend(model_path, layout), info


def search_step(upsampling_factor: Tuple[int, int]) -> int:
    """The decoder's coarse search step for maps upsampled by ``(factor_y, factor_x)``: half the factor
    (bicubic upsampling adds no detail finer than that), 1 (full search) without upsampling."""
    return max(1, min(upsampling_factor) // 2)


def decoder_params(spec: InferenceSpec, stride: int) -> DecoderParams:
    """The decoder settings of an inference spec: its ``decoder_preset``, with the thresholds and sub-pixel
    refinement the spec sets, and the coarse search step for its upsampling factor (full upsampling)."""
    params = DECODER_PRESETS[spec.decoder_preset]
    thresholds = {name: getattr(spec, name) for name in ("heatmap_threshold", "paf_threshold") if getattr(spec, name) is not None}
    return dataclasses.replace(
        params,
        **thresholds,
        subpixel=spec.subpixel_refinement,
        search_step=search_step(spec.output_upsampling_factor or (stride, stride)),
    )


def load_predictor(
    inference_spec: Union[InferenceSpec, str, None] = None, model_path: Optional[str] = None, overrides: Sequence[str] = ()
) -> Tuple[Predictor, InferenceSpec]:
    """A Predictor for the model ``-m`` (else the spec's ``model_path``) with the spec's settings.

    ``inference_spec`` is a spec object, a spec file (with ``key.path=value`` ``overrides``), or None for
    the defaults (a model that carries its metadata needs no spec). The returned spec's ``model_path`` is
    the model actually used.
    """
    source = spec_source(inference_spec) if inference_spec is not None else "inference spec"
    if inference_spec is None:
        spec = spec_loader.from_dict(InferenceSpec, spec_loader.apply_overrides({}, overrides), source="--set")
    else:
        spec = spec_object(InferenceSpec, inference_spec, overrides)
    model_path = model_path or spec.model_path
    if not model_path:
        raise SpecError(f"{source}: model_path: not set and no -m/--model_filename given")
    spec = dataclasses.replace(spec, model_path=os.path.abspath(model_path))
    if spec.network is not None:
        backend, info = _network_predictor_parts(spec.network, model_path)
    elif model_path.endswith((".onnx", ".engine", ".trt", ".plan")):
        backend, info = _exported_predictor_parts(model_path)
    else:
        model, info = load_model(model_path)
        if info is None:
            if not spec.train_spec:
                raise BpnetError(
                    f"{model_path}: no bpnet metadata (skeleton, normalisation) in the model; give its "
                    f"train spec as train_spec in the inference spec"
                )
            info = train_spec_info(load_train_spec(spec.train_spec))
        heat_channels, paf_channels = model.outputs[0].shape[-1], model.outputs[-1].shape[-1]
        if (heat_channels, paf_channels) != (info.skeleton.num_heatmap_channels, info.skeleton.num_paf_channels):
            raise BpnetError(
                f"{model_path}: outputs have {heat_channels} heatmap and {paf_channels} PAF channels but "
                f"the skeleton '{info.skeleton.name}' needs {info.skeleton.num_heatmap_channels} and "
                f"{info.skeleton.num_paf_channels}"
            )
        backend = KerasBackend(model, spec.output_stage_to_use)
    settings = PredictorSettings(
        input_shape=spec.input_shape,
        keep_aspect_ratio_mode=spec.keep_aspect_ratio_mode,
        output_upsampling_factor=spec.output_upsampling_factor,
        scales=spec.scales if spec.multi_scale_inference and spec.scales else (1.0,),
        decoder=decoder_params(spec, info.stride),
        flip_test=spec.flip_test,
        upsampling_mode=spec.upsampling_mode,
    )
    return Predictor(backend, info, settings), spec


def _tlt_header(predictor: Predictor, spec: InferenceSpec) -> Dict:
    """The pose config and inference spec at the top of TLT's ``detections.json``."""
    skeleton = predictor.info.skeleton
    return {
        "pose_config_type": skeleton.name,
        "categories": [
            {
                "supercategory": "person",
                "id": 1,
                "name": "person",
                "num_joints": skeleton.num_keypoints,
                "keypoints": list(skeleton.keypoints),
                "skeleton": [[a + 1, b + 1] for a, b in skeleton.limbs],
            }
        ],
        "inference_spec": spec_loader.to_dict(spec),
    }


def _write_json(path: str, data) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle)


def _prepare(results_dir: str) -> None:
    try:
        os.makedirs(results_dir, exist_ok=True)
    except OSError as exc:
        raise BpnetError(f"{results_dir}: cannot create results folder: {exc.strerror or exc}") from None
    remove_stale_temporaries(results_dir)


RESULTS_CSV_COLUMNS = ("metric", "IoU", "area", "maxDets", "score")
"""TLT's ``results.csv`` header (reference §3.17): one row per COCOeval stat."""


def results_csv_row(kpi_name: str, value: float) -> Tuple[str, str, str, int, str]:
    """``AP_0.50:0.95_medium`` → ``("AP", "0.50:0.95", "medium", 20, "0.123456")`` (TLT's columns)."""
    metric, iou, *area = kpi_name.split("_")
    return metric, iou, area[0] if area else "all", 20, f"{value:.6f}"


def _evaluation_inputs(dataset_spec: Union[DatasetSpec, str]) -> Tuple[DatasetSpec, str, str]:
    """The dataset spec, its test annotation file and image folder, checked before anything is written."""
    dataset = spec_object(DatasetSpec, dataset_spec)
    if dataset.test_data is None:
        raise SpecError(f"{spec_source(dataset_spec)}: test_data: not set (evaluate uses it)")
    annotation_file = dataset.resolve(dataset.test_data.annotation_root_dir_path)
    if not os.path.isfile(annotation_file):
        raise BpnetError(f"{annotation_file}: annotation file not found (test_data.annotation_root_dir_path)")
    return dataset, annotation_file, dataset.resolve(dataset.test_data.images_root_dir_path)


def _load_coco(annotation_file: str):
    from pycocotools.coco import COCO

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(annotation_file)
    except (ValueError, KeyError, TypeError) as exc:
        raise BpnetError(
            f"{annotation_file}: not a COCO annotation file ({type(exc).__name__}: {exc}) (test_data.annotation_root_dir_path)"
        ) from None


def evaluate(
    inference_spec: Union[InferenceSpec, str, None],
    dataset_spec: Union[DatasetSpec, str],
    results_dir: str,
    model_path: Optional[str] = None,
    progress: bool = True,
    overrides: Sequence[str] = (),
) -> Dict[str, float]:
    """COCO keypoint AP of a model over the dataset spec's ``test_data``; writes TLT's evaluation files.

    Specs are objects or files (see :func:`load_predictor`; ``overrides`` apply to the inference spec)."""
    dataset, annotation_file, images_dir = _evaluation_inputs(dataset_spec)
    _prepare(results_dir)
    with task_status(results_dir, "Starting bpnet evaluate.") as status:
        predictor, spec = load_predictor(inference_spec, model_path, overrides)
        coco = _load_coco(annotation_file)
        image_ids = sorted(coco.getImgIds())
        coco_results, raw = [], []
        for image_id in tqdm(image_ids, desc="evaluate", unit="img", disable=not progress):
            file_name = coco.loadImgs(image_id)[0].get("file_name")
            path = contained_path(images_dir, file_name) if isinstance(file_name, str) else None
            if path is None:
                raise BpnetError(
                    f"{annotation_file}: image {image_id}: file_name {file_name!r} is not a path inside "
                    f"the image folder {images_dir}"
                )
            prediction = predictor.predict_one(read_image(path), path)
            coco_results += prediction.to_coco(image_id, dataset.category.keypoints, dataset.category.id)
            raw.append({"full_image_path": path, "image_id": image_id, **prediction.to_json()})
        stats = evaluate_keypoints(coco, coco_results, image_ids)
        _write_json(os.path.join(results_dir, "detections.json"), {**_tlt_header(predictor, spec), "images": raw})
        _write_json(os.path.join(results_dir, "detections_coco_format.json"), coco_results)
        with atomic_path(os.path.join(results_dir, "results.csv")) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(RESULTS_CSV_COLUMNS)
            writer.writerows(results_csv_row(name, stats[name]) for name in KPI_NAMES)
        if not coco_results:
            logger.warning(
                "No person was found in any of the %d images: check the model (-m), the inference spec's "
                "input_shape and keep_aspect_ratio_mode (the scale the model was trained at), and "
                "heatmap_threshold",
                len(image_ids),
            )
        status.write("SUCCESS", "Evaluation finished successfully.", kpi=stats)
    return stats


def _inputs(input_type: str, source: str, image_root_path: str) -> List[Tuple[str, Dict]]:
    """``(image path, extra keys)`` per input; the extra keys of a JSON ``images`` entry are copied into its
    ``detections.json`` entry, as TLT did."""
    if input_type == "image":
        return [(os.path.join(image_root_path, source), {})]
    if input_type == "dir":
        if not os.path.isdir(source):
            raise BpnetError(f"{source}: input folder not found")
        paths = sorted(os.path.join(source, n) for n in os.listdir(source) if n.lower().endswith(IMAGE_EXTENSIONS))
        if not paths:
            raise BpnetError(f"{source}: no images ({', '.join(IMAGE_EXTENSIONS)}) in the input folder")
        return [(path, {}) for path in paths]
    try:
        with open(source, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise BpnetError(f"{source}: cannot read the input JSON: {exc}") from None
    if isinstance(data, list):
        entries = [{"full_image_path": e} for e in data]
    else:
        entries = data.get("images", []) if isinstance(data, dict) else []
    if not entries or not all(isinstance(e, dict) and isinstance(e.get("full_image_path"), str) for e in entries):
        raise BpnetError(f"{source}: expected a list of image paths or {{images: [{{full_image_path: ...}}]}}")
    reserved = {"full_image_path", "viz_id", "keypoints", "scores"}
    return [
        (os.path.join(image_root_path, e["full_image_path"]), {k: v for k, v in e.items() if k not in reserved}) for e in entries
    ]


def rendering_names(paths: Sequence[str], numbered: bool) -> List[str]:
    """File names of the renderings: ``<input stem>.png`` (``<stem>_<index>.png`` where two inputs share a
    stem), or TLT's ``<index>.png`` when ``numbered``."""
    if numbered:
        return [f"{index}.png" for index in range(len(paths))]
    stems = [os.path.splitext(os.path.basename(path))[0] for path in paths]
    counts = collections.Counter(stems)
    return [f"{stem}.png" if counts[stem] == 1 else f"{stem}_{index}.png" for index, stem in enumerate(stems)]


def _video_frames(source: str, max_frames: Optional[int]) -> Tuple[Iterator[np.ndarray], float, str, Optional[int]]:
    """Frames (at most ``max_frames``), frame rate, output name and frame count (None if unknown)."""
    capture = cv2.VideoCapture(int(source) if source.isdigit() else source)
    if not capture.isOpened():
        raise BpnetError(f"{source}: cannot open the video (file or camera index)")
    fps = capture.get(cv2.CAP_PROP_FPS) or 10.0
    reported = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    total = min(reported, max_frames) if reported > 0 and max_frames else (reported or max_frames or None)

    def frames():
        try:
            count = 0
            while max_frames is None or count < max_frames:
                ok, frame = capture.read()
                if not ok:
                    return
                count += 1
                yield frame
        finally:
            capture.release()

    name = f"camera{source}" if source.isdigit() else os.path.splitext(os.path.basename(source))[0]
    return frames(), fps, name, total


def _video_inference(
    predictor: Predictor, source: str, annotated: str, dump_visualizations: bool, progress: bool, max_frames: Optional[int] = None
) -> List[Dict]:
    """Per-frame entries of a video; the rendered video is written under a temporary name and renamed when
    complete, so an interrupted run never leaves a truncated ``.mp4`` under the final name."""
    frames, fps, name, total = _video_frames(source, max_frames)
    entries: List[Dict] = []
    video_path = os.path.join(annotated, f"{name}.mp4")
    with contextlib.ExitStack() as stack:
        writer = None
        for index, frame in enumerate(tqdm(frames, desc="inference", unit="frame", total=total, disable=not progress)):
            prediction = predictor.predict_one(frame, f"{source}#{index}")
            entries.append({"frame": index, **prediction.to_json()})
            if not dump_visualizations:
                continue
            if writer is None:
                os.makedirs(annotated, exist_ok=True)
                temporary = stack.enter_context(atomic_path(video_path))
                writer = cv2.VideoWriter(temporary, cv2.VideoWriter.fourcc(*"mp4v"), fps, frame.shape[1::-1])
                if not writer.isOpened():
                    raise BpnetError(f"{video_path}: cannot write the video")
                stack.callback(writer.release)
            writer.write(prediction.draw(frame))
    if not entries:
        raise BpnetError(f"{source}: the video has no readable frame")
    return entries


JOURNAL_NAME = "detections.partial.jsonl"
"""Per-image results of an unfinished ``inference`` run, appended as each image is done; a rerun with the
same inputs, model and spec resumes from it, a different one starts afresh. Removed when
``detections.json`` is complete."""


def _run_fingerprint(
    inputs: Sequence[Tuple[str, Dict]], model_path: str, spec: InferenceSpec, renderings: Optional[Sequence[str]]
) -> str:
    model = os.path.abspath(model_path)
    stat = os.stat(model) if os.path.isfile(model) else None
    identity = {
        "inputs": list(inputs),
        "model": model,
        "model_size": stat.st_size if stat else None,
        "model_mtime_ns": stat.st_mtime_ns if stat else None,
        "spec": spec_loader.to_dict(spec),
        "renderings": list(renderings) if renderings else None,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


class _Journal:
    """``detections.partial.jsonl``: a fingerprint line, then one ``{"index", "entry" | "skipped"}`` line per image."""

    def __init__(self, path: str, fingerprint: str):
        self.path = path
        self.done: Dict[int, Optional[Dict]] = {}
        self._read(fingerprint)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        self.handle = os.fdopen(os.open(path, flags, 0o644), "a", encoding="utf-8")
        if not self.done and self.handle.tell() == 0:
            self._append({"fingerprint": fingerprint})

    def _read(self, fingerprint: str) -> None:
        if not os.path.isfile(self.path) or os.path.islink(self.path):
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)
            return
        with open(self.path, encoding="utf-8") as handle:
            lines = handle.read().split("\n")
        good = 0
        for number, line in enumerate(lines):
            try:
                record = json.loads(line)
                if number == 0 and record["fingerprint"] != fingerprint:
                    break
                if number > 0:
                    self.done[int(record["index"])] = record.get("entry")
            except (ValueError, KeyError, TypeError):
                break  # the last line of a killed run may be cut short
            good += len(line) + 1
        if good == 0:
            self.done.clear()
            os.remove(self.path)
            return
        with open(self.path, "r+", encoding="utf-8") as handle:
            handle.truncate(good)

    def _append(self, record: Dict) -> None:
        self.handle.write(json.dumps(record) + "\n")
        self.handle.flush()

    def add(self, index: int, entry: Optional[Dict]) -> None:
        self._append({"index": index, "entry": entry} if entry is not None else {"index": index, "skipped": True})
        self.done[index] = entry

    def close(self) -> None:
        self.handle.close()


def _image_inference(
    predictor: Predictor,
    inputs: Sequence[Tuple[str, Dict]],
    results_dir: str,
    annotated: str,
    renderings: Optional[Sequence[str]],
    fingerprint: str,
    progress: bool,
) -> Tuple[List[Dict], int]:
    """Per-image entries (and the count skipped), resuming from and appending to the journal; each image is
    rendered to ``annotated/renderings[i]`` when ``renderings`` is given."""
    paths = [path for path, _ in inputs]
    journal = _Journal(os.path.join(results_dir, JOURNAL_NAME), fingerprint)
    try:
        if journal.done:
            logger.info("Resuming: %d of %d images were done by an interrupted run", len(journal.done), len(paths))
        for index, path in enumerate(tqdm(paths, desc="inference", unit="img", disable=not progress, initial=len(journal.done))):
            if index in journal.done:
                continue
            try:
                image = read_image(path)
            except BpnetError as exc:
                logger.warning("skipped: %s", exc)
                journal.add(index, None)
                continue
            prediction = predictor.predict_one(image, path)
            if renderings:
                write_png(os.path.join(annotated, renderings[index]), prediction.draw(image))
            journal.add(index, {**inputs[index][1], "full_image_path": path, "viz_id": index, **prediction.to_json()})
    finally:
        journal.close()
    entries = [entry for entry in (journal.done.get(i) for i in range(len(paths))) if entry is not None]
    return entries, len(paths) - len(entries)


def inference(
    inference_spec: Union[InferenceSpec, str, None],
    input_type: str,
    source: str,
    results_dir: str,
    model_path: Optional[str] = None,
    image_root_path: str = "",
    dump_visualizations: bool = False,
    progress: bool = True,
    overrides: Sequence[str] = (),
    numbered_outputs: bool = False,
    max_frames: Optional[int] = None,
) -> Dict[str, int]:
    """Predict images, a folder, a JSON list or a video; writes ``detections.json`` and, optionally, renders
    (``images_annotated/<input stem>.png``, or TLT's ``<index>.png`` with ``numbered_outputs``).

    Image inputs are journaled per image (:data:`JOURNAL_NAME`): an interrupted run, rerun, resumes.
    A video (at most ``max_frames`` frames) is processed again from its first frame.
    """
    _prepare(results_dir)
    with task_status(results_dir, "Starting bpnet inference.") as status:
        predictor, spec = load_predictor(inference_spec, model_path, overrides)
        annotated = os.path.join(results_dir, "images_annotated")
        remove_stale_temporaries(annotated)
        if input_type == "video":
            entries = _video_inference(predictor, source, annotated, dump_visualizations, progress, max_frames)
            skipped = 0
        else:
            inputs = _inputs(input_type, source, image_root_path)
            renderings = rendering_names([p for p, _ in inputs], numbered_outputs) if dump_visualizations else None
            fingerprint = _run_fingerprint(inputs, spec.model_path or "", spec, renderings)
            entries, skipped = _image_inference(predictor, inputs, results_dir, annotated, renderings, fingerprint, progress)
            if not entries:
                raise BpnetError(f"{source}: no readable image")
        _write_json(os.path.join(results_dir, "detections.json"), {**_tlt_header(predictor, spec), "images": entries})
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(results_dir, JOURNAL_NAME))
        summary = {"inputs": len(entries), "skipped": skipped, "people": sum(len(e["scores"]) for e in entries)}
        status.write("SUCCESS", "Inference finished successfully.", kpi=summary)
    return summary
