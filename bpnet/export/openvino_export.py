"""OpenVINO IR for CPUs: the exported ONNX model converted by OpenVINO, and an INT8 IR quantised by NNCF's
post-training quantisation on the same calibration batches as the ONNX Runtime INT8 model.

Files: ``<stem>.xml`` + ``<stem>.bin`` (FP32 weights, not compressed to FP16) and ``<stem>.int8.xml`` +
``.bin``, each with its bpnet metadata beside it (``<model>.xml.json``, :mod:`bpnet.model.io`), so
``evaluate``, ``inference`` and the Python API run them (:class:`bpnet.infer.backends.OpenVinoBackend`).
As for ONNX Runtime, the two output convolutions stay in float (see :mod:`bpnet.export.quantize`).
Both packages are optional (``bpnet[openvino]``) and imported only here.
"""

import logging
import os
import tempfile
from typing import Any, Dict

import numpy as np

from bpnet.errors import BpnetError
from bpnet.model.io import write_sidecar_metadata

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
    onnx_path: str, xml_path: str, int8_path: str, calibration: np.ndarray, metadata: Dict[str, Any]
) -> None:
    """NNCF's post-training INT8 quantisation of the IR at ``xml_path`` on ``calibration (batches, batch, H, W, 3)``
    (the inference preprocessing), the output convolutions of ``onnx_path`` kept in float."""
    openvino = _import("openvino")
    nncf = _import("nncf")
    from bpnet.export.quantize import output_convolutions

    model = openvino.Core().read_model(xml_path)
    kept = set(output_convolutions(onnx_path))
    names = [op.get_friendly_name() for op in model.get_ops() if op.get_type_name() == "Convolution"]
    # OpenVINO splits the bias off a convolution: ONNX's "x/BiasAdd" becomes "x/BiasAdd/WithoutBiases"
    ignored = nncf.IgnoredScope(names=[name for name in names if name in kept or name.rpartition("/")[0] in kept])
    dataset = nncf.Dataset([batch.astype(np.float32) for batch in calibration])
    quantized = nncf.quantize(model, dataset, subset_size=len(calibration), ignored_scope=ignored)
    if len(ignored.names) != len(kept):
        logger.warning("OpenVINO INT8: kept in float only %s of the output convolutions %s", ignored.names, sorted(kept))
    _save(quantized, int8_path, metadata)
