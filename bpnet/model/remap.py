"""A trained network's heads rebuilt for another skeleton, keeping what it already knows.

Fine-tuning a network on a skeleton that is not its own (TLT's 18-joint order, a subset of parts, a new part):
every stage's head convolutions (the model's outputs ``[heat_1..heat_S, paf_1..paf_S]``) get the target
skeleton's channels. A target channel the network knows by name is copied (kernel and bias): a keypoint's
heatmap, the background, and a limb's PAF pair, negated when the network's limb runs the other way. A channel
it does not know gets fresh filters (normal, standard deviation 0.01, bias 0).

The heads of one stage feed the next (through a concatenation, bpnet's and OpenPose's layout), so every layer
that reads head channels is rebuilt to match: a convolution's input rows and a depthwise convolution's or batch
norm's channels are taken from the channel they came from, with the PAF sign folded back in (so the next stage
computes exactly what it did on the known channels), and are zero for new channels (the next stage starts by
ignoring them and learns to use them). A flipped PAF channel must reach a (depthwise) convolution before any
nonlinearity, as it does in OpenPose-family networks.
"""

import dataclasses
import logging
from typing import Dict, List, Tuple

import numpy as np

from bpnet.errors import BpnetError
from bpnet.model.layer_graph import ELEMENT_WISE, PASS_THROUGH, LayerGraph
from bpnet.skeleton import Skeleton

logger = logging.getLogger(__name__)

FRESH_STDDEV = 0.01


@dataclasses.dataclass(frozen=True)
class ChannelMap:
    """For each channel of a layer's new output: the original channel it comes from (-1: new) and the sign."""

    source: np.ndarray  # (C',) int
    sign: np.ndarray  # (C',) float, ±1

    @classmethod
    def identity(cls, channels: int) -> "ChannelMap":
        return cls(np.arange(channels), np.ones(channels, np.float32))

    @property
    def flipped(self) -> bool:
        return bool((self.sign < 0).any())


@dataclasses.dataclass(frozen=True)
class HeadMapping:
    """How a target skeleton's heatmap and PAF channels come from a source skeleton's."""

    heatmap: ChannelMap
    paf: ChannelMap
    kept_parts: int
    new_parts: int
    kept_limbs: int
    flipped_limbs: int
    new_limbs: int

    def line(self) -> str:
        return (
            f"{self.kept_parts} parts kept, {self.new_parts} new; {self.kept_limbs} limbs kept "
            f"({self.flipped_limbs} reversed), {self.new_limbs} new"
        )


def head_mapping(source: Skeleton, target: Skeleton) -> HeadMapping:
    """Target channel → source channel by keypoint name (background to background) and by limb end names."""
    heat = [source.keypoints.index(name) if name in source.keypoints else -1 for name in target.keypoints]
    heat.append(source.num_keypoints)  # background
    limbs = {(source.keypoints[a], source.keypoints[b]): index for index, (a, b) in enumerate(source.limbs)}
    paf_source: List[int] = []
    paf_sign: List[float] = []
    flipped = new = 0
    for a, b in target.limbs:
        names = (target.keypoints[a], target.keypoints[b])
        if names in limbs:
            limb, sign = limbs[names], 1.0
        elif names[::-1] in limbs:
            limb, sign = limbs[names[::-1]], -1.0
            flipped += 1
        else:
            limb, sign = -1, 1.0
            new += 1
        paf_source += [2 * limb, 2 * limb + 1] if limb >= 0 else [-1, -1]
        paf_sign += [sign, sign]
    kept_parts = sum(index >= 0 for index in heat[:-1])
    return HeadMapping(
        ChannelMap(np.array(heat), np.ones(len(heat), np.float32)),
        ChannelMap(np.array(paf_source), np.array(paf_sign, np.float32)),
        kept_parts,
        target.num_keypoints - kept_parts,
        target.num_limbs - new,
        flipped,
        new,
    )


def _take(values: np.ndarray, channels: ChannelMap, axis: int, fresh) -> np.ndarray:
    """``values`` with ``axis`` rearranged by ``channels`` (signs applied, new channels from ``fresh(shape)``)."""
    moved = np.moveaxis(values, axis, -1)
    out = np.where(channels.source >= 0, moved[..., np.maximum(channels.source, 0)] * channels.sign, 0.0)
    new = channels.source < 0
    if new.any():
        out[..., new] = fresh(out[..., new].shape)
    return np.moveaxis(out.astype(values.dtype), -1, axis)


