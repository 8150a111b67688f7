"""OpenVINO IR for CPUs: the exported ONNX model converted by OpenVINO, and an INT8 IR quantised by NNCF's
post-training quantisation on the same calibration batches as the ONNX Runtime INT8 model.

Files: ``<stem>.xml`` + ``<stem>.bin`` (FP32 weights, not compressed to FP16) and ``<stem>.int8.xml`` +
``.bin``, each with its bpnet metadata beside it (``<model>.xml.json``, :mod:`bpnet.model.io`), so
``evaluate``, ``inference`` and the Python API run them (:class:`bpnet.infer.backends.OpenVinoBackend`).
As for ONNX Runtime, the two output convolutions stay in float (see :mod:`bpnet.export.quantize`).
Both packages are optional (``bpnet[openvino]``) and imported only here.
"""

import contextlib
import logging
import os
import re
import tempfile
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional

import numpy as np

from bpnet.errors import BpnetError
from bpnet.export.quantize import output_convolutions
from bpnet.model.io import write_sidecar_metadata

if TYPE_CHECKING:
    from bpnet.export.accuracy_control import AccuracyControl

logger = logging.getLogger(__name__)


def openvino_path(onnx_path: str, int8: bool = False) -> str:
    """``<stem>.xml`` (or ``<stem>.int8.xml``) beside the exported ONNX file."""
    return os.path.splitext(onnx_path)[0] + (".int8.xml" if int8 else ".xml")


def _import(name: str):
    try:
        return __import__(name)
    except ImportError:
        raise BpnetError(f"--target openvino needs the {name} package (pip install 'bpnet[openvino]')") from None


def _save(model, xml_path: str, metadata: Dict[str, Any]) -> None:
    """Write an IR's ``.xml`` and ``.bin`` (through temporaries in the same folder, the ``.bin`` first) and its
    metadata."""
    openvino = _import("openvino")
    folder = os.path.dirname(os.path.abspath(xml_path))
    os.makedirs(folder, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".openvino-") as work:
        staged = os.path.join(work, os.path.basename(xml_path))
        openvino.save_model(model, staged, compress_to_fp16=False)
        os.replace(os.path.splitext(staged)[0] + ".bin", os.path.splitext(xml_path)[0] + ".bin")
        os.replace(staged, xml_path)
    write_sidecar_metadata(xml_path, metadata)


def to_openvino(onnx_path: str, xml_path: str, metadata: Dict[str, Any]) -> None:
    """Convert the exported ONNX model to an FP32 OpenVINO IR at ``xml_path``."""
    openvino = _import("openvino")
    try:
        model = openvino.convert_model(onnx_path)
    except Exception as exc:  # OpenVINO raises its own exception types
        raise BpnetError(f"{onnx_path}: OpenVINO could not convert the model: {str(exc).splitlines()[0]}") from None
    _save(model, xml_path, metadata)


def quantize_openvino_int8(
    onnx_path: Optional[str],
    xml_path: str,
    int8_path: str,
    calibration: np.ndarray,
    metadata: Dict[str, Any],
    keep_float: Optional[str] = None,
    control: Optional["AccuracyControl"] = None,
) -> Optional[List[str]]:
    """NNCF's post-training INT8 quantisation of the IR at ``xml_path`` on ``calibration (batches, N, …)`` (the
    inference preprocessing in the model's input layout). Kept in float: the output convolutions of
    ``onnx_path`` (the IR's source; None for an imported IR, whose output convolutions are found in the IR)
    and the operations whose name ``keep_float`` matches. With ``control``, NNCF's accuracy control puts more
    operations back in float until its metric is within budget (:mod:`bpnet.export.accuracy_control`); the
    convolutions left in float are returned (None without ``control``)."""
    openvino = _import("openvino")
    nncf = _import("nncf")

    model = openvino.Core().read_model(xml_path)
    convolutions = [op.get_friendly_name() for op in model.get_ops() if op.get_type_name() == "Convolution"]
    kept = set(output_convolutions(onnx_path) if onnx_path else ir_output_convolutions(model))
    # OpenVINO splits the bias off a convolution: ONNX's "x/BiasAdd" becomes "x/BiasAdd/WithoutBiases"
    names = [name for name in convolutions if name in kept or name.rpartition("/")[0] in kept]
    if keep_float:
        pattern = re.compile(keep_float)
        names += [op.get_friendly_name() for op in model.get_ops() if pattern.search(op.get_friendly_name())]
    ignored = nncf.IgnoredScope(names=list(dict.fromkeys(names)), validate=False)
    if not logger.isEnabledFor(logging.DEBUG):  # NNCF's per-node INFO lines only with -v
        nncf.set_log_level(logging.WARNING)
    if len([name for name in names if name in convolutions]) < len(kept):
        logger.warning("OpenVINO INT8: kept in float only %s of the output convolutions %s", names, sorted(kept))
    settings = dict(
        calibration_dataset=nncf.Dataset([batch.astype(np.float32) for batch in calibration]),
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=len(calibration),
        ignored_scope=ignored,
    )
    float_convolutions = None
    with _quiet_histogram_rollback():
        if control is None:
            quantized = nncf.quantize(model, advanced_parameters=histogram_ranges(), **settings)
        else:
            from bpnet.export.accuracy_control import quantize_with_control

            quantized, float_convolutions = quantize_with_control(nncf, model, settings, histogram_ranges(), control)
    _save(quantized, int8_path, metadata)
    return float_convolutions


def histogram_ranges():
    """NNCF's quantisation parameters with per-tensor activation ranges chosen from each tensor's histogram over
    all calibration images (``RangeEstimatorParametersSet.HISTOGRAM``) instead of NNCF's default, the mean over
    calibration batches of each batch's minimum and maximum: with that default the ranges, and the AP, depend on
    how the same images are grouped into batches (docs/export.md: on mobilenet_thin, ten calibrations of the same
    images gave held-out AP 0.216 to 0.252 with the default and 0.226 to 0.253 with histograms; FP32 0.237)."""
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    return AdvancedQuantizationParameters(activations_range_estimator_params=RangeEstimatorParametersSet.HISTOGRAM)


def _not_histogram_rollback(record: logging.LogRecord) -> bool:
    """False for NNCF's warning, once per quantiser, that per-channel activation quantisers keep min/max ranges."""
    return not record.getMessage().startswith("Rollback to RangeEstimatorParametersSet.MINMAX")


@contextlib.contextmanager
def _quiet_histogram_rollback() -> Iterator[None]:
    nncf_logger = logging.getLogger("nncf")
    nncf_logger.addFilter(_not_histogram_rollback)
    try:
        yield
    finally:
        nncf_logger.removeFilter(_not_histogram_rollback)


def ir_output_convolutions(model) -> List[str]:
    """Friendly names of the Convolution operations that produce an OpenVINO model's outputs, found as
    :func:`bpnet.export.quantize.output_convolutions` finds them in an ONNX graph (first inputs; every input
    of a Concat)."""
    found: List[str] = []
    pending = [result.input_value(0).get_node() for result in model.get_results()]
    while pending:
        node = pending.pop()
        kind = node.get_type_name()
        if kind == "Convolution":
            found.append(node.get_friendly_name())
        else:
            inputs = node.inputs() if kind == "Concat" else node.inputs()[:1]
            pending.extend(value.get_source_output().get_node() for value in inputs)
    return list(dict.fromkeys(found))
