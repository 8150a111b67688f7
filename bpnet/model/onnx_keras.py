"""ONNX networks → trainable Keras 3 models of ordinary layers, with every stage's heads exposed.

The converter covers a documented op subset (:data:`SUPPORTED_OPS`): what tf2onnx makes of the tf-pose-estimation
family and what Lightweight OpenPose's ONNX export holds. Anything else is refused in one line naming the op
and the node. Layout: the Keras model is channels-last; every 4-D ONNX tensor in NCHW is held as its NHWC
transpose, and the ``Transpose`` nodes that switch between the two (tf2onnx's input and output transposes) become
no-ops.

Stages: the network's heads are found from its final heatmap and PAF outputs (named by the import's metadata):
walking back through ``Concat``/``Transpose`` to the convolution that makes each, every convolution of the same
shape is the same head of another stage, in graph order. The Keras model's outputs are bpnet's
``[heat_1..heat_S, paf_1..paf_S]``, the heads' own tensors (the ones that feed the next stage), so training
supervises each stage as the network was trained. Layers are named after their ONNX nodes, prefixed with
``backbone_`` or ``stage<s>_`` (a node is a stage's when only that stage's heads depend on it without passing
through another head; the backbone feeds several stages), so that the stage-wise learning-rate multipliers apply;
the last stage's heads are named ``heatmap_out`` and ``paf_out`` as in bpnet's own models.
"""

import dataclasses
import re
from typing import AbstractSet, Any, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

from bpnet.errors import BpnetError

SUPPORTED_OPS = (
    "Conv",  # incl. grouped and depthwise
    "BatchNormalization",
    "Relu",
    "Clip",  # Relu6 (min 0)
    "PRelu",
    "LeakyRelu",
    "Elu",
    "Sigmoid",
    "Add",
    "Mul",
    "Concat",
    "MaxPool",
    "AveragePool",
    "Pad",
    "Resize",
    "Transpose",  # NHWC <-> NCHW only
    "Identity",
    "Dropout",
    "Constant",
)


@dataclasses.dataclass
class _Tensor:
    """A converted tensor: the Keras tensor, and whether the ONNX tensor is NCHW held as NHWC (``nchw``) or is
    held as it is (``nhwc``: 4-D ONNX tensors in NHWC, e.g. tf2onnx's input before its transpose)."""

    value: Any
    nchw: bool


@dataclasses.dataclass(frozen=True)
class StageHeads:
    """The convolution nodes making each stage's heatmaps and PAFs (stage 1 first)."""

    heatmap: Tuple[str, ...]
    paf: Tuple[str, ...]


