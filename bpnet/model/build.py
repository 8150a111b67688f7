"""The bpnet models in Keras 3: VGG19 stride-8 backbone + multistage heatmap/PAF heads (reference §3.8).

Layer names are TLT's with ``/`` written as ``_`` (Keras 3 forbids ``/`` in names): ``block_1a_conv_1``,
``channel_reduction_conv``, ``stage1_paf_branch_out``, ``stage2_conv1``, ``heatmap_out``, ``paf_out``.
They key pretrained weights, learning-rate multipliers, pruning exclusions and export outputs.

Input ``input_1``: ``(N, H, W, 3)`` float32 normalised RGB, any H and W. Outputs (stride 8, ``same``
padding, so ``ceil(H / 8) × ceil(W / 8)``): ``[heat_1, …, heat_S, paf_1, …, paf_S]`` with ``K + 1``
heatmap and ``2L`` PAF channels from the skeleton.
"""

from typing import List, Optional, Tuple, Union

import keras
from keras import layers

from bpnet.skeleton import Skeleton, check_channel_counts
from bpnet.specs import BpNetLiteModelSpec, BpNetModelSpec

ModelSpec = Union[BpNetLiteModelSpec, BpNetModelSpec]

VGG_BLOCKS: Tuple[Tuple[int, int], ...] = ((2, 64), (2, 128), (4, 256), (2, 512))
"""(convolutions, filters) of VGG19 blocks 1–4 up to conv4_2; blocks 2–4 start with a stride-2 conv."""
BACKBONE_TOP_FILTERS = 256  # block 6: OpenPose's conv4_3_CPM analogue
REDUCTION_FILTERS = 128
STAGE_FILTERS = 128
LITE_STAGE1_SPLIT_FILTERS = 512
STAGE_T_SPLIT_FILTERS = 128


def _regularizer(kind: str, factor: float) -> Optional[keras.regularizers.Regularizer]:
    if factor == 0:
        return None
    if kind == "l1":
        return keras.regularizers.L1(factor)
    if kind == "l2":
        return keras.regularizers.L2(factor)
    return keras.regularizers.L1L2(l1=factor, l2=factor)


class _ConvFactory:
    """Conv2D layers with the spec's regularisers, initialiser and bias settings."""

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.width_multiplier = spec.width_multiplier
        self.xavier = spec.kernel_initializer == "xavier"

    def kernel_initializer(self):
        """A new initializer per layer: one unseeded Keras 3 initializer reused gives every same-shaped
        kernel identical values (the PAF and heatmap branches would start as copies)."""
        return "glorot_uniform" if self.xavier else keras.initializers.RandomNormal(stddev=0.01)

    def filters(self, count: int) -> int:
        return max(1, int(round(count * self.width_multiplier)))

    def __call__(
        self,
        name: str,
        filters: int,
        kernel: int,
        activation: Optional[str] = "relu",
        strides: int = 1,
        backbone: bool = False,
        scale: bool = True,
    ) -> layers.Conv2D:
        spec = self.spec
        return layers.Conv2D(
            self.filters(filters) if scale else filters,
            kernel,
            strides=strides,
            padding="same",
            name=name,
            activation=None if backbone else activation,
            use_bias=spec.backbone_attributes.use_bias if backbone else spec.use_bias,
            kernel_initializer="glorot_uniform" if backbone else self.kernel_initializer(),
            bias_initializer="zeros",
            kernel_regularizer=_regularizer(spec.regularization_type, spec.kernel_regularization_factor),
            bias_regularizer=_regularizer(spec.regularization_type, spec.bias_regularization_factor),
        )


def vgg_backbone(x, conv: _ConvFactory, sync_batch_norm: bool = False):
    """VGG19 up to conv4_2 (stride-2 convs instead of pools, batch norm), block 6, channel reduction."""
    letters = "abcd"
    plan = [(block + 1, count, filters) for block, (count, filters) in enumerate(VGG_BLOCKS)] + [(6, 1, BACKBONE_TOP_FILTERS)]
    for block, count, filters in plan:
        for i in range(count):
            prefix = f"block_{block}{letters[i]}"
            strides = 2 if i == 0 and block in (2, 3, 4) else 1
            x = conv(f"{prefix}_conv_1", filters, 3, strides=strides, backbone=True)(x)
            x = layers.BatchNormalization(name=f"{prefix}_bn_1", synchronized=sync_batch_norm)(x)
            x = layers.Activation("relu", name=f"{prefix}_relu")(x)
    return conv("channel_reduction_conv", REDUCTION_FILTERS, 3)(x)


def _attention(x, conv: _ConvFactory, stage: int, branch: str, activation: str):
    attention = conv(f"stage{stage}_{branch}_attention_conv", STAGE_FILTERS, 3, activation=activation)(x)
    return layers.Multiply(name=f"stage{stage}_{branch}_attention_mult")([x, attention])


def _output_names(stage: int, last: bool) -> Tuple[str, str]:
    if last:
        return "heatmap_out", "paf_out"
    return f"stage{stage}_heat_branch_out", f"stage{stage}_paf_branch_out"


