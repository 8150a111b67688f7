"""A trained bpnet model → ONNX (reference §5.1): the last stage's ``[paf, heatmap]``, bpnet metadata inside.

The ONNX graph has TLT's tensor names, so TLT-era ``trtexec`` commands and DeepStream configs work:
input ``input_1:0`` ``(N, H, W, 3)`` float32 normalised RGB (N, H and W dynamic unless the batch is
fixed); outputs ``paf_out/BiasAdd:0`` ``(N, ⌈H/8⌉, ⌈W/8⌉, 2L)`` and ``heatmap_out/BiasAdd:0``
``(N, ⌈H/8⌉, ⌈W/8⌉, K + 1)``, in that order. ``sdk_compatible`` adds TLT's PAF upsampling for
DeepStream: a ``Conv2DTranspose`` with a nearest-neighbour kernel, output ``conv2d_transpose_1/BiasAdd:0``
at stride ``8 / upsample_ratio``.

The metadata entry ``bpnet`` (JSON) holds the :class:`~bpnet.model.io.ModelInfo` (skeleton, normalisation,
stride, layout) plus the output names and strides, so ``bpnet evaluate/inference -m model.onnx`` need
no train spec.
"""

import dataclasses
from typing import Any, Dict, Optional

import numpy as np

from bpnet.errors import BpnetError
from bpnet.model.io import ModelInfo, set_onnx_metadata

INPUT_NAME = "input_1:0"
PAF_OUTPUT = "paf_out/BiasAdd:0"
HEATMAP_OUTPUT = "heatmap_out/BiasAdd:0"
SDK_PAF_OUTPUT = "conv2d_transpose_1/BiasAdd:0"
DEFAULT_OPSET = 17


@dataclasses.dataclass(frozen=True)
class OnnxSettings:
    """``static_batch_size`` ≤ 0: dynamic batch. ``sdk_compatible``/``upsample_ratio``: TLT's deployable model."""

    static_batch_size: int = -1
    sdk_compatible: bool = False
    upsample_ratio: int = 4
    opset: int = DEFAULT_OPSET


def deploy_model(model, sdk_compatible: bool = False, upsample_ratio: int = 4):
    """A Keras model with the last stage's outputs ``[paf, heatmap]`` (and TLT's PAF upsampling if asked)."""
    import keras

    stages = len(model.outputs) // 2
    heatmap, paf = model.outputs[stages - 1], model.outputs[2 * stages - 1]
    if sdk_compatible:
        if upsample_ratio < 1:
            raise BpnetError(f"upsample_ratio: must be at least 1, got {upsample_ratio}")
        channels = paf.shape[-1]
        upsample = keras.layers.Conv2DTranspose(
            channels, upsample_ratio, strides=upsample_ratio, padding="same", name="conv2d_transpose_1"
        )
        paf = upsample(paf)
        kernel = np.zeros((upsample_ratio, upsample_ratio, channels, channels), np.float32)
        kernel[:, :, np.arange(channels), np.arange(channels)] = 1.0
        upsample.set_weights([kernel, np.zeros(channels, np.float32)])
    return keras.Model(model.inputs, [paf, heatmap], name="bpnet_deploy")


def _rename(graph, old: str, new: str) -> None:
    """Rename a tensor everywhere in an ONNX graph."""
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        if value.name == old:
            value.name = new


def metadata(info: ModelInfo, settings: OnnxSettings, extras: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The ``bpnet`` metadata entry of an exported model; ``extras``: what the Keras model carried besides its
    :class:`ModelInfo` (an imported network's inference and export defaults), kept."""
    paf_stride = info.stride // settings.upsample_ratio if settings.sdk_compatible else info.stride
    paf_name = SDK_PAF_OUTPUT if settings.sdk_compatible else PAF_OUTPUT
    return {
        **info.to_dict(),
        "input": INPUT_NAME,
        "outputs": {"paf": {"name": paf_name, "stride": paf_stride}, "heatmap": {"name": HEATMAP_OUTPUT, "stride": info.stride}},
        "sdk_compatible": settings.sdk_compatible,
        **(extras or {}),
    }


def to_onnx(model, info: ModelInfo, settings: OnnxSettings = OnnxSettings(), extras: Optional[Dict[str, Any]] = None):
    """The ``onnx.ModelProto`` of a trained Keras bpnet model (layout in the module docstring)."""
    import tensorflow as tf
    import tf2onnx

    deploy = deploy_model(model, settings.sdk_compatible, settings.upsample_ratio)
    batch = settings.static_batch_size if settings.static_batch_size > 0 else None
    signature = [tf.TensorSpec([batch, None, None, 3], tf.float32, name="input_1")]

    @tf.function(input_signature=signature)
    def forward(images):
        paf, heatmap = deploy(images, training=False)
        return {"paf": paf, "heatmap": heatmap}

    proto, _ = tf2onnx.convert.from_function(forward, input_signature=signature, opset=settings.opset)
    graph = proto.graph
    _rename(graph, graph.input[0].name, INPUT_NAME)
    exported_metadata = metadata(info, settings, extras)
    names = exported_metadata["outputs"]
    _rename(graph, "paf", names["paf"]["name"])
    _rename(graph, "heatmap", names["heatmap"]["name"])
    ordered = sorted(graph.output, key=lambda value: value.name != names["paf"]["name"])
    del graph.output[:]
    graph.output.extend(ordered)
    set_onnx_metadata(proto, exported_metadata)
    proto.producer_name = "bpnet"
    return proto
