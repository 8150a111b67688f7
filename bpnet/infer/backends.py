"""Backends: what runs a network on a batch, ``backend(batch (N, H, W, 3) float32) → (heatmaps, PAFs)``,
``(N, h, w, K + 1)`` and ``(N, h, w, 2L)`` at the network's stride, in the skeleton's order.

:func:`open_backend` opens any model file bpnet can run and returns it with its metadata:

* ``.keras``/``.h5``/``.hdf5`` (``bpnet train``): :class:`KerasBackend`, one output stage chosen;
* ``.onnx`` (``bpnet export``, ``bpnet import_model``): :class:`OnnxBackend` on ONNX Runtime (CPU);
* ``.xml`` (an OpenVINO IR from ``bpnet import_model`` or ``export --target openvino``):
  :class:`OpenVinoBackend` (CPU; the optional ``openvino`` package);
* ``.engine``/``.trt``/``.plan`` (``bpnet export``): ``bpnet.export.tensorrt.TensorRTBackend`` (GPU).

The metadata (:mod:`bpnet.model.io`) names the outputs and, for imported networks, which of their channels
are heatmaps and which PAFs; networks whose input is channels-first (``input_layout: NCHW``) get their
batch transposed in and their outputs transposed out. :func:`network_backend` opens an ONNX network that
an inference spec's ``network`` block describes instead.
"""

import dataclasses
import os
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from bpnet.errors import BpnetError, SpecError, error_cause
from bpnet.infer.runtime import OutputLayout, RuntimeBackend
from bpnet.model.alignment import keras_input_alignment
from bpnet.model.io import (
    ModelInfo,
    file_input_alignment,
    load_model,
    model_extras,
    read_model_metadata,
    read_openvino_model,
    train_spec_info,
    with_input_alignment,
)
from bpnet.skeleton import Skeleton
from bpnet.specs import NetworkSpec, load_train_spec

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
ENGINE_SUFFIXES = (".engine", ".trt", ".plan")