def lite_heads(features, conv: _ConvFactory, spec: BpNetLiteModelSpec, heat_channels: int, paf_channels: int):
    """BpNetLiteModel: one shared trunk per stage, split into heatmap and PAF outputs."""
    heats, pafs = [], []
    x = features
    for i, kernel in enumerate(spec.stage1_kernel_sizes):
        x = conv(f"stage1_conv{i + 1}", STAGE_FILTERS, kernel)(x)
    n1 = len(spec.stage1_kernel_sizes) + 1
    heat_name, paf_name = _output_names(1, spec.stages == 1)
    paf = conv(f"stage1_paf_conv{n1}", LITE_STAGE1_SPLIT_FILTERS, 1)(x)
    pafs.append(conv(paf_name, paf_channels, 1, activation=None, scale=False)(paf))
    heat = conv(f"stage1_cmap_conv{n1}", LITE_STAGE1_SPLIT_FILTERS, 1)(x)
    heats.append(conv(heat_name, heat_channels, 1, activation=None, scale=False)(heat))
    nt = len(spec.stageT_kernel_sizes) + 1
    for stage in range(2, spec.stages + 1):
        x = layers.Concatenate(axis=-1, name=f"stage{stage}_concat")([features, heats[-1], pafs[-1]])
        for i, kernel in enumerate(spec.stageT_kernel_sizes):
            x = conv(f"stage{stage}_conv{i + 1}", STAGE_FILTERS, kernel)(x)
        paf = conv(f"stage{stage}_paf_conv{nt}", STAGE_T_SPLIT_FILTERS, 1)(x)
        heat = conv(f"stage{stage}_cmap_conv{nt}", STAGE_T_SPLIT_FILTERS, 1)(x)
        if spec.use_self_attention:
            paf = _attention(paf, conv, stage, "paf", "tanh")
            heat = _attention(heat, conv, stage, "cmap", "sigmoid")
        heat_name, paf_name = _output_names(stage, stage == spec.stages)
        pafs.append(conv(paf_name, paf_channels, 1, activation=None, scale=False)(paf))
        heats.append(conv(heat_name, heat_channels, 1, activation=None, scale=False)(heat))
    return heats, pafs


def two_branch_heads(features, conv: _ConvFactory, spec: BpNetModelSpec, heat_channels: int, paf_channels: int):
    """BpNetModel: separate heatmap and PAF branches in every stage (OpenPose)."""
    heats: List = []
    pafs: List = []
    branches = (("paf", "paf_branch", paf_channels, "tanh", pafs), ("cmap", "heat_branch", heat_channels, "sigmoid", heats))
    for stage in range(1, spec.stages + 1):
        heat_name, paf_name = _output_names(stage, stage == spec.stages)
        if stage == 1:
            inputs = features
        else:
            inputs = layers.Concatenate(axis=-1, name=f"stage{stage}_concat")([features, heats[-1], pafs[-1]])
        new = {}
        for short, branch, channels, activation, _ in branches:
            x = inputs
            if stage == 1:
                for i in range(3):
                    x = conv(f"stage1_{branch}_conv{i + 1}", STAGE_FILTERS, 3)(x)
                x = conv(f"stage1_{branch}_conv4", LITE_STAGE1_SPLIT_FILTERS, 1)(x)
            else:
                for i in range(5):
                    x = conv(f"stage{stage}_{branch}_conv{i + 1}", STAGE_FILTERS, 7)(x)
                x = conv(f"stage{stage}_{branch}_conv6", STAGE_T_SPLIT_FILTERS, 1)(x)
                if spec.use_self_attention:
                    x = _attention(x, conv, stage, short, activation)
            name = paf_name if short == "paf" else heat_name
            new[short] = conv(name, channels, 1, activation=None, scale=False)(x)
        pafs.append(new["paf"])
        heats.append(new["cmap"])
    return heats, pafs


def build_model(
    spec: ModelSpec,
    skeleton: Skeleton,
    input_shape: Tuple[Optional[int], Optional[int]] = (None, None),
    sync_batch_norm: bool = False,
) -> keras.Model:
    """The Keras model for a model spec and skeleton (layout in the module docstring).

    The spec's ``width_multiplier`` scales every hidden layer's filters (not the outputs).
    ``sync_batch_norm``: batch statistics over all replicas of a distributed step (the trainer sets
    it when training on several devices, so N devices × B images train like one device × N·B).
    """
    check_channel_counts(skeleton, spec.heat_channels, spec.paf_channels)
    conv = _ConvFactory(spec)
    inputs = keras.Input(shape=(*input_shape, 3), name="input_1")
    features = vgg_backbone(inputs, conv, sync_batch_norm)
    if isinstance(spec, BpNetLiteModelSpec):
        heats, pafs = lite_heads(features, conv, spec, skeleton.num_heatmap_channels, skeleton.num_paf_channels)
    else:
        heats, pafs = two_branch_heads(features, conv, spec, skeleton.num_heatmap_channels, skeleton.num_paf_channels)
    return keras.Model(inputs, heats + pafs, name=spec.CLASS_NAME)


def stage_outputs(outputs: List) -> Tuple[List, List]:
    """Split a model's outputs ``[heat_1..heat_S, paf_1..paf_S]`` into (heatmaps, pafs) per stage."""
    stages = len(outputs) // 2
    return list(outputs[:stages]), list(outputs[stages:])
