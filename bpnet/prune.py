"""``bpnet prune``: min-weight filter pruning of a bpnet model (reference §1.5, §4.1).

Every prunable ``Conv2D`` ranks its output filters by the L2 norm of the kernel (``‖W[..., f]‖₂`` over
rows, columns and input channels; biases do not count), normalised per layer (``max``: ``s / max s``;
``L2``: ``s / ‖s‖₂ · len(s)``). A layer keeps the filters whose statistic exceeds the threshold, at least
``min(min_filters, filters)`` of them and never none (a layer without filters would cut the graph; TLT
crashed there), the count rounded up to a multiple of ``granularity`` (at most all), choosing the
largest statistics. Convolutions whose outputs meet in an element-wise layer (the
attention ``Multiply``) form one group whose statistics are merged first (``union`` max,
``intersection`` min, ``arithmetic_mean``, ``geometric_mean``), so they keep the same channels.

The channels a layer keeps flow downstream: batch norms and activations keep their input's channels,
a ``Concatenate`` keeps each input's channels shifted by the input's offset, and a convolution drops the
input channels that no longer exist. Excluded layers and every model output keep all their filters, so
the output channel counts never change. The smaller model is rebuilt from the original's config with
the new filter counts, and the surviving weights are copied.
"""

import dataclasses
import difflib
import logging
import os
from typing import Dict, List, Optional, Sequence, Set

import numpy as np

from bpnet.errors import BpnetError
from bpnet.model.io import keras_layer_name

logger = logging.getLogger(__name__)

NORMALIZERS = ("max", "L2")
EQUALIZATION_CRITERIA = ("union", "intersection", "arithmetic_mean", "geometric_mean")
_CHANNELWISE_WEIGHTED = ("BatchNormalization",)
_PASS_THROUGH = (
    "Activation",
    "ReLU",
    "Dropout",
    "SpatialDropout2D",
    "MaxPooling2D",
    "AveragePooling2D",
    "UpSampling2D",
    "ZeroPadding2D",
    "Cropping2D",
    "LeakyReLU",
)
_ELEMENT_WISE = ("Multiply", "Add", "Subtract", "Maximum", "Minimum", "Average")


@dataclasses.dataclass(frozen=True)
class PruneSettings:
    """TLT's prune flags: ``-pth``, ``-n``, ``-eq``, ``-pg``, ``-nf``, ``-el``."""

    threshold: float = 0.1
    normalizer: str = "max"
    equalization_criterion: str = "union"
    granularity: int = 8
    min_filters: int = 16
    excluded_layers: Sequence[str] = ()

    def __post_init__(self):
        if self.normalizer not in NORMALIZERS:
            raise BpnetError(f"normalizer: {self.normalizer!r} is not one of {', '.join(NORMALIZERS)}")
        if self.equalization_criterion not in EQUALIZATION_CRITERIA:
            raise BpnetError(
                f"equalization_criterion: {self.equalization_criterion!r} is not one of {', '.join(EQUALIZATION_CRITERIA)}"
            )
        if self.granularity < 1:
            raise BpnetError(f"pruning_granularity: must be at least 1, got {self.granularity}")
        if self.min_filters < 0:
            raise BpnetError(f"min_num_filters: must not be negative, got {self.min_filters}")
        if self.threshold < 0:
            raise BpnetError(f"pruning_threshold: must not be negative, got {self.threshold}")


@dataclasses.dataclass(frozen=True)
class PruneResult:
    """The pruned model, its parameter counts, and the filters each convolution kept (original indices)."""

    model: object
    params_before: int
    params_after: int
    kept_filters: Dict[str, np.ndarray]

    @property
    def ratio(self) -> float:
        return self.params_after / self.params_before

    def line(self) -> str:
        return f"parameters {self.params_before:,} → {self.params_after:,} (pruned/original {self.ratio:.3f})"


def filter_norms(kernel: np.ndarray) -> np.ndarray:
    """``(filters,)`` L2 norm of each output filter of a ``(kh, kw, in, out)`` kernel."""
    return np.sqrt(np.sum(np.square(kernel.reshape(-1, kernel.shape[-1]).astype(np.float64)), axis=0))


def normalize(stats: np.ndarray, normalizer: str) -> np.ndarray:
    """Layer-wise normalisation of filter statistics (``max`` or ``L2``)."""
    if normalizer == "max":
        top = stats.max()
        return stats / top if top > 0 else stats
    norm = np.linalg.norm(stats)
    return stats / norm * len(stats) if norm > 0 else stats


