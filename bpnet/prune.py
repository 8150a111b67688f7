"""``bpnet prune``: min-weight filter pruning of a bpnet model (reference §1.5, §4.1), MobileNets included.

Every prunable ``Conv2D`` ranks its output filters by the L2 norm of the kernel (``‖W[..., f]‖₂`` over
rows, columns and input channels; biases do not count), normalised per layer (``max``: ``s / max s``;
``L2``: ``s / ‖s‖₂ · len(s)``). A layer keeps the filters whose statistic exceeds the threshold, at least
``min(min_filters, filters)`` of them and never none (a layer without filters would cut the graph; TLT
crashed there), the count rounded up to a multiple of ``granularity`` (at most all), choosing the
largest statistics; threshold 0 keeps every filter. Convolutions whose outputs meet in an element-wise
layer (the attention ``Multiply``, the ``Add`` of an inverted residual, chains of them) form one group
whose statistics are merged first (``union`` max, ``intersection`` min, ``arithmetic_mean``,
``geometric_mean``), so they keep the same channels.

The channels a layer keeps flow downstream: batch norms, depthwise convolutions and activations keep their
input's channels (a depthwise convolution's kernel and bias lose the removed channels, so the pointwise
convolution before it, the depthwise one and the pointwise one after it are pruned as one group), a
``Concatenate`` keeps each input's channels shifted by the input's offset, and a convolution drops the input
channels that no longer exist. Excluded layers and every model output keep all their filters, so the output
channel counts never change. The smaller model is rebuilt from the original's config with the new filter
counts, and the surviving weights are copied.

Cost: multiply-accumulates (MACs) of every ``Conv2D`` (``h·w·kh·kw·c_in/groups·c_out``) and
``DepthwiseConv2D`` (``h·w·kh·kw·c``) at one input size, reported per block. A MAC budget
(``target_macs``, a fraction of the original's; bpnet addition) replaces the threshold: every prunable group
keeps the same fraction of its filters (its strongest, with the same granularity and minimum), and the largest
fraction whose pruned model fits the budget is found by bisection (the MACs never fall as the fraction grows).
A uniform fraction spreads the cut over every layer, where one threshold on per-layer normalised statistics cuts
each layer by however flat its statistics happen to be.

Calibration images (bpnet addition) change two things. The filter statistic becomes the standard deviation of
the filter's activation over the images (after its batch norm and activation), so a filter that is strong in
the kernel but constant on real images ranks low. And a removed channel's mean activation is not lost: the
convolution that read it gets ``Σ_spatial W[..., removed, :] · mean`` added to its bias (or subtracted from the
moving mean of the batch norm that follows it), :mod:`bpnet.prune_compensation`. A removed channel's deviation
from its mean is what is lost; the retraining recovers the rest.
"""

import dataclasses
import difflib
import logging
import os
import re
from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

from bpnet.errors import BpnetError
from bpnet.model.io import keras_layer_name
from bpnet.model.layer_graph import CHANNELWISE_WEIGHTED, ELEMENT_WISE, PASS_THROUGH, LayerGraph

logger = logging.getLogger(__name__)

NORMALIZERS = ("max", "L2")
EQUALIZATION_CRITERIA = ("union", "intersection", "arithmetic_mean", "geometric_mean")
DEFAULT_COST_INPUT_SIZE = (368, 368)
"""(height, width) at which MACs are counted for a model that names no input size of its own."""
_CONVOLUTIONS = ("Conv2D", "DepthwiseConv2D")
_BISECTION_STEPS = 40


@dataclasses.dataclass(frozen=True)
class PruneSettings:
    """TLT's prune flags (``-pth``, ``-n``, ``-eq``, ``-pg``, ``-nf``, ``-el``) and bpnet's MAC budget
    (``target_macs``: the pruned model's MACs as a fraction of the original's; the threshold is then searched)."""

    threshold: float = 0.1
    normalizer: str = "max"
    equalization_criterion: str = "union"
    granularity: int = 8
    min_filters: int = 16
    excluded_layers: Sequence[str] = ()
    target_macs: Optional[float] = None
    keep_stages: Optional[int] = None

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
        if self.target_macs is not None and not 0 < self.target_macs <= 1:
            raise BpnetError(f"target_macs: must be in (0, 1], got {self.target_macs}")
        if self.keep_stages is not None and self.keep_stages < 1:
            raise BpnetError(f"keep_stages: must be at least 1, got {self.keep_stages}")