def remap_heads(model, source: Skeleton, target: Skeleton, seed: int = 0) -> Tuple[object, HeadMapping]:
    """``(model rebuilt for target, the mapping)`` (see the module docstring)."""
    import keras

    mapping = head_mapping(source, target)
    graph = LayerGraph(model)
    stages = len(model.outputs) // 2
    heads: Dict[str, ChannelMap] = {}
    for index, tensor in enumerate(model.outputs):
        layer = tensor._keras_history.operation
        if graph.class_name.get(layer.name) != "Conv2D":
            raise BpnetError(f"layer {layer.name}: a head that is not a convolution cannot be rebuilt for another skeleton")
        heads[layer.name] = mapping.heatmap if index < stages else mapping.paf
    rng = np.random.default_rng(seed)

    def fresh(shape):
        return rng.normal(0.0, FRESH_STDDEV, shape)

    def zeros(shape):
        return np.zeros(shape)

    maps: Dict[str, ChannelMap] = {}
    weights: Dict[str, List[np.ndarray]] = {}
    for name in graph.order:
        kind, inputs = graph.class_name[name], graph.inputs[name]
        layer = graph.layers[name]
        old = [np.asarray(w) for w in layer.get_weights()]
        incoming = maps[inputs[0]] if inputs else None
        if kind == "InputLayer":
            maps[name] = ChannelMap.identity(graph.channels[name])
        elif kind == "Conv2D":
            if getattr(layer, "groups", 1) != 1:
                raise BpnetError(f"layer {name}: grouped convolutions cannot be rebuilt for another skeleton")
            assert incoming is not None
            kernel = _take(old[0], incoming, 2, zeros)  # input rows: zero for new channels, signs folded back
            output = heads.get(name, ChannelMap.identity(graph.channels[name]))
            weights[name] = [_take(kernel, output, 3, fresh)] + [_take(b, output, 0, zeros) for b in old[1:]]
            maps[name] = output
        elif kind == "DepthwiseConv2D":
            assert incoming is not None
            multiplier = layer.depth_multiplier
            if multiplier != 1 and not np.array_equal(incoming.source, np.arange(len(incoming.source))):
                raise BpnetError(f"layer {name}: a depth multiplier above 1 on remapped channels is not supported")
            unsigned = ChannelMap(incoming.source, np.ones_like(incoming.sign))  # the kernel folds the sign back
            weights[name] = [_take(old[0], incoming, 2, zeros)] + [_take(b, unsigned, 0, zeros) for b in old[1:]]
            maps[name] = unsigned
        elif kind == "BatchNormalization":
            assert incoming is not None
            if incoming.flipped:
                raise BpnetError(f"layer {name}: a reversed limb's PAF reaches a batch norm before a convolution")
            defaults = [lambda s: np.ones(s), lambda s: np.zeros(s), lambda s: np.zeros(s), lambda s: np.ones(s)]
            weights[name] = [_take(w, incoming, 0, defaults[i % 4]) for i, w in enumerate(old)]
            maps[name] = incoming
        elif kind in PASS_THROUGH or kind == "ELU":
            assert incoming is not None
            if incoming.flipped and kind not in ("ZeroPadding2D", "Cropping2D", "Dropout", "SpatialDropout2D"):
                raise BpnetError(f"layer {name}: a reversed limb's PAF passes through {kind} before a convolution")
            maps[name] = incoming
        elif kind == "Concatenate":
            offsets = np.cumsum([0] + [graph.channels[i] for i in inputs[:-1]])
            sources = [np.where(maps[i].source >= 0, maps[i].source + offset, -1) for i, offset in zip(inputs, offsets)]
            maps[name] = ChannelMap(np.concatenate(sources), np.concatenate([maps[i].sign for i in inputs]))
        elif kind in ELEMENT_WISE:
            first = maps[inputs[0]]
            if any(
                not np.array_equal(maps[i].source, first.source) or not np.array_equal(maps[i].sign, first.sign) for i in inputs
            ):
                raise BpnetError(f"layer {name}: its inputs carry different channels after the remapping")
            maps[name] = first
        else:
            raise BpnetError(f"layer {name}: {kind} layers are not supported when rebuilding heads")
    config = graph.config
    for entry in config["layers"]:
        entry.pop("build_config", None)
        if entry["name"] in heads:
            entry["config"]["filters"] = int(len(heads[entry["name"]].source))
    rebuilt = keras.Model.from_config(config)
    for name, values in weights.items():
        rebuilt.get_layer(name).set_weights(values)
    return rebuilt, mapping
