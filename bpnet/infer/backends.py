"""Backends: what runs a network on a batch, ``backend(batch (N, H, W, 3) float32) → (heatmaps, PAFs)``,
``(N, h, w, K + 1)`` and ``(N, h, w, 2L)`` at the network's stride, skeleton order.

* :class:`KerasBackend`: a model from ``bpnet train`` (one output stage chosen).
* :class:`OnnxBackend`: an ONNX model on ONNX Runtime (CPU), its outputs rearranged by an :class:`OutputLayout`.
* ``bpnet.export.tensorrt.TensorRTBackend``: a TensorRT engine (GPU), imported only when one is opened.

:func:`network_backend` opens a third-party ONNX network described by an inference spec's ``network`` block;
:func:`exported_backend` a model written by ``bpnet export`` (ONNX or engine), from its metadata.
"""

import dataclasses
import json
import os
from typing import Dict, Optional, Tuple

import numpy as np

from bpnet.errors import BpnetError, SpecError
from bpnet.model.io import ModelInfo
from bpnet.skeleton import Skeleton
from bpnet.specs import NetworkSpec


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


@dataclasses.dataclass(frozen=True)
class OutputLayout:
    """Where the heatmaps (with background) and the PAFs (x, y per limb, skeleton order) are in a network's
    outputs; an output name of None is the network's first output."""

    heatmap_output: Optional[str]
    heatmap_channels: Tuple[int, int]  # [start, stop)
    paf_output: Optional[str]
    paf_channels: Tuple[int, ...]


class OnnxBackend:
    """An ONNX model run by ONNX Runtime on the CPU, its outputs rearranged by an :class:`OutputLayout`."""

    def __init__(self, path: str, layout: Optional[OutputLayout] = None, info: Optional[ModelInfo] = None):
        import onnxruntime

        try:
            self.session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BpnetError(f"{path}: cannot load the ONNX model: {str(exc).splitlines()[0]}") from None
        self.input_name = self.session.get_inputs()[0].name
        outputs = {o.name: o.shape[-1] for o in self.session.get_outputs()}
        if layout is None:
            if info is None:
                raise ValueError("OnnxBackend needs an output layout or the model's metadata")
            layout = self._layout_by_channels(path, outputs, info)
        first = next(iter(outputs))
        self.heatmap_output: str = layout.heatmap_output or first
        self.paf_output: str = layout.paf_output or first
        self.layout = dataclasses.replace(layout, heatmap_output=self.heatmap_output, paf_output=self.paf_output)
        for name in (self.heatmap_output, self.paf_output):
            if name not in outputs:
                raise BpnetError(f"{path}: no output named {name!r} (outputs: {', '.join(outputs)})")
        self.path = path
        self._check_channels({name: c for name, c in outputs.items() if isinstance(c, int)})

    def _check_channels(self, channels: Dict[str, int]) -> None:
        """Refuse a layout that asks for channels an output does not have (``channels``: output → count)."""
        start, stop = self.layout.heatmap_channels
        needs = (
            (self.layout.heatmap_output, stop, "heatmap"),
            (self.layout.paf_output, max(self.layout.paf_channels) + 1, "PAF"),
        )
        for name, needed, kind in needs:
            if name in channels and channels[name] < needed:
                raise BpnetError(
                    f"{self.path}: output {name!r} has {channels[name]} channels, but the model's metadata "
                    f"needs {needed} for its {kind} maps"
                )

    @staticmethod
    def _layout_by_channels(path: str, outputs, info: ModelInfo) -> OutputLayout:
        heat = [n for n, c in outputs.items() if c == info.skeleton.num_heatmap_channels]
        paf = [n for n, c in outputs.items() if c == info.skeleton.num_paf_channels]
        if not heat or not paf:
            raise BpnetError(
                f"{path}: outputs {outputs} do not match the skeleton ({info.skeleton.num_heatmap_channels} "
                f"heatmap and {info.skeleton.num_paf_channels} PAF channels)"
            )
        return OutputLayout(
            heat[-1], (0, info.skeleton.num_heatmap_channels), paf[-1], tuple(range(info.skeleton.num_paf_channels))
        )

    def __call__(self, batch: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        names = list(dict.fromkeys([self.heatmap_output, self.paf_output]))
        values = dict(zip(names, self.session.run(names, {self.input_name: batch.astype(np.float32)})))
        self._check_channels({name: value.shape[-1] for name, value in values.items()})
        start, stop = self.layout.heatmap_channels
        heat = values[self.heatmap_output][..., start:stop]
        paf = values[self.paf_output][..., list(self.layout.paf_channels)]
        return np.ascontiguousarray(heat), np.ascontiguousarray(paf)


def network_backend(network: NetworkSpec, model_path: str):
    """Backend and ModelInfo of a third-party network described by an inference spec's ``network`` block."""
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
    layout = OutputLayout(network.heatmap_output, network.heatmap_channels, network.paf_output, network.paf_channels)
    return OnnxBackend(model_path, layout), info


def exported_backend(model_path: str):
    """Backend and ModelInfo of a model written by ``bpnet export`` (an ONNX file or a TensorRT engine)."""
    from bpnet.export.onnx_export import read_onnx_metadata
    from bpnet.export.tensorrt import TensorRTBackend, engine_info_path

    if not os.path.isfile(model_path):
        raise BpnetError(f"{model_path}: model file not found")
    if model_path.endswith(".onnx"):
        metadata = read_onnx_metadata(model_path)
        where = "no bpnet metadata (export it with bpnet export, or describe it in the inference spec's network block)"
    else:
        info_path = engine_info_path(model_path)
        metadata = None
        if os.path.isfile(info_path):
            try:
                with open(info_path, encoding="utf-8") as handle:
                    metadata = json.load(handle)
            except ValueError as exc:
                raise BpnetError(f"{info_path}: not valid JSON ({exc})") from None
        where = f"{info_path} (written by bpnet export beside the engine) not found"
    if metadata is None:
        raise BpnetError(f"{model_path}: {where}")
    if metadata.get("sdk_compatible"):
        raise BpnetError(
            f"{model_path}: an --sdk_compatible_model export is for DeepStream only; export without it "
            "for bpnet evaluate/inference"
        )
    info = ModelInfo.parse(metadata, f"{model_path}: bpnet metadata")
    try:
        heatmap, paf = metadata["outputs"]["heatmap"]["name"], metadata["outputs"]["paf"]["name"]
    except (KeyError, TypeError):
        raise BpnetError(f"{model_path}: bpnet metadata: outputs: missing the heatmap and paf output names") from None
    if not model_path.endswith(".onnx"):
        return TensorRTBackend(model_path, heatmap, paf), info
    layout = OutputLayout(heatmap, (0, info.skeleton.num_heatmap_channels), paf, tuple(range(info.skeleton.num_paf_channels)))
    return OnnxBackend(model_path, layout), info