@dataclasses.dataclass(frozen=True)
class BlockCost:
    """Parameters and MACs of one block (``backbone block N``, ``stage N``, ``other``) before and after."""

    block: str
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int


@dataclasses.dataclass(frozen=True)
class PruneResult:
    """The pruned model, its costs, the threshold used (or, under a MAC budget, the fraction of filters every
    prunable layer kept) and the filters each convolution kept (original indices)."""

    model: object
    params_before: int
    params_after: int
    kept_filters: Dict[str, np.ndarray]
    macs_before: int = 0
    macs_after: int = 0
    threshold: float = 0.0
    cost_input_size: Tuple[int, int] = DEFAULT_COST_INPUT_SIZE
    blocks: Tuple[BlockCost, ...] = ()
    kept_fraction: Optional[float] = None

    @property
    def ratio(self) -> float:
        return self.params_after / self.params_before

    @property
    def macs_ratio(self) -> float:
        return self.macs_after / self.macs_before if self.macs_before else 1.0

    def line(self) -> str:
        height, width = self.cost_input_size
        return (
            f"parameters {self.params_before:,} → {self.params_after:,} (pruned/original {self.ratio:.3f}); "
            f"MACs at {height}×{width} {self.macs_before / 1e9:.3f} G → {self.macs_after / 1e9:.3f} G "
            f"({self.macs_ratio:.3f}); "
            + (
                f"threshold {self.threshold:.4g}"
                if self.kept_fraction is None
                else f"each prunable layer keeps its strongest {self.kept_fraction:.3f} of filters"
            )
        )

    def table(self) -> str:
        """Per-block parameters and MACs, one line per block."""
        rows = [f"{'block':<18} {'parameters':>25} {'GMACs':>22}"]
        for b in self.blocks:
            macs = f"{b.macs_before / 1e9:.3f} → {b.macs_after / 1e9:.3f}"
            rows.append(f"{b.block:<18} {f'{b.params_before:,} → {b.params_after:,}':>25} {macs:>22}")
        return "\n".join(rows)


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
    """Sorted indices of the filters kept (reference §4.1 ``_get_retained_idx``); threshold 0 keeps all
    (TLT's ``>`` would drop filters whose kernel is all zero, and with them their bias)."""
    total = len(stats)
    if threshold <= 0:
        return np.arange(total)
    count = max(int(np.sum(stats > threshold)), min(min_filters, total), 1)
    count = min(total, -(-count // granularity) * granularity)
    strongest = np.argsort(-stats, kind="stable")[:count]
    return np.sort(strongest)


def _groups(graph: LayerGraph, excluded: Set[str]) -> List[Set[str]]:
    """Sets of convolutions that must keep the same filters (outputs meeting element-wise)."""
    parent: Dict[str, str] = {}

    def find(name):
        parent.setdefault(name, name)
        while parent[name] != name:
            name = parent[name]
        return name

    for name in graph.order:
        if graph.class_name[name] not in ELEMENT_WISE:
            continue
        sources = graph.element_sources(name)
        convs = [s for s in sources if s is not None]
        if len(convs) < len(sources):
            excluded.update(convs)  # an input not made by a convolution cannot drop channels
        for conv in convs[1:]:
            parent[find(conv)] = find(convs[0])
    groups: Dict[str, Set[str]] = {}
    for name in list(parent):
        groups.setdefault(find(name), set()).add(name)
    return list(groups.values())


@dataclasses.dataclass
class _Plan:
    """What the filter choice needs, computed once per model: statistics, groups, excluded convolutions."""

    convs: List[str]
    stats: Dict[str, np.ndarray]
    groups: Dict[str, List[str]]
    excluded: Set[str]


def _plan(graph: LayerGraph, settings: PruneSettings, spread: Optional[Dict[str, np.ndarray]] = None) -> _Plan:
    """With ``spread`` (convolution → per-channel standard deviation of its activation on calibration images), that
    is the filter statistic; else the kernel norm."""
    requested = [keras_layer_name(name) for name in settings.excluded_layers]  # TLT's stage1/conv1 → stage1_conv1
    unknown = [name for name in requested if name not in graph.layers]
    if unknown:
        hints = [difflib.get_close_matches(name, list(graph.layers), n=1) for name in unknown]
        suggestion = "; did you mean " + ", ".join(repr(h[0]) for h in hints if h) + "?" if any(hints) else ""
        raise BpnetError(f"excluded_layers: no layer named {', '.join(unknown)} in the model{suggestion}")
    excluded = set(requested) | graph.outputs
    convs = graph.convs
    grouped = {conv: sorted(group) for group in _groups(graph, excluded) for conv in group}
    raw = spread or {name: filter_norms(np.asarray(graph.layers[name].kernel)) for name in convs}
    stats = {name: normalize(raw[name], settings.normalizer) for name in convs}
    return _Plan(convs, stats, {name: grouped.get(name, [name]) for name in convs}, excluded)


def strongest_filters(stats: np.ndarray, fraction: float, granularity: int, min_filters: int) -> np.ndarray:
    """Sorted indices of the strongest ``fraction`` of the filters (at least ``min(min_filters, filters)`` and one,
    rounded up to a multiple of ``granularity``, at most all)."""
    total = len(stats)
    count = max(int(np.ceil(fraction * total - 1e-9)), min(min_filters, total), 1)
    count = min(total, -(-count // granularity) * granularity)
    return np.sort(np.argsort(-stats, kind="stable")[:count])


def _choose_filters(
    graph: LayerGraph, plan: _Plan, settings: PruneSettings, threshold: float, fraction: Optional[float] = None
) -> Dict[str, np.ndarray]:
    """Original indices of the filters each convolution keeps at ``threshold``, or, given a ``fraction``, its
    strongest ``fraction`` of filters."""
    kept: Dict[str, np.ndarray] = {}
    for name in plan.convs:
        if name in kept:
            continue
        members = plan.groups[name]
        if any(member in plan.excluded for member in members):
            chosen = np.arange(graph.channels[name])
        else:
            merged = equalize([plan.stats[m] for m in members], settings.equalization_criterion)
            if fraction is None:
                chosen = retained_filters(merged, threshold, settings.granularity, settings.min_filters)
            else:
                chosen = strongest_filters(merged, fraction, settings.granularity, settings.min_filters)
        for member in members:
            kept[member] = chosen
    return kept


def _propagate(graph: LayerGraph, kept_filters: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Original indices of the output channels every layer keeps."""
    channels: Dict[str, np.ndarray] = {}
    for name in graph.order:
        kind, inputs = graph.class_name[name], graph.inputs[name]
        if kind == "InputLayer":
            channels[name] = np.arange(graph.channels[name])
        elif kind == "Conv2D":
            channels[name] = kept_filters[name]
        elif kind in CHANNELWISE_WEIGHTED or kind in PASS_THROUGH:
            channels[name] = channels[inputs[0]]
        elif kind == "Concatenate":
            axis = graph.layers[name].axis
            if axis not in (-1, 3):
                raise BpnetError(f"layer {name}: only channel concatenation (axis -1) can be pruned")
            offsets = np.cumsum([0] + [graph.channels[i] for i in inputs[:-1]])
            channels[name] = np.concatenate([channels[i] + offset for i, offset in zip(inputs, offsets)])
        elif kind in ELEMENT_WISE:
            first = channels[inputs[0]]
            if any(not np.array_equal(channels[i], first) for i in inputs[1:]):
                raise BpnetError(f"layer {name}: its inputs keep different channels")  # _groups prevents this
            channels[name] = first
        else:
            raise BpnetError(f"layer {name}: {kind} layers are not supported by prune")
    return channels


def _pruned_weights(graph: LayerGraph, name: str, channels: Dict[str, np.ndarray]) -> List[np.ndarray]:
    layer = graph.layers[name]
    weights = [np.asarray(w) for w in layer.get_weights()]
    kind = graph.class_name[name]
    if kind == "Conv2D":
        incoming = channels[graph.inputs[name][0]]
        kernel = weights[0][:, :, incoming, :][..., channels[name]]
        return [kernel] + [w[channels[name]] for w in weights[1:]]
    if kind == "DepthwiseConv2D":  # kernel (kh, kw, channels, 1), bias (channels,)
        return [weights[0][:, :, channels[name], :]] + [w[channels[name]] for w in weights[1:]]
    if kind in ("PReLU",):  # alpha (..., channels)
        return [w[..., channels[name]] for w in weights]
    return [w[channels[name]] for w in weights]


class _CostModel:
    """Each convolution's output area and kernel size at one input size, to count MACs for any kept channels."""

    def __init__(self, model, graph: LayerGraph, input_size: Tuple[int, int]):
        import keras

        self.graph = graph
        self.convs = [name for name in graph.order if graph.class_name[name] in _CONVOLUTIONS]
        probe = keras.Model(model.inputs[0], [graph.layers[name].output for name in self.convs])
        shapes = probe.compute_output_spec(keras.KerasTensor((1, *input_size, 3)))
        self.area = {name: int(s.shape[1]) * int(s.shape[2]) for name, s in zip(self.convs, shapes)}
        self.kernel = {name: int(np.prod(graph.layers[name].kernel_size)) for name in self.convs}

    def macs(self, channels: Dict[str, np.ndarray]) -> Dict[str, int]:
        """Layer name → MACs when every layer keeps ``channels[layer]``."""
        counts = {}
        for name in self.convs:
            per_pixel = self.kernel[name] * len(channels[name])
            if self.graph.class_name[name] == "Conv2D":
                per_pixel *= len(channels[self.graph.inputs[name][0]])
            counts[name] = self.area[name] * per_pixel
        return counts

    def full_channels(self) -> Dict[str, np.ndarray]:
        return {name: np.arange(count) for name, count in self.graph.channels.items()}


def count_macs(model, input_size: Tuple[int, int] = DEFAULT_COST_INPUT_SIZE) -> int:
    """Multiply-accumulates of every convolution of a functional Keras ``model`` for one ``(height, width)`` input
    (see the module docstring)."""
    costs = _CostModel(model, LayerGraph(model), input_size)
    return sum(costs.macs(costs.full_channels()).values())


def _search_fraction(graph: LayerGraph, plan: _Plan, settings: PruneSettings, costs: _CostModel, full: int) -> float:
    """The largest fraction of filters kept in every prunable layer whose pruned model has at most ``target_macs``
    of ``full`` (the original's MACs; bisection, the MACs never fall as the fraction grows)."""
    budget = float(settings.target_macs or 1.0) * full

    def macs_at(fraction: float) -> int:
        return sum(costs.macs(_propagate(graph, _choose_filters(graph, plan, settings, 0.0, fraction))).values())

    if macs_at(0.0) > budget:
        raise BpnetError(
            f"target_macs: {settings.target_macs} cannot be reached: every prunable layer at its minimum "
            f"(min_num_filters {settings.min_filters}, pruning_granularity {settings.granularity}, the outputs and "
            f"excluded layers whole) keeps {macs_at(0.0) / full:.3f} of the MACs"
        )
    low, high = 0.0, 1.0
    if macs_at(high) <= budget:
        return high
    for _ in range(_BISECTION_STEPS):
        middle = (low + high) / 2
        low, high = (middle, high) if macs_at(middle) <= budget else (low, middle)
    return low


_STAGE = re.compile(r"^stage(\d+)_")


def block_names(model, graph: LayerGraph) -> Dict[str, str]:
    """Layer name → block: ``backbone block N`` (:func:`bpnet.train.freeze.backbone_blocks`), ``stage N`` (layers
    named ``stageN_…``; the final ``heatmap_out``/``paf_out`` heads belong to the last stage), or ``other``."""
    from bpnet.train.freeze import backbone_blocks

    backbone = backbone_blocks(model)
    stages = [int(m.group(1)) for m in map(_STAGE.match, graph.order) if m]
    names = {}
    for name in graph.order:
        match = _STAGE.match(name)
        if match:
            names[name] = f"stage {int(match.group(1))}"
        elif name in backbone:
            names[name] = f"backbone block {backbone[name]}"
        elif name in ("heatmap_out", "paf_out") and stages:
            names[name] = f"stage {max(stages)}"
        else:
            names[name] = "other"
    return names


def _block_costs(
    model, graph: LayerGraph, pruned, macs_before: Dict[str, int], macs_after: Dict[str, int]
) -> Tuple[BlockCost, ...]:
    """Parameters and MACs per block of ``model`` (``graph``, before) and ``pruned`` (after; a block it dropped
    has 0)."""
    totals: Dict[str, List[int]] = {}
    sides = ((model, graph, macs_before), (pruned, LayerGraph(pruned), macs_after))
    for column, (network, layers, macs) in enumerate(sides):
        blocks = block_names(network, layers)
        for name in layers.order:
            if layers.layers[name].weights:
                entry = totals.setdefault(blocks[name], [0, 0, 0, 0])
                entry[column] += layers.layers[name].count_params()
                entry[2 + column] += macs.get(name, 0)

    def order(block: str):
        number = int(block.rsplit(" ", 1)[-1]) if block[-1].isdigit() else 0
        return (0 if block.startswith("backbone") else 1 if block.startswith("stage") else 2, number)

    return tuple(BlockCost(block, *totals[block]) for block in sorted(totals, key=order))


def prune_model(
    model,
    settings: PruneSettings = PruneSettings(),
    cost_input_size: Tuple[int, int] = DEFAULT_COST_INPUT_SIZE,
    calibration: Optional[np.ndarray] = None,
) -> PruneResult:
    """The pruned copy of a functional Keras ``model`` (see the module docstring); MACs are counted for a
    ``cost_input_size`` (height, width) input. With ``calibration`` (``(N, H, W, 3)`` model inputs), the removed
    channels' mean contributions are folded into the biases that read them (:mod:`bpnet.prune_compensation`). With
    ``settings.keep_stages``, the stages after it go first (:mod:`bpnet.prune_stages`) and the filters are chosen
    in what remains, the MAC budget still counted against ``model``."""
    import keras

    from bpnet.prune_stages import keep_first_stages

    original, original_graph = model, LayerGraph(model)
    original_costs = _CostModel(original, original_graph, cost_input_size)
    macs_before = original_costs.macs(original_costs.full_channels())
    full = sum(macs_before.values())
    if settings.keep_stages is not None:
        model = keep_first_stages(model, settings.keep_stages)
    graph = original_graph if model is original else LayerGraph(model)
    measured = _measure(model, graph, calibration) if calibration is not None else None
    plan = _plan(graph, settings, {name: measured[graph.activation(name)][1] for name in graph.convs} if measured else None)
    costs = original_costs if model is original else _CostModel(model, graph, cost_input_size)
    fraction = None if settings.target_macs is None else _search_fraction(graph, plan, settings, costs, full)
    threshold = settings.threshold if fraction is None else 0.0
    kept_filters = _choose_filters(graph, plan, settings, threshold, fraction)
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
    if measured is not None and calibration is not None:
        _compensate(model, pruned, graph, kept_filters, channels, measured)
        _reconstruct(model, pruned, graph, kept_filters, channels, calibration)
    for name, kept in kept_filters.items():
        logger.debug("%s: %d of %d filters kept", name, len(kept), graph.channels[name])
    macs_after = costs.macs(channels)
    return PruneResult(
        pruned,
        original.count_params(),
        pruned.count_params(),
        kept_filters,
        full,
        sum(macs_after.values()),
        threshold,
        (int(cost_input_size[0]), int(cost_input_size[1])),
        _block_costs(original, original_graph, pruned, macs_before, macs_after),
        fraction,
    )


def _measure(model, graph: LayerGraph, calibration: np.ndarray) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """Mean and spread of every convolution's activation and input on the calibration images."""
    from bpnet.prune_compensation import channel_statistics

    names = [graph.activation(name) for name in graph.convs] + [graph.inputs[name][0] for name in graph.convs]
    return channel_statistics(model, names, calibration)


def _compensate(model, pruned, graph: LayerGraph, kept_filters, channels, measured) -> None:
    from bpnet.prune_compensation import compensate

    removed = {}
    for name in graph.convs:
        source = graph.inputs[name][0]
        dropped = np.setdiff1d(np.arange(graph.channels[source]), channels[source])
        if len(dropped):
            removed[name] = dropped
    norms = {graph.inputs[n][0]: n for n in graph.order if graph.class_name[n] == "BatchNormalization"}
    means = {name: measured[graph.inputs[name][0]][0] for name in removed}
    count = compensate(model, pruned, kept_filters, removed, norms, means)
    logger.info("Mean-activation compensation: %d convolutions lost input channels, %d compensated", len(removed), count)


def _reconstruct(model, pruned, graph: LayerGraph, kept_filters, channels, calibration: np.ndarray) -> None:
    """Refit every 1×1 convolution whose input the pruning changed (anything upstream lost channels)."""
    from bpnet.prune_compensation import reconstruct, reconstructable

    changed: Dict[str, bool] = {}
    for name in graph.order:
        changed[name] = len(channels[name]) < graph.channels[name] or any(changed[s] for s in graph.inputs[name])
    refit = {name for name in graph.convs if changed[graph.inputs[name][0]] and reconstructable(pruned.get_layer(name))}
    if not refit:
        return
    errors = reconstruct(model, pruned, graph.order, graph.inputs, refit, kept_filters, calibration)
    logger.info(
        "Reconstruction: %d convolutions refitted to the original's outputs; relative error median %.3f, worst %.3f (%s)",
        len(errors),
        float(np.median(list(errors.values()))),
        max(errors.values()),
        max(errors, key=lambda name: errors[name]),
    )


def model_input_size(extras: Dict) -> Tuple[int, int]:
    """(height, width) a model is run at: its ``inference_defaults.input_shape`` when it names one."""
    shape = (extras.get("inference_defaults") or {}).get("input_shape")
    return (int(shape[0]), int(shape[1])) if shape else DEFAULT_COST_INPUT_SIZE


def prune_file(
    model_path: str,
    output_path: str,
    settings: PruneSettings,
    results_dir: Optional[str] = None,
    cost_input_size: Optional[Tuple[int, int]] = None,
    calibration_images: Sequence[str] = (),
) -> PruneResult:
    """Prune a saved model and save the result with the original's metadata (skeleton, normalisation, an import's
    inference defaults); with ``results_dir``, TAO-style ``status.json`` lines go there. MACs are counted at
    ``cost_input_size``, by default the model's own input size (:func:`model_input_size`)."""
    from bpnet.files import remove_stale_temporaries
    from bpnet.model.io import load_model, model_extras, save_model
    from bpnet.prune_compensation import calibration_batch
    from bpnet.status import task_status

    with task_status(results_dir, f"Pruning {model_path}") as status:
        model, info = load_model(model_path)
        if info is None:
            raise BpnetError(f"{model_path}: no bpnet metadata (skeleton, normalisation); prune a model saved by bpnet")
        extras = model_extras(model_path)
        size = cost_input_size or model_input_size(extras)
        calibration = calibration_batch(calibration_images, info, size) if calibration_images else None
        result = prune_model(model, settings, size, calibration)
        remove_stale_temporaries(os.path.dirname(os.path.abspath(output_path)))
        save_model(result.model, output_path, info, extras)
        status.write(
            "SUCCESS",
            f"Pruned model saved to {output_path}",
            kpi={
                "params_before": result.params_before,
                "params_after": result.params_after,
                "ratio": result.ratio,
                "macs_before": result.macs_before,
                "macs_after": result.macs_after,
                "macs_ratio": result.macs_ratio,
                "threshold": result.threshold,
                "kept_fraction": result.kept_fraction,
            },
        )
    return result


def output_model_path(path: str) -> str:
    """TLT appends ``.hdf5`` when the suffix is missing; bpnet appends ``.keras`` (the Keras 3 format)."""
    return path if path.endswith((".keras", ".h5", ".hdf5")) else path + ".keras"
