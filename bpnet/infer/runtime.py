"""What the runtime backends (ONNX Runtime, OpenVINO, TensorRT) share: the :class:`OutputLayout` of a
network's outputs and :class:`RuntimeBackend`, which picks the heatmap and PAF channels out of them and
transposes channels-first networks (:mod:`bpnet.infer.backends` opens the files)."""

import dataclasses
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from bpnet.errors import BpnetError


@dataclasses.dataclass(frozen=True)
class OutputLayout:
    """Where the heatmaps (with background) and the PAFs (x, y per limb, skeleton order) are in a network's
    outputs; an output name of None is the network's first output."""

    heatmap_output: Optional[str]
    heatmap_channels: Tuple[int, int]  # [start, stop)
    paf_output: Optional[str]
    paf_channels: Tuple[int, ...]


class RuntimeBackend:
    """The output selection shared by the ONNX Runtime and OpenVINO backends: subclasses give their outputs'
    channel counts and run the network (:meth:`_run`, NHWC arrays out)."""

    def __init__(self, path: str, layout: OutputLayout, output_channels: Dict[str, Any], channels_last: bool):
        self.path = path
        self.channels_last = channels_last
        if not output_channels:
            raise BpnetError(f"{path}: the network has no outputs")
        first = next(iter(output_channels))
        self.heatmap_output: str = layout.heatmap_output or first
        self.paf_output: str = layout.paf_output or first
        self.layout = dataclasses.replace(layout, heatmap_output=self.heatmap_output, paf_output=self.paf_output)
        for name in (self.heatmap_output, self.paf_output):
            if name not in output_channels:
                raise BpnetError(f"{path}: no output named {name!r} (outputs: {', '.join(output_channels)})")
        self._check_channels({name: c for name, c in output_channels.items() if isinstance(c, int)})

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

    def _run(self, names: Sequence[str], batch: np.ndarray) -> Dict[str, np.ndarray]:
        raise NotImplementedError

    def __call__(self, batch: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        names = list(dict.fromkeys([self.heatmap_output, self.paf_output]))
        tensor = batch.astype(np.float32)
        if not self.channels_last:
            tensor = np.ascontiguousarray(tensor.transpose(0, 3, 1, 2))
        values = self._run(names, tensor)
        if not self.channels_last:
            values = {name: value.transpose(0, 2, 3, 1) for name, value in values.items()}
        self._check_channels({name: value.shape[-1] for name, value in values.items()})
        start, stop = self.layout.heatmap_channels
        heat = values[self.heatmap_output][..., start:stop]
        paf = values[self.paf_output][..., list(self.layout.paf_channels)]
        return np.ascontiguousarray(heat), np.ascontiguousarray(paf)