def _attributes(node) -> Dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _layer_name(node_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", node_name).strip("_") or "node"


class _Graph:
    """An ONNX graph's nodes, producers and constants."""

    def __init__(self, proto, source: str):
        import onnx.numpy_helper

        self.source = source
        self.graph = proto.graph
        self.constants: Dict[str, np.ndarray] = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
        self.nodes = list(proto.graph.node)
        for index, node in enumerate(self.nodes):
            if not node.name:
                node.name = f"{node.op_type}_{index}"
            if node.op_type == "Constant":
                value = _attributes(node).get("value")
                if value is not None:
                    self.constants[node.output[0]] = onnx.numpy_helper.to_array(value)
        self.producer = {output: node for node in self.nodes for output in node.output}

    def constant(self, name: str, node, what: str) -> np.ndarray:
        if name not in self.constants:
            raise BpnetError(f"{self.source}: node {node.name!r} ({node.op_type}): its {what} must be a constant")
        return self.constants[name]

    def conv_weights(self, node) -> np.ndarray:
        return self.constant(node.input[1], node, "weights")

    def ancestors(self, outputs: Sequence[str], stop: AbstractSet[str] = frozenset()) -> Set[str]:
        """Names of the nodes the tensors ``outputs`` depend on, not expanding past nodes in ``stop``."""
        seen: Set[str] = set()
        pending = [self.producer[o] for o in outputs if o in self.producer]
        while pending:
            node = pending.pop()
            if node.name in seen:
                continue
            seen.add(node.name)
            if node.name in stop:
                continue
            pending.extend(self.producer[i] for i in node.input if i in self.producer)
        return seen


def _head_conv(graph: _Graph, tensor: str, start: int, count: int) -> str:
    """The convolution that makes channels ``[start, start + count)`` of ``tensor``, through Concat and layout ops."""
    while True:
        node = graph.producer.get(tensor)
        if node is None:
            break
        if node.op_type in ("Transpose", "Identity"):
            tensor = node.input[0]
            continue
        if node.op_type == "Concat":
            offset = 0
            for part in node.input:
                width = _channel_count(graph, part)
                if offset <= start < offset + width:
                    tensor, start = part, start - offset
                    break
                offset += width
            else:
                break
            continue
        if node.op_type == "Conv" and start == 0 and graph.conv_weights(node).shape[0] == count:
            return node.name
        break
    raise BpnetError(
        f"{graph.source}: cannot find the convolution making {count} output channels from {start} of {tensor!r}; "
        "only networks whose heads end in a convolution are converted"
    )


def _channel_count(graph: _Graph, tensor: str) -> int:
    node = graph.producer.get(tensor)
    while node is not None and node.op_type in ("Transpose", "Identity", "Relu", "Sigmoid", "Elu", "BatchNormalization"):
        node = graph.producer.get(node.input[0])
    if node is None or node.op_type != "Conv":
        raise BpnetError(f"{graph.source}: cannot tell the channels of {tensor!r} (not made by a convolution)")
    return int(graph.conv_weights(node).shape[0])


def find_stage_heads(graph: _Graph, heat: Tuple[str, int, int], paf: Tuple[str, int, int]) -> StageHeads:
    """Every stage's head convolutions, from the final heatmap and PAF outputs ``(tensor, first channel, count)``."""
    final = [_head_conv(graph, *heat), _head_conv(graph, *paf)]
    by_name = {n.name: n for n in graph.nodes}
    earlier = graph.ancestors([by_name[name].output[0] for name in final])

    def head_shape(node) -> Tuple[int, ...]:  # output channels and kernel size (stage 1 may read more channels)
        shape = graph.conv_weights(node).shape
        return (shape[0], *shape[2:])

    heads = [
        [
            n.name
            for n in graph.nodes
            if n.op_type == "Conv"
            and n.name in earlier
            and n.input[1] in graph.constants
            and head_shape(n) == head_shape(by_name[f])
        ]
        for f in final
    ]
    if len(heads[0]) != len(heads[1]) or heads[0][-1] != final[0] or heads[1][-1] != final[1]:
        raise BpnetError(
            f"{graph.source}: {len(heads[0])} heatmap heads but {len(heads[1])} PAF heads found (convolutions with the "
            "final ones' output channels and kernel size); cannot tell the stages apart"
        )
    return StageHeads(tuple(heads[0]), tuple(heads[1]))


def _stage_of_nodes(graph: _Graph, heads: StageHeads) -> Dict[str, int]:
    """Node → stage (1-based), or 0 for the backbone (nodes several stages depend on)."""
    every_head = set(heads.heatmap) | set(heads.paf)
    reached: Dict[str, Set[int]] = {}
    by_name = {n.name: n for n in graph.nodes}
    for stage, names in enumerate(zip(heads.heatmap, heads.paf), start=1):
        tensors = [by_name[name].output[0] for name in names]
        for name in graph.ancestors(tensors, stop=every_head - set(names)):
            if name in every_head - set(names):
                continue
            reached.setdefault(name, set()).add(stage)
    return {name: (next(iter(stages)) if len(stages) == 1 else 0) for name, stages in reached.items()}


def _padding(node, attributes: Dict[str, Any], kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int]):
    """``("same" | "valid", explicit ((top, bottom), (left, right)) or None)`` for a Conv/pool node."""
    auto_pad = attributes.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad == "SAME_UPPER":
        return "same", None
    if auto_pad == "VALID":
        return "valid", None
    if auto_pad not in ("NOTSET", "SAME_LOWER"):
        raise BpnetError(f"node {node.name!r}: auto_pad {auto_pad} is not supported")
    if auto_pad == "SAME_LOWER":
        raise BpnetError(f"node {node.name!r}: auto_pad SAME_LOWER is not supported")
    pads = list(attributes.get("pads", [0, 0, 0, 0]))
    if len(pads) != 4:
        raise BpnetError(f"node {node.name!r}: only 2-D padding is supported")
    top, left, bottom, right = pads
    if not any(pads):
        return "valid", None
    same = all(s == 1 for s in strides) and all(
        (before, after) == (d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2)
        for before, after, k, d in ((top, bottom, kernel[0], dilations[0]), (left, right, kernel[1], dilations[1]))
    )
    return ("same", None) if same else ("valid", ((top, bottom), (left, right)))


