"""``bpnet export``: Keras model → ONNX, then a TensorRT engine (GPU) or an INT8 ONNX model (CPU).

Targets:

* ``tensorrt`` (TLT's behaviour; the default when ``--engine_file`` is given): an engine is built from
  the ONNX file in ``--data_type`` (INT8 calibrated by entropy on ``--cal_image_dir`` or
  ``--cal_data_file``, the cache in ``--cal_cache_file``) and saved to ``--engine_file`` if given.
* ``onnxruntime`` (the default otherwise): the FP32 ONNX file; with ``--data_type int8`` also
  ``<output stem>.int8.onnx``, statically quantised (QDQ) on the calibration images.
* ``openvino`` (bpnet addition): the ONNX file and ``<output stem>.xml`` + ``.bin``, an FP32 OpenVINO IR;
  with ``--data_type int8`` also ``<output stem>.int8.xml``, quantised by NNCF on the same calibration
  images (:mod:`bpnet.export.openvino_export`).
"""

import dataclasses
import logging
import os
from typing import Dict, Optional, Tuple

from bpnet.errors import BpnetError
from bpnet.export.onnx_export import OnnxSettings
from bpnet.files import atomic_path, remove_stale_temporaries
from bpnet.model.io import ModelInfo, load_model, train_spec_info
from bpnet.status import task_status

logger = logging.getLogger(__name__)

DATA_TYPES = ("fp32", "fp16", "int8")
DEFAULT_CAL_CACHE_FILE = "./cal.bin"
"""TLT's default ``--cal_cache_file``."""
TARGETS = ("tensorrt", "onnxruntime", "openvino")
CPU_TARGETS = ("onnxruntime", "openvino")


@dataclasses.dataclass(frozen=True)
class ExportRequest:
    """The flags of ``bpnet export`` (reference §1.6)."""

    model: str
    output_file: Optional[str] = None
    experiment_spec: Optional[str] = None
    data_type: str = "fp32"
    target: Optional[str] = None  # default: tensorrt with engine_file, else onnxruntime
    engine_file: Optional[str] = None
    input_dims: str = "256,256,3"
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


@dataclasses.dataclass(frozen=True)
class ExportResult:
    onnx_file: str
    int8_onnx_file: Optional[str] = None
    openvino_file: Optional[str] = None
    int8_openvino_file: Optional[str] = None
    engine_file: Optional[str] = None
    calibration_cache: Optional[str] = None


def parse_input_dims(text: str) -> Tuple[int, int]:
    """``-d``: ``H,W,C`` or ``C,H,W`` with 3 channels → (H, W)."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3 or min(values) < 1 or 3 not in (values[0], values[2]):
        raise BpnetError(f"--input_dims: {text!r} is not H,W,3 or 3,H,W")
    return (values[0], values[1]) if values[2] == 3 else (values[1], values[2])


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
    input_hw = parse_input_dims(request.input_dims)
    with task_status(request.results_dir, f"Exporting {request.model}") as status:
        result = _export(request, target, input_hw)
        status.write("SUCCESS", "Export finished", kpi={k: v for k, v in dataclasses.asdict(result).items() if v})
    return result


def _export(request: ExportRequest, target: str, input_hw: Tuple[int, int]) -> ExportResult:
    from bpnet.export import calibration
    from bpnet.export.onnx_export import metadata, to_onnx

    model, info = load_model(request.model)
    info = _model_info(request, info)
    on_grid = tuple(-(-side // info.stride) * info.stride for side in input_hw)
    if on_grid != tuple(input_hw):
        logger.warning(
            "--input_dims %s: rounded up to %s, a multiple of the model's stride %d (inference pads its input the same way)",
            request.input_dims,
            "x".join(map(str, on_grid)),
            info.stride,
        )
        input_hw = (on_grid[0], on_grid[1])
    onnx_path = default_onnx_path(request.model, request.output_file)
    settings = OnnxSettings(request.static_batch_size, request.sdk_compatible_model, request.upsample_ratio)
    _write_onnx(to_onnx(model, info, settings), onnx_path)
    logger.info("Wrote %s", onnx_path)
    result = ExportResult(onnx_path)

    def calibration_data():
        return calibration.calibration_data(
            input_hw, info, request.batches, request.batch_size, request.cal_image_dir, request.cal_data_file
        )

    if target == "onnxruntime":
        if request.data_type == "int8":
            from bpnet.export.quantize import quantize_int8

            int8_path = int8_onnx_path(onnx_path)
            kept_float = quantize_int8(onnx_path, int8_path, calibration_data())
            logger.info("Wrote %s (kept in float: %s)", int8_path, ", ".join(kept_float))
            result = dataclasses.replace(result, int8_onnx_file=int8_path)
    elif target == "openvino":
        from bpnet.export.openvino_export import openvino_path, quantize_openvino_int8, to_openvino

        xml_path = openvino_path(onnx_path)
        to_openvino(onnx_path, xml_path, metadata(info, settings))
        logger.info("Wrote %s", xml_path)
        result = dataclasses.replace(result, openvino_file=xml_path)
        if request.data_type == "int8":
            int8_xml = openvino_path(onnx_path, int8=True)
            quantize_openvino_int8(onnx_path, xml_path, int8_xml, calibration_data(), metadata(info, settings))
            logger.info("Wrote %s", int8_xml)
            result = dataclasses.replace(result, int8_openvino_file=int8_xml)
    else:
        from bpnet.export import tensorrt

        engine_settings = tensorrt.EngineSettings(
            request.data_type,
            input_hw,
            request.static_batch_size,
            request.opt_batch_size,
            request.max_batch_size,
            request.batch_size,
            request.max_workspace_size,
            request.strict_type_constraints,
        )
        feeder = None
        if request.data_type == "int8":
            cache_file = request.cal_cache_file or DEFAULT_CAL_CACHE_FILE
            cached = os.path.isfile(cache_file)
            feeder = tensorrt.CalibrationFeeder(None if cached else calibration_data(), cache_file)
        engine = tensorrt.build_engine(onnx_path, engine_settings, feeder)
        if request.engine_file:
            tensorrt.save_engine(engine, request.engine_file, metadata(info, settings))
        result = dataclasses.replace(
            result, engine_file=request.engine_file, calibration_cache=feeder.cache_file if feeder else None
        )
    return result


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