class KerasBackend:
    """A Keras model from ``bpnet train`` (outputs ``[heat_1..heat_S, paf_1..paf_S]``)."""

    def __init__(self, model, stage: Optional[int] = None):
        self.model = model
        self.stages = len(model.outputs) // 2
        if stage is not None and not 1 <= stage <= self.stages:
            raise BpnetError(f"output_stage_to_use: {stage} is not a stage of this model (1..{self.stages})")
        self.stage = stage or self.stages

    def __call__(self, batch: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        outputs = self.model(batch, training=False)
        return np.asarray(outputs[self.stage - 1]), np.asarray(outputs[self.stages + self.stage - 1])


class OnnxBackend(RuntimeBackend):
    """An ONNX model run by ONNX Runtime on the CPU, its outputs rearranged by an :class:`OutputLayout`."""

    def __init__(self, path: str, layout: OutputLayout, channels_last: bool = True):
        import onnxruntime

        try:
            self.session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BpnetError(f"{path}: cannot load the ONNX model: {error_cause(exc)}") from None
        self.input_name = self.session.get_inputs()[0].name
        axis = -1 if channels_last else 1
        super().__init__(path, layout, {o.name: o.shape[axis] for o in self.session.get_outputs()}, channels_last)

    def _run(self, names: Sequence[str], batch: np.ndarray) -> Dict[str, np.ndarray]:
        return dict(zip(names, self.session.run(list(names), {self.input_name: batch})))


class OpenVinoBackend(RuntimeBackend):
    """An OpenVINO IR (``.xml`` + ``.bin``) or ONNX file compiled by OpenVINO for the CPU; recompiled (and
    cached) for each input size it is given.

    Float layers run in FP32: on CPUs with bfloat16 instructions (AVX512-BF16, AMX) OpenVINO would otherwise
    run an FP32 model in bfloat16 (errors of 1e-3 on the maps, measured on an AVX512-BF16 EPYC)."""

    def __init__(self, path: str, layout: OutputLayout, channels_last: bool = True):
        self.core, self.model = read_openvino_model(path)
        self.compiled: Dict[Tuple[int, ...], Any] = {}
        super().__init__(path, layout, _openvino_output_channels(self.model.outputs, channels_last), channels_last)

    def _run(self, names: Sequence[str], batch: np.ndarray) -> Dict[str, np.ndarray]:
        compiled = self.compiled.get(batch.shape)
        if compiled is None:
            try:
                self.model.reshape({0: list(batch.shape)})
                compiled = self.core.compile_model(self.model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
            except RuntimeError as exc:
                shape = list(batch.shape)
                raise BpnetError(f"{self.path}: OpenVINO cannot run the model on a {shape} input: {error_cause(exc)}") from None
            self.compiled[batch.shape] = compiled
        results = compiled([batch])
        return {name: np.asarray(results[compiled.output(name)]) for name in names}


class CompiledOpenVinoBackend(RuntimeBackend):
    """An OpenVINO model already compiled (``openvino.CompiledModel``, e.g. the candidates NNCF hands to a
    validation function), run as it was compiled."""

    def __init__(self, compiled, name: str, layout: OutputLayout, channels_last: bool = True):
        self.compiled = compiled
        super().__init__(name, layout, _openvino_output_channels(compiled.outputs, channels_last), channels_last)

    def _run(self, names: Sequence[str], batch: np.ndarray) -> Dict[str, np.ndarray]:
        results = self.compiled([batch])
        return {name: np.asarray(results[self.compiled.output(name)]) for name in names}


def _openvino_output_channels(outputs, channels_last: bool) -> Dict[str, Optional[int]]:
    """Output tensor name → channel count (None when dynamic), under every name a tensor has (any selects it)."""
    axis = -1 if channels_last else 1
    channels: Dict[str, Optional[int]] = {}
    for output in outputs:
        shape = output.get_partial_shape()
        dimension = shape[axis if axis >= 0 else len(shape) + axis]
        for name in sorted(output.get_names()):
            channels[name] = dimension.get_length() if dimension.is_static else None
    return channels


@dataclasses.dataclass
class OpenedModel:
    """A backend, its model's :class:`ModelInfo`, and the model's full metadata (for Keras models: its
    :data:`~bpnet.model.io.EXTRA_METADATA_KEYS`)."""

    backend: Any
    info: ModelInfo
    metadata: Dict[str, Any]


def output_layout(metadata: Dict[str, Any], info: ModelInfo, source: str) -> OutputLayout:
    """The output names and channels of a model's metadata (``outputs.heatmap``/``outputs.paf``: ``name`` and,
    for imported networks, ``channels``; without them the first ``K + 1`` and ``2L`` channels)."""
    try:
        heatmap, paf = metadata["outputs"]["heatmap"], metadata["outputs"]["paf"]
        heat_channels = heatmap.get("channels") or list(range(info.skeleton.num_heatmap_channels))
        paf_channels = paf.get("channels") or list(range(info.skeleton.num_paf_channels))
        names = heatmap["name"], paf["name"]
        if not all(isinstance(name, str) for name in names):
            raise TypeError
    except (KeyError, TypeError, AttributeError):
        raise BpnetError(f"{source}: bpnet metadata: outputs: missing the heatmap and paf output names") from None
    contiguous = list(range(heat_channels[0], heat_channels[0] + len(heat_channels))) == list(heat_channels)
    if (
        not contiguous
        or len(heat_channels) != info.skeleton.num_heatmap_channels
        or len(paf_channels) != info.skeleton.num_paf_channels
        or not all(isinstance(c, int) and c >= 0 for c in [*heat_channels, *paf_channels])
    ):
        raise BpnetError(
            f"{source}: bpnet metadata: outputs: the heatmap channels must be {info.skeleton.num_heatmap_channels} "
            f"consecutive indices and the PAF channels {info.skeleton.num_paf_channels} indices"
        )
    return OutputLayout(names[0], (heat_channels[0], heat_channels[-1] + 1), names[1], tuple(paf_channels))


def open_backend(model_path: str, stage: Optional[int] = None, train_spec: Optional[str] = None) -> OpenedModel:
    """Open any model file bpnet runs (see the module docstring). ``stage``: the output stage of a Keras
    model (default the last); ``train_spec``: where a Keras model without bpnet metadata (a TLT ``.hdf5``)
    takes its skeleton and normalisation."""
    if not os.path.isfile(model_path):
        raise BpnetError(f"{model_path}: model file not found")
    if model_path.endswith(KERAS_SUFFIXES):
        return _open_keras(model_path, stage, train_spec)
    if model_path.endswith(".pb"):
        raise BpnetError(
            f"{model_path}: a TensorFlow frozen graph is not run directly; convert it first with "
            f"bpnet import_model -m {model_path} -o model.onnx (tf-pose-estimation networks; docs/import_model.md)"
        )
    if not model_path.endswith((".onnx", ".xml", *ENGINE_SUFFIXES)):
        raise BpnetError(
            f"{model_path}: unknown model type (expected .keras, .h5, .hdf5, .onnx, an OpenVINO .xml or a TensorRT engine)"
        )
    if stage is not None:
        raise BpnetError(
            f"output_stage_to_use: {stage}: {model_path} holds only its final stage (stages are chosen in Keras "
            "models); set it to null"
        )
    metadata = read_model_metadata(model_path)
    if metadata is None:
        raise BpnetError(
            f"{model_path}: no bpnet metadata; a third-party network: bpnet import_model -m {model_path} -o imported"
            f"{os.path.splitext(model_path)[1]} (or describe it in an inference spec's network block); a bpnet model: "
            "write it with bpnet export"
        )
    if metadata.get("sdk_compatible"):
        raise BpnetError(
            f"{model_path}: an --sdk_compatible_model export is for DeepStream only; export without it "
            "for bpnet evaluate/inference"
        )
    info = ModelInfo.parse(metadata, f"{model_path}: bpnet metadata")
    layout = output_layout(metadata, info, model_path)
    channels_last = info.input_layout == "NHWC"
    if model_path.endswith(".onnx"):
        info = with_input_alignment(info, lambda: file_input_alignment(model_path))
        return OpenedModel(OnnxBackend(model_path, layout, channels_last), info, metadata)
    if model_path.endswith(".xml"):
        info = with_input_alignment(info, lambda: file_input_alignment(model_path))
        return OpenedModel(OpenVinoBackend(model_path, layout, channels_last), info, metadata)
    from bpnet.export.tensorrt import TensorRTBackend

    return OpenedModel(TensorRTBackend(model_path, layout, channels_last), info, metadata)


def _open_keras(model_path: str, stage: Optional[int], train_spec: Optional[str]) -> OpenedModel:
    model, info = load_model(model_path)
    if info is None:
        if not train_spec:
            raise BpnetError(
                f"{model_path}: no bpnet metadata (skeleton, normalisation) in the model; give its "
                f"train spec as train_spec in the inference spec"
            )
        info = train_spec_info(load_train_spec(train_spec))
    heat_channels, paf_channels = model.outputs[0].shape[-1], model.outputs[-1].shape[-1]
    if (heat_channels, paf_channels) != (info.skeleton.num_heatmap_channels, info.skeleton.num_paf_channels):
        raise BpnetError(
            f"{model_path}: outputs have {heat_channels} heatmap and {paf_channels} PAF channels but "
            f"the skeleton '{info.skeleton.name}' needs {info.skeleton.num_heatmap_channels} and "
            f"{info.skeleton.num_paf_channels}"
        )
    info = with_input_alignment(info, lambda: keras_input_alignment(model))
    return OpenedModel(KerasBackend(model, stage), info, model_extras(model_path))


def network_backend(network: NetworkSpec, model_path: str) -> OpenedModel:
    """An ONNX network described by an inference spec's ``network`` block."""
    skeleton = Skeleton.from_file(network.pose_config_path)
    info = ModelInfo(skeleton, network.image_scale, network.image_offset, network.stride, channel_order=network.channel_order)
    start, stop = network.heatmap_channels
    if stop - start != skeleton.num_heatmap_channels or len(network.paf_channels) != skeleton.num_paf_channels:
        raise SpecError(
            f"network: {stop - start} heatmap and {len(network.paf_channels)} PAF channels do not fit the "
            f"pose config {network.pose_config_path} ({skeleton.num_heatmap_channels} and "
            f"{skeleton.num_paf_channels})"
        )
    if not model_path.endswith(".onnx"):
        raise BpnetError(f"{model_path}: a network described by the inference spec must be an ONNX model")
    if not os.path.isfile(model_path):
        raise BpnetError(f"{model_path}: model file not found")
    layout = OutputLayout(network.heatmap_output, network.heatmap_channels, network.paf_output, network.paf_channels)
    info = with_input_alignment(info, lambda: file_input_alignment(model_path))
    return OpenedModel(OnnxBackend(model_path, layout), info, {})