class _Converter:
    def __init__(self, graph: _Graph, stage_of: Dict[str, int], heads: StageHeads):
        import keras

        self.keras = keras
        self.graph = graph
        self.stage_of = stage_of
        self.heads = heads
        self.tensors: Dict[str, _Tensor] = {}
        self.weights: Dict[str, List[np.ndarray]] = {}
        self.used_names: Set[str] = set()

    def name(self, node, suffix: str = "") -> str:
        stages = len(self.heads.heatmap)
        if node.name == self.heads.heatmap[-1] and not suffix:
            name = "heatmap_out"
        elif node.name == self.heads.paf[-1] and not suffix:
            name = "paf_out"
        else:
            stage = self.stage_of.get(node.name, 0)
            prefix = f"stage{stage}_" if stage else "backbone_"
            name = prefix + _layer_name(node.name) + suffix
            if stage and stages and node.name in (self.heads.heatmap[stage - 1], self.heads.paf[stage - 1]):
                name += "_out"  # a head of an earlier stage: ".*out$" gets the heads' learning-rate multiplier
        while name in self.used_names:
            name += "_"
        self.used_names.add(name)
        return name

    def refuse(self, node, why: str) -> BpnetError:
        return BpnetError(f"{self.graph.source}: node {node.name!r} ({node.op_type}): {why}")

    def input(self, node, index: int = 0) -> _Tensor:
        name = node.input[index]
        if name not in self.tensors:
            raise self.refuse(node, f"input {name!r} is not a converted tensor")
        return self.tensors[name]

    def layer(self, node, layer, inputs, weights: Optional[List[np.ndarray]] = None, nchw: bool = True) -> None:
        output = layer(inputs)
        if weights is not None:
            self.weights[layer.name] = weights
        self.tensors[node.output[0]] = _Tensor(output, nchw)

    def channel_vector(self, node, value: np.ndarray, channels: int, nchw: bool) -> np.ndarray:
        """A constant operand broadcast over one tensor's channels: a scalar or one value per channel."""
        flat = np.asarray(value, np.float32)
        if flat.size == 1:
            return np.full(channels, float(flat.reshape(())), np.float32)
        squeezed = flat.reshape(-1)
        expected = (1, channels, 1, 1) if nchw else (1, 1, 1, channels)
        if squeezed.size != channels or flat.shape not in ((channels,), expected, expected[1:]):
            raise self.refuse(node, f"a constant of shape {list(flat.shape)} is not one value per channel")
        return squeezed

    def convert(self, node) -> None:  # noqa: C901 (one branch per op)
        L = self.keras.layers
        op, attributes = node.op_type, _attributes(node)
        if op not in SUPPORTED_OPS:
            raise BpnetError(
                f"{self.graph.source}: node {node.name!r}: op {op} is not in the supported subset ({', '.join(SUPPORTED_OPS)})"
            )
        if op == "Constant":
            return
        if op in ("Identity", "Dropout"):
            self.tensors[node.output[0]] = self.input(node)
            return
        if op == "Transpose":
            source = self.input(node)
            perm = list(attributes.get("perm", []))
            if perm == [0, 3, 1, 2] and not source.nchw:
                self.tensors[node.output[0]] = _Tensor(source.value, True)
            elif perm == [0, 2, 3, 1] and source.nchw:
                self.tensors[node.output[0]] = _Tensor(source.value, False)
            else:
                raise self.refuse(node, f"only NHWC <-> NCHW transposes are supported, not perm {perm}")
            return
        source = self.input(node)
        if op in ("Conv", "MaxPool", "AveragePool", "BatchNormalization", "PRelu", "Pad", "Resize") and not source.nchw:
            raise self.refuse(node, "expects an NCHW input")
        if op == "Conv":
            self.conv(node, attributes, source)
        elif op == "BatchNormalization":
            gamma, beta, mean, variance = (self.graph.constant(node.input[i], node, "statistics") for i in range(1, 5))
            layer = L.BatchNormalization(
                axis=-1,
                epsilon=float(attributes.get("epsilon", 1e-5)),
                momentum=float(attributes.get("momentum", 0.9)),
                name=self.name(node),
            )
            self.layer(node, layer, source.value, [gamma, beta, mean, variance])
        elif op == "Relu":
            self.layer(node, L.ReLU(name=self.name(node)), source.value, nchw=source.nchw)
        elif op == "Clip":
            low = float(self.graph.constant(node.input[1], node, "minimum")) if len(node.input) > 1 and node.input[1] else None
            high = float(self.graph.constant(node.input[2], node, "maximum")) if len(node.input) > 2 and node.input[2] else None
            low = attributes.get("min", low)
            high = attributes.get("max", high)
            if low != 0.0:
                raise self.refuse(node, f"only Clip(0, max) (ReLU6 and the like) is supported, not min {low}")
            self.layer(node, L.ReLU(max_value=high, name=self.name(node)), source.value, nchw=source.nchw)
        elif op == "LeakyRelu":
            layer = L.LeakyReLU(negative_slope=float(attributes.get("alpha", 0.01)), name=self.name(node))
            self.layer(node, layer, source.value, nchw=source.nchw)
        elif op == "Elu":
            self.layer(
                node, L.ELU(alpha=float(attributes.get("alpha", 1.0)), name=self.name(node)), source.value, nchw=source.nchw
            )
        elif op == "Sigmoid":
            self.layer(node, L.Activation("sigmoid", name=self.name(node)), source.value, nchw=source.nchw)
        elif op == "PRelu":
            channels = int(source.value.shape[-1])
            slope = self.channel_vector(node, self.graph.constant(node.input[1], node, "slope"), channels, True)
            self.layer(node, L.PReLU(shared_axes=[1, 2], name=self.name(node)), source.value, [slope.reshape(1, 1, channels)])
        elif op in ("Add", "Mul"):
            self.arithmetic(node, op)
        elif op == "Concat":
            parts = [self.input(node, i) for i in range(len(node.input))]
            axis = int(attributes.get("axis", 1))
            if any(p.nchw != parts[0].nchw for p in parts) or axis % 4 != (1 if parts[0].nchw else 3):
                raise self.refuse(node, f"only channel concatenation is supported (axis {axis})")
            self.layer(node, L.Concatenate(axis=-1, name=self.name(node)), [p.value for p in parts], nchw=parts[0].nchw)
        elif op in ("MaxPool", "AveragePool"):
            self.pool(node, attributes, source)
        elif op == "Pad":
            self.pad(node, attributes, source)
        elif op == "Resize":
            self.resize(node, attributes, source)

    def conv(self, node, attributes, source: _Tensor) -> None:
        L = self.keras.layers
        weights = self.graph.conv_weights(node).astype(np.float32)
        out_channels, per_group, kh, kw = weights.shape
        bias = (
            self.graph.constant(node.input[2], node, "bias").astype(np.float32) if len(node.input) > 2 and node.input[2] else None
        )
        group = int(attributes.get("group", 1))
        strides = tuple(attributes.get("strides", [1, 1]))
        dilations = tuple(attributes.get("dilations", [1, 1]))
        padding, explicit = _padding(node, attributes, (kh, kw), strides, dilations)
        x = source.value
        if explicit is not None:
            x = L.ZeroPadding2D(explicit, name=self.name(node, "_pad"))(x)
        in_channels = int(x.shape[-1])
        common = dict(strides=strides, padding=padding, dilation_rate=dilations, use_bias=bias is not None, name=self.name(node))
        if group == 1:
            layer = L.Conv2D(out_channels, (kh, kw), **common)
            kernel = weights.transpose(2, 3, 1, 0)
        elif group == in_channels and per_group == 1:
            layer = L.DepthwiseConv2D((kh, kw), depth_multiplier=out_channels // in_channels, **common)
            kernel = weights.reshape(in_channels, out_channels // in_channels, kh, kw).transpose(2, 3, 0, 1)
        else:
            layer = L.Conv2D(out_channels, (kh, kw), groups=group, **common)
            kernel = weights.transpose(2, 3, 1, 0)
        self.layer(node, layer, x, [kernel] + ([bias] if bias is not None else []))

    def arithmetic(self, node, op: str) -> None:
        L = self.keras.layers
        operands = [self.tensors.get(name) for name in node.input]
        if all(operands):
            tensors = [t for t in operands if t is not None]
            if any(t.nchw != tensors[0].nchw for t in tensors):
                raise self.refuse(node, "its inputs have different layouts")
            kind = L.Add if op == "Add" else L.Multiply
            self.layer(node, kind(name=self.name(node)), [t.value for t in tensors], nchw=tensors[0].nchw)
            return
        tensor_index = 0 if operands[0] is not None else 1
        source = operands[tensor_index]
        if source is None:
            raise self.refuse(node, "has no tensor input")
        value = self.graph.constant(node.input[1 - tensor_index], node, "other operand")
        channels = int(source.value.shape[-1])
        vector = self.channel_vector(node, value, channels, source.nchw)
        ones = np.ones((1, 1, channels, 1), np.float32)
        if op == "Add":  # a per-channel constant: a 1 × 1 depthwise convolution (trainable, exact)
            layer = L.DepthwiseConv2D(1, use_bias=True, name=self.name(node))
            self.layer(node, layer, source.value, [ones, vector], nchw=source.nchw)
        else:
            layer = L.DepthwiseConv2D(1, use_bias=False, name=self.name(node))
            self.layer(node, layer, source.value, [vector.reshape(1, 1, channels, 1)], nchw=source.nchw)

    def pool(self, node, attributes, source: _Tensor) -> None:
        L = self.keras.layers
        kernel = tuple(attributes["kernel_shape"])
        strides = tuple(attributes.get("strides", [1, 1]))
        padding, explicit = _padding(node, attributes, kernel, strides, (1, 1))
        x = source.value
        if explicit is not None:
            if node.op_type == "MaxPool" or not attributes.get("count_include_pad", 0):
                raise self.refuse(
                    node, "asymmetric or strided explicit padding is supported for AveragePool with count_include_pad only"
                )
            x = L.ZeroPadding2D(explicit, name=self.name(node, "_pad"))(x)
        if node.op_type == "AveragePool" and explicit is None and padding == "same" and attributes.get("count_include_pad", 0):
            raise self.refuse(node, "count_include_pad with 'same' padding is not supported")
        kind = L.MaxPooling2D if node.op_type == "MaxPool" else L.AveragePooling2D
        self.layer(node, kind(kernel, strides, padding=padding, name=self.name(node)), x)

    def pad(self, node, attributes, source: _Tensor) -> None:
        mode = attributes.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        pads = list(attributes["pads"]) if "pads" in attributes else list(self.graph.constant(node.input[1], node, "pads"))
        value = float(self.graph.constant(node.input[2], node, "value")) if len(node.input) > 2 and node.input[2] else 0.0
        if mode != "constant" or value != 0.0 or len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)) or min(pads) < 0:
            raise self.refuse(node, "only zero padding of the spatial axes is supported")
        padding = ((int(pads[2]), int(pads[6])), (int(pads[3]), int(pads[7])))
        self.layer(node, self.keras.layers.ZeroPadding2D(padding, name=self.name(node)), source.value)

    def resize(self, node, attributes, source: _Tensor) -> None:
        mode = attributes.get("mode", b"nearest")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        scales = self.graph.constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if scales is None or len(scales) != 4 or scales[0] != 1 or scales[1] != 1:
            raise self.refuse(node, "only constant spatial scales are supported")
        factors = (float(scales[2]), float(scales[3]))
        if mode not in ("nearest", "linear") or any(f != int(f) or f < 1 for f in factors):
            raise self.refuse(
                node, f"only whole-number nearest or linear upsampling is supported (mode {mode}, scales {factors})"
            )
        interpolation = "nearest" if mode == "nearest" else "bilinear"
        layer = self.keras.layers.UpSampling2D(
            (int(factors[0]), int(factors[1])), interpolation=interpolation, name=self.name(node)
        )
        self.layer(node, layer, source.value)