def equalize(stats: Sequence[np.ndarray], criterion: str) -> np.ndarray:
    """Merge the statistics of convolutions whose outputs meet element-wise."""
    stacked = np.stack(stats)
    if criterion == "union":
        return stacked.max(axis=0)
    if criterion == "intersection":
        return stacked.min(axis=0)
    if criterion == "arithmetic_mean":
        return stacked.mean(axis=0)
    return np.exp(np.mean(np.log(np.maximum(stacked, np.finfo(np.float64).tiny)), axis=0))


def retained_filters(stats: np.ndarray, threshold: float, granularity: int, min_filters: int) -> np.ndarray:
    """Sorted indices of the filters kept (reference §4.1 ``_get_retained_idx``)."""
    total = len(stats)
    count = max(int(np.sum(stats > threshold)), min(min_filters, total), 1)
    count = min(total, -(-count // granularity) * granularity)
    strongest = np.argsort(-stats, kind="stable")[:count]
    return np.sort(strongest)


def _inbound_layer_names(layer_config: Dict) -> List[str]:
    """Names of the layers feeding a functional-model layer config, in argument order."""
    names: List[str] = []

    def visit(value):
        if isinstance(value, dict):
            history = value.get("config", {}).get("keras_history") if value.get("class_name") == "__keras_tensor__" else None
            if history is not None:
                names.append(history[0])
                return
            for item in value.values():
                visit(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)

    nodes = layer_config.get("inbound_nodes", [])
    if len(nodes) > 1:
        raise BpnetError(f"layer {layer_config['name']}: shared layers (called more than once) cannot be pruned")
    for node in nodes:
        visit(node.get("args", []))
    return names


class _Graph:
    """The functional model's layers in order, with their inputs and output channel counts."""

    def __init__(self, model):
        config = model.get_config()
        self.config = config
        self.layers = {layer.name: layer for layer in model.layers}
        self.order = [entry["name"] for entry in config["layers"]]
        self.class_name = {entry["name"]: entry["class_name"] for entry in config["layers"]}
        self.inputs = {entry["name"]: _inbound_layer_names(entry) for entry in config["layers"]}
        self.outputs = {entry[0] for entry in _as_list(config["output_layers"])}
        self.channels = {name: int(self.layers[name].output.shape[-1]) for name in self.order}
        for name in self.order:
            kind = self.class_name[name]
            if kind in ("Functional", "Model", "Sequential"):
                raise BpnetError(f"layer {name}: nested models cannot be pruned; prune the inner model")

    def source_conv(self, name: str) -> Optional[str]:
        """The convolution whose filters decide ``name``'s channels, through channel-wise layers; None if none."""
        while True:
            kind = self.class_name[name]
            if kind == "Conv2D":
                return name
            if kind in _CHANNELWISE_WEIGHTED or kind in _PASS_THROUGH:
                name = self.inputs[name][0]
                continue
            return None


def _as_list(entries) -> List:
    """``output_layers`` is one ``[name, node, index]`` or a list of them."""
    if entries and isinstance(entries[0], str):
        return [entries]
    return list(entries)


def _groups(graph: _Graph, excluded: Set[str]) -> List[Set[str]]:
    """Sets of convolutions that must keep the same filters (outputs meeting element-wise)."""
    parent: Dict[str, str] = {}

    def find(name):
        parent.setdefault(name, name)
        while parent[name] != name:
            name = parent[name]
        return name

    for name in graph.order:
        if graph.class_name[name] not in _ELEMENT_WISE:
            continue
        sources = [graph.source_conv(source) for source in graph.inputs[name]]
        convs = [s for s in sources if s is not None]
        if len(convs) < len(sources):
            excluded.update(convs)  # an input not made by a convolution cannot drop channels
        for conv in convs[1:]:
            parent[find(conv)] = find(convs[0])
    groups: Dict[str, Set[str]] = {}
    for name in list(parent):
        groups.setdefault(find(name), set()).add(name)
    return list(groups.values())


def _choose_filters(graph: _Graph, settings: PruneSettings) -> Dict[str, np.ndarray]:
    """Original indices of the filters each convolution keeps."""
    requested = [keras_layer_name(name) for name in settings.excluded_layers]  # TLT's stage1/conv1 → stage1_conv1
    unknown = [name for name in requested if name not in graph.layers]
    if unknown:
        hints = [difflib.get_close_matches(name, list(graph.layers), n=1) for name in unknown]
        suggestion = "; did you mean " + ", ".join(repr(h[0]) for h in hints if h) + "?" if any(hints) else ""
        raise BpnetError(f"excluded_layers: no layer named {', '.join(unknown)} in the model{suggestion}")
    excluded = set(requested) | graph.outputs
    convs = [name for name in graph.order if graph.class_name[name] == "Conv2D"]
    groups = _groups(graph, excluded)
    grouped = {conv: group for group in groups for conv in group}
    stats = {name: normalize(filter_norms(np.asarray(graph.layers[name].kernel)), settings.normalizer) for name in convs}
    kept: Dict[str, np.ndarray] = {}
    for name in convs:
        if name in kept:
            continue
        members = sorted(grouped.get(name, {name}))
        if any(member in excluded for member in members):
            chosen = np.arange(graph.channels[name])
        else:
            merged = equalize([stats[m] for m in members], settings.equalization_criterion)
            chosen = retained_filters(merged, settings.threshold, settings.granularity, settings.min_filters)
        for member in members:
            kept[member] = chosen
    return kept


def _propagate(graph: _Graph, kept_filters: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Original indices of the output channels every layer keeps."""
    channels: Dict[str, np.ndarray] = {}
    for name in graph.order:
        kind, inputs = graph.class_name[name], graph.inputs[name]
        if kind == "InputLayer":
            channels[name] = np.arange(graph.channels[name])
        elif kind == "Conv2D":
            channels[name] = kept_filters[name]
        elif kind in _CHANNELWISE_WEIGHTED or kind in _PASS_THROUGH:
            channels[name] = channels[inputs[0]]
        elif kind == "Concatenate":
            axis = graph.layers[name].axis
            if axis not in (-1, 3):
                raise BpnetError(f"layer {name}: only channel concatenation (axis -1) can be pruned")
            offsets = np.cumsum([0] + [graph.channels[i] for i in inputs[:-1]])
            channels[name] = np.concatenate([channels[i] + offset for i, offset in zip(inputs, offsets)])
        elif kind in _ELEMENT_WISE:
            first = channels[inputs[0]]
            if any(not np.array_equal(channels[i], first) for i in inputs[1:]):
                raise BpnetError(f"layer {name}: its inputs keep different channels")  # _groups prevents this
            channels[name] = first
        else:
            raise BpnetError(f"layer {name}: {kind} layers are not supported by prune")
    return channels


def _pruned_weights(graph: _Graph, name: str, channels: Dict[str, np.ndarray]) -> List[np.ndarray]:
    layer = graph.layers[name]
    weights = [np.asarray(w) for w in layer.get_weights()]
    kind = graph.class_name[name]
    if kind == "Conv2D":
        incoming = channels[graph.inputs[name][0]]
        kernel = weights[0][:, :, incoming, :][..., channels[name]]
        return [kernel] + [w[channels[name]] for w in weights[1:]]
    return [w[channels[name]] for w in weights]


def prune_model(model, settings: PruneSettings = PruneSettings()) -> PruneResult:
    """The pruned copy of a functional Keras ``model`` (see the module docstring)."""
    import keras

    graph = _Graph(model)
    kept_filters = _choose_filters(graph, settings)
    channels = _propagate(graph, kept_filters)
    config = graph.config
    for entry in config["layers"]:
        entry.pop("build_config", None)  # input shapes of the original; layers are rebuilt from the new graph
        if entry["class_name"] == "Conv2D":
            entry["config"]["filters"] = int(len(kept_filters[entry["name"]]))
    pruned = keras.Model.from_config(config)
    for name in graph.order:
        if graph.layers[name].weights:
            pruned.get_layer(name).set_weights(_pruned_weights(graph, name, channels))
    for name, kept in kept_filters.items():
        logger.debug("%s: %d of %d filters kept", name, len(kept), graph.channels[name])
    return PruneResult(pruned, model.count_params(), pruned.count_params(), kept_filters)


def prune_file(model_path: str, output_path: str, settings: PruneSettings, results_dir: Optional[str] = None) -> PruneResult:
    """Prune a saved model and save the result with the original's skeleton and normalisation; with
    ``results_dir``, TAO-style ``status.json`` lines go there."""
    from bpnet.files import remove_stale_temporaries
    from bpnet.model.io import load_model, save_model
    from bpnet.status import task_status

    with task_status(results_dir, f"Pruning {model_path}") as status:
        model, info = load_model(model_path)
        if info is None:
            raise BpnetError(f"{model_path}: no bpnet metadata (skeleton, normalisation); prune a model saved by bpnet")
        result = prune_model(model, settings)
        remove_stale_temporaries(os.path.dirname(os.path.abspath(output_path)))
        save_model(result.model, output_path, info)
        status.write(
            "SUCCESS",
            f"Pruned model saved to {output_path}",
            kpi={"params_before": result.params_before, "params_after": result.params_after, "ratio": result.ratio},
        )
    return result


def output_model_path(path: str) -> str:
    """TLT appends ``.hdf5`` when the suffix is missing; bpnet appends ``.keras`` (the Keras 3 format)."""
    return path if path.endswith((".keras", ".h5", ".hdf5")) else path + ".keras"
