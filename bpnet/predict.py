"""The Predictor: images in, people out, over interchangeable backends (reference §3.13–3.15).

Preprocessing (``keep_aspect_ratio_mode``):

* ``adjust_network_input``: keep the aspect ratio; one side becomes ``input_shape``'s, the other
  follows (the network accepts any size).
* ``pad_image_input``: pad the image with grey 128 to the input's aspect ratio (split evenly, the
  extra pixel bottom/right), then resize to exactly ``input_shape``.
* ``None``: resize to ``input_shape`` (aspect ratio not kept).

In every mode the network input is then padded on the bottom and right with the grey 128 (before
normalisation) to a multiple of the model's stride, so that output cell ``i`` covers input pixels
``[i·stride, (i + 1)·stride)`` exactly; the padding leaves the coordinate mapping unchanged. (TLT fed
sizes off the stride grid as they were, and its output grid then drifted from the mapping: a reference
bug, docs/differences_from_tlt.md.) Then BGR → RGB and ``x / image_scale − image_offset``. Outputs of the
chosen stage are decoded as if upsampled
bicubically by ``output_upsampling_factor`` (``upsampling_mode: local``, the default for one scale: the
decoder upsamples small windows around the peaks itself, bpnet.decode; ``full``: the whole maps are
upsampled first, as TLT); peaks map back to the original image through
``x_input = (x_map + 0.5) · stride / factor − 0.5`` and the inverse resize and padding. With
``scales`` (multi-scale), the maps of every scale are brought to input resolution, resized to the
largest scale's and averaged before decoding.
"""

import dataclasses
import os
from typing import Callable, Dict, Iterable, List, Literal, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from bpnet.decode import DecoderParams, decode
from bpnet.errors import BpnetError
from bpnet.model.io import ModelInfo
from bpnet.resize import resize_maps
from bpnet.results import Prediction
from bpnet.skeleton import Skeleton

PAD_VALUE = 128


@dataclasses.dataclass(frozen=True)
class Geometry:
    """How a preprocessed image relates to the original: ``x_input = (x + pad_x + 0.5) · scale_x − 0.5``."""

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    input_size: Tuple[int, int]  # (width, height) of the network input

    def to_original(self, points: np.ndarray) -> np.ndarray:
        """Input-pixel ``(..., 2)`` x, y → original image pixels."""
        out = np.array(points, dtype=np.float64, copy=True)
        out[..., 0] = (out[..., 0] + 0.5) / self.scale_x - 0.5 - self.pad_x
        out[..., 1] = (out[..., 1] + 0.5) / self.scale_y - 0.5 - self.pad_y
        return out