def onnx_to_keras(proto, source: str, input_name: str, input_nchw: bool, heat: Tuple[str, int, int], paf: Tuple[str, int, int]):
    """``(Keras model, StageHeads)``: the network of ``proto`` up to every stage's heads (see the module docstring).

    ``input_name``: the ONNX input; ``input_nchw``: whether it is NCHW (the Keras input is always NHWC, 3 channels);
    ``heat``/``paf``: ``(output tensor, first channel, channel count)`` of the final heatmaps and PAFs."""
    import keras

    graph = _Graph(proto, source)
    heads = find_stage_heads(graph, heat, paf)
    stage_of = _stage_of_nodes(graph, heads)
    converter = _Converter(graph, stage_of, heads)
    inputs = keras.Input(shape=(None, None, 3), name="input_1")
    converter.tensors[input_name] = _Tensor(inputs, input_nchw)
    needed = set(stage_of)
    for node in graph.nodes:
        if node.name in needed:
            converter.convert(node)
    by_name = {node.name: node for node in graph.nodes}
    outputs = []
    for name in (*heads.heatmap, *heads.paf):
        tensor = converter.tensors[by_name[name].output[0]]
        outputs.append(tensor.value)
    model = keras.Model(inputs, outputs, name="imported")
    for layer_name, weights in converter.weights.items():
        model.get_layer(layer_name).set_weights(weights)
    return model, heads