def preprocess(
    image: np.ndarray, input_shape: Tuple[int, int], mode: Optional[str], info: ModelInfo
) -> Tuple[np.ndarray, Geometry]:
    """A BGR uint8 image → ``(H, W, 3)`` float32 network input and its :class:`Geometry`.

    ``H`` and ``W`` are the resized image's, rounded up to a multiple of ``info.stride`` by padding on the
    bottom and right; ``Geometry.input_size`` is the resized image's own (unpadded) size."""
    height, width = image.shape[:2]
    in_h, in_w = input_shape
    pad_x = pad_y = 0
    if mode == "adjust_network_input":
        scale = in_h / height if width / height > in_w / in_h else in_w / width
        size = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
    elif mode == "pad_image_input":
        target_ratio = in_w / in_h
        if width / height > target_ratio:
            total = int(round(width / target_ratio)) - height
            pad_y = total // 2
            image = cv2.copyMakeBorder(image, pad_y, total - pad_y, 0, 0, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
        else:
            total = int(round(height * target_ratio)) - width
            pad_x = total // 2
            image = cv2.copyMakeBorder(image, 0, 0, pad_x, total - pad_x, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
        size = (in_w, in_h)
    elif mode is None:
        size = (in_w, in_h)
    else:
        raise ValueError(f"unknown keep_aspect_ratio_mode {mode!r}")
    padded_h, padded_w = image.shape[:2]
    resized = cv2.resize(image, size, interpolation=cv2.INTER_CUBIC)
    pad_bottom, pad_right = -size[1] % info.stride, -size[0] % info.stride
    if pad_bottom or pad_right:
        resized = cv2.copyMakeBorder(resized, 0, pad_bottom, 0, pad_right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    if info.channel_order == "RGB":
        resized = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
    tensor = resized.astype(np.float32) / np.asarray(info.image_scale, np.float32) - np.asarray(info.image_offset, np.float32)
    return tensor, Geometry(size[0] / padded_w, size[1] / padded_h, pad_x, pad_y, size)


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


class FlipTest:
    """Test-time flip: average the network's outputs for an input and for its mirror image, unmirrored
    (heatmap channels of left and right keypoints swapped, PAF channels moved to the mirrored limbs and
    their signs corrected; see :attr:`Skeleton.paf_flip`)."""

    def __init__(self, skeleton: Skeleton, stride: int):
        self.stride = stride
        self.heat_permutation = skeleton.heatmap_flip_permutation
        self.paf_permutation, self.paf_sign = skeleton.paf_flip

    def __call__(self, backend, tensor: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """``tensor (H, W, 3)`` → averaged ``(1, h, w, K + 1)`` heatmaps and ``(1, h, w, 2L)`` PAFs.

        The mirror is taken about a width padded (zeros on the right) to a multiple of the stride, so that
        output cell ``i`` of the mirror image lies exactly on cell ``w − 1 − i`` of the original.
        """
        heat, paf = backend(tensor[None])
        padded_width = -(-tensor.shape[1] // self.stride) * self.stride
        padded = np.pad(tensor, ((0, 0), (0, padded_width - tensor.shape[1]), (0, 0)))
        mirror_heat, mirror_paf = backend(np.ascontiguousarray(padded[None, :, ::-1]))
        mirror_heat = mirror_heat[:, :, ::-1][..., self.heat_permutation]
        mirror_paf = mirror_paf[:, :, ::-1][..., self.paf_permutation] * self.paf_sign
        if mirror_heat.shape != heat.shape or mirror_paf.shape != paf.shape:
            raise BpnetError(
                f"flip_test: the mirrored input gave outputs of shape {mirror_heat.shape[1:3]}, "
                f"not {heat.shape[1:3]}; the network's stride is not {self.stride}"
            )
        return (heat + mirror_heat) / 2.0, (paf + mirror_paf) / 2.0


@dataclasses.dataclass(frozen=True)
class PredictorSettings:
    """Inference-spec settings (reference §2.10) and the decoder's."""

    input_shape: Tuple[int, int] = (368, 368)
    keep_aspect_ratio_mode: Optional[str] = "adjust_network_input"
    output_upsampling_factor: Optional[Tuple[int, int]] = None  # default: the stride
    scales: Sequence[float] = (1.0,)
    decoder: DecoderParams = DecoderParams()
    upsampling_mode: Literal["local", "full"] = "local"  # local: the decoder upsamples around peaks only
    flip_test: bool = False  # average with the unmirrored outputs of the mirror image (2 network runs)


class Predictor:
    """``Predictor(backend, info, settings).predict(images) -> [Prediction]`` (BGR images or paths)."""

    def __init__(self, backend, info: ModelInfo, settings: PredictorSettings = PredictorSettings()):
        self.backend = backend
        self.info = info
        self.settings = settings
        factor = settings.output_upsampling_factor or (info.stride, info.stride)
        self.factor_y, self.factor_x = factor
        try:
            self.flip_test = FlipTest(info.skeleton, info.stride) if settings.flip_test else None
        except ValueError as exc:
            raise BpnetError(f"flip_test: {exc}") from None

    def _maps(self, image: np.ndarray, scale: float, upsample: bool = True) -> Tuple[np.ndarray, np.ndarray, Geometry]:
        """(heatmaps, PAFs) of one image at one scale, upsampled by the factor unless ``upsample`` is False, and
        its geometry."""
        height, width = (max(self.info.stride, int(round(s * scale))) for s in self.settings.input_shape)
        shape = (height, width)
        tensor, geometry = preprocess(image, shape, self.settings.keep_aspect_ratio_mode, self.info)
        heat, paf = self.flip_test(self.backend, tensor) if self.flip_test else self.backend(tensor[None])
        if not upsample:
            return heat[0], paf[0], geometry
        size = (heat.shape[2] * self.factor_x, heat.shape[1] * self.factor_y)
        return resize_maps(heat[0], size), resize_maps(paf[0], size), geometry

    def _mapping(self, geometry: Geometry, stride_x: float, stride_y: float) -> Callable[[np.ndarray], np.ndarray]:
        def to_original(points: np.ndarray) -> np.ndarray:
            on_input = np.stack([(points[..., 0] + 0.5) * stride_x - 0.5, (points[..., 1] + 0.5) * stride_y - 0.5], -1)
            return geometry.to_original(on_input)

        return to_original

    def decoder_maps(
        self, image: np.ndarray
    ) -> Tuple[np.ndarray, np.ndarray, Tuple[int, int], Callable[[np.ndarray], np.ndarray]]:
        """What the decoder takes for one BGR image: heatmaps, PAFs, the upsampling factor ``(fy, fx)`` it applies
        itself, and the function from its keypoint coordinates to original image pixels.

        With ``upsampling_mode: local`` and one scale, the maps are the network's own and the factor is
        ``output_upsampling_factor``; otherwise they are :meth:`upsampled_maps` and the factor is 1."""
        if self.settings.upsampling_mode == "local" and len(self.settings.scales) == 1:
            heat, paf, geometry = self._maps(image, self.settings.scales[0], upsample=False)
            to_original = self._mapping(geometry, self.info.stride / self.factor_x, self.info.stride / self.factor_y)
            return heat, paf, (self.factor_y, self.factor_x), to_original
        heat, paf, to_original = self.upsampled_maps(image)
        return heat, paf, (1, 1), to_original

    def upsampled_maps(self, image: np.ndarray) -> Tuple[np.ndarray, np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        """The maps upsampled in full for one BGR image: ``heatmaps (H', W', K + 1)`` and ``PAFs (H', W', 2L)``
        (scales averaged), and a function mapping ``(..., 2)`` x, y on them to original image pixels."""
        scales = sorted(self.settings.scales)
        if len(scales) == 1:
            heat, paf, geometry = self._maps(image, scales[0])
            return heat, paf, self._mapping(geometry, self.info.stride / self.factor_x, self.info.stride / self.factor_y)
        per_scale = [self._maps(image, s) for s in scales]
        geometry = per_scale[-1][2]
        target = geometry.input_size
        heat = np.zeros((target[1], target[0], per_scale[0][0].shape[-1]), np.float32)
        paf = np.zeros((target[1], target[0], per_scale[0][1].shape[-1]), np.float32)
        for h, p, g in per_scale:  # input resolution: crop the stride padding, resize to the largest input
            crop_w = int(round(g.input_size[0] * self.factor_x * 1.0 / self.info.stride))
            crop_h = int(round(g.input_size[1] * self.factor_y * 1.0 / self.info.stride))
            to_input = (g.input_size[0], g.input_size[1])
            h = resize_maps(resize_maps(h[:crop_h, :crop_w], to_input), target)
            p = resize_maps(resize_maps(p[:crop_h, :crop_w], to_input), target)
            heat += h / len(per_scale)
            paf += p / len(per_scale)
        return heat, paf, self._mapping(geometry, 1.0, 1.0)

    def predict_one(self, image: np.ndarray, source: Optional[str] = None) -> Prediction:
        """Decoded people of one BGR image, keypoints in its pixels."""
        heat, paf, upsampling, to_original = self.decoder_maps(image)
        people = decode(heat, paf, self.info.skeleton.limbs, self.settings.decoder, upsampling)
        keypoints = people.keypoints.copy()
        found = keypoints[..., 2] > 0
        keypoints[..., :2] = np.where(found[..., None], to_original(keypoints[..., :2]), 0.0)
        return Prediction(keypoints, people.scores, self.info.skeleton, source)

    def predict(self, images: Iterable[Union[np.ndarray, str]]) -> List[Prediction]:
        """Predict every image (BGR arrays, or paths read with OpenCV)."""
        results = []
        for image in images:
            source = image if isinstance(image, str) else None
            if isinstance(image, str):
                image = read_image(image)
            results.append(self.predict_one(image, source))
        return results


def read_image(path: str) -> np.ndarray:
    """BGR uint8 image, EXIF orientation ignored (as the annotations); a clear error if unreadable."""
    if not os.path.isfile(path):
        raise BpnetError(f"{path}: image not found")
    image = cv2.imread(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise BpnetError(f"{path}: cannot read image (corrupt or not an image)")
    return image
