"""Saving and loading bpnet models with their metadata, and loading weights by layer name.

A ``.keras`` file gets a ``bpnet.json`` member beside Keras's own (a ``.h5``/``.hdf5`` file an HDF5
attribute ``bpnet``) holding :class:`ModelInfo`: the skeleton, the input normalisation, the output stride
and the input alignment (:mod:`bpnet.model.alignment`), so evaluation, inference and export never guess
the channel order. Exported and imported models carry the same metadata plus their output names and channels: an ONNX file in its
``metadata_props`` (key ``bpnet``), a TensorRT engine in ``<engine>.json``, an OpenVINO IR in
``<model>.xml.json`` (:func:`read_model_metadata`).
"""

import dataclasses
import json
import os
import zipfile
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from bpnet.errors import BpnetError, error_cause
from bpnet.files import atomic_path
from bpnet.model.alignment import aligned, keras_input_alignment, onnx_input_alignment, openvino_input_alignment
from bpnet.skeleton import Skeleton

if TYPE_CHECKING:
    from bpnet.specs import TrainSpec

INFO_MEMBER = "bpnet.json"
METADATA_KEY = "bpnet"  # of an ONNX file's metadata_props
INPUT_LAYOUTS = ("NHWC", "NCHW")


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What a consumer of the model needs besides the graph. Input: NHWC RGB, ``x / scale − offset``."""

    skeleton: Skeleton
    image_scale: Tuple[float, ...]  # 3 values (checked)
    image_offset: Tuple[float, ...]  # 3 values (checked)
    stride: int
    input_layout: str = "NHWC"
    channel_order: str = "RGB"
    input_alignment: Optional[int] = None  # the network's largest internal down-sampling (None: the stride)

    def __post_init__(self) -> None:
        if not (isinstance(self.stride, int) and self.stride >= 1):
            raise ValueError(f"stride: must be a positive integer, got {self.stride!r}")
        alignment = self.input_alignment
        if alignment is not None and not (
            isinstance(alignment, int) and not isinstance(alignment, bool) and 1 <= alignment <= 1024
        ):
            raise ValueError(f"input_alignment: must be an integer from 1 to 1024, got {alignment!r}")
        for name in ("image_scale", "image_offset"):
            values = getattr(self, name)
            if len(values) != 3 or not all(isinstance(v, (int, float)) and np.isfinite(v) for v in values):
                raise ValueError(f"{name}: must be 3 finite numbers, got {list(values)!r}")
        if 0 in self.image_scale:
            raise ValueError("image_scale: must not contain 0")
        if self.input_layout not in INPUT_LAYOUTS:
            raise ValueError(f"input_layout: must be NHWC or NCHW, got {self.input_layout!r}")
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order: must be RGB or BGR, got {self.channel_order!r}")

    def to_dict(self) -> Dict[str, object]:
        return {
            "skeleton": self.skeleton.to_dict(),
            "image_scale": list(self.image_scale),
            "image_offset": list(self.image_offset),
            "stride": self.stride,
            "input_layout": self.input_layout,
            "channel_order": self.channel_order,
            **({} if self.input_alignment is None else {"input_alignment": self.input_alignment}),
        }

    @property
    def input_multiple(self) -> int:
        """What every network input's height and width are padded to a multiple of: the smallest multiple of
        both the stride and the input alignment (:mod:`bpnet.model.alignment`)."""
        return aligned(self.input_alignment or 1, self.stride)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "ModelInfo":
        """Parse metadata; raises ValueError naming the field for anything missing or malformed."""
        if not isinstance(data, dict):
            raise ValueError("expected a mapping")
        missing = [key for key in ("skeleton", "image_scale", "image_offset", "stride") if key not in data]
        if missing:
            raise ValueError(f"{missing[0]}: missing")
        try:
            skeleton = Skeleton.from_dict(data["skeleton"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"skeleton: malformed ({exc})") from None
        try:
            scale, offset = tuple(data["image_scale"]), tuple(data["image_offset"])
        except TypeError:
            raise ValueError("image_scale/image_offset: must be lists of 3 numbers") from None
        stride = data["stride"]
        return cls(
            skeleton,
            scale,
            offset,
            stride if isinstance(stride, int) and not isinstance(stride, bool) else -1,
            str(data.get("input_layout", "NHWC")),
            str(data.get("channel_order", "RGB")),
            data.get("input_alignment"),
        )

    @classmethod
    def parse(cls, data: object, source: str) -> "ModelInfo":
        """:meth:`from_dict` with a one-line :class:`BpnetError` naming ``source`` (the file and member)."""
        try:
            return cls.from_dict(data)  # type: ignore[arg-type]
        except ValueError as exc:
            raise BpnetError(f"{source}: {exc}") from None


def train_spec_info(spec: "TrainSpec", skeleton: Optional[Skeleton] = None) -> ModelInfo:
    """The :class:`ModelInfo` of a model trained with ``spec`` (its skeleton is read from the spec's pose
    config unless given): what models saved without bpnet metadata are assumed to have."""
    skeleton = skeleton or Skeleton.from_file(spec.dataloader.pose_config.pose_config_path)
    norm = spec.dataloader.normalization_params
    return ModelInfo(skeleton, tuple(norm.image_scale), tuple(norm.image_offset), spec.dataloader.stride)


EXTRA_METADATA_KEYS = ("inference_defaults", "export_defaults", "imported_from")
"""Metadata a model may carry beside its :class:`ModelInfo` (an imported network's recommended settings)."""


def save_model(model, path: str, info: ModelInfo, extras: Optional[Dict[str, Any]] = None) -> None:
    """Save ``model`` (``.keras``, or legacy ``.h5``/``.hdf5``) with ``info`` and the :data:`EXTRA_METADATA_KEYS`
    of ``extras``, atomically."""
    kept = {key: value for key, value in (extras or {}).items() if key in EXTRA_METADATA_KEYS}
    info = with_input_alignment(info, lambda: keras_input_alignment(model))
    with atomic_path(path) as tmp:
        model.save(tmp)
        payload = json.dumps({**info.to_dict(), **kept})
        if tmp.endswith(".keras"):
            with zipfile.ZipFile(tmp, "a") as archive:
                archive.writestr(INFO_MEMBER, payload)
        else:
            import h5py

            with h5py.File(tmp, "a") as handle:
                handle.attrs["bpnet"] = payload


def read_info(path: str) -> Optional[ModelInfo]:
    """The :class:`ModelInfo` stored in a model file, or None (for example a TLT model)."""
    found = _stored_metadata(path)
    return None if found is None else ModelInfo.parse(found[0], found[1])


def model_extras(path: str) -> Dict[str, Any]:
    """The :data:`EXTRA_METADATA_KEYS` a Keras model file carries (``{}`` when none)."""
    found = _stored_metadata(path)
    data = found[0] if found is not None and isinstance(found[0], dict) else {}
    return {key: data[key] for key in EXTRA_METADATA_KEYS if key in data}


def _stored_metadata(path: str) -> Optional[Tuple[Any, str]]:
    """The parsed ``bpnet.json`` (or HDF5 attribute) of a Keras model file and how messages name it; None if absent."""
    if path.endswith(".keras"):
        source = f"{path}: {INFO_MEMBER}"
        try:
            with zipfile.ZipFile(path) as archive:
                if INFO_MEMBER not in archive.namelist():
                    return None
                payload = archive.read(INFO_MEMBER)
        except zipfile.BadZipFile as exc:
            raise BpnetError(f"{path}: not a .keras archive ({exc})") from None
    else:
        import h5py

        source = f"{path}: HDF5 attribute bpnet"
        try:
            with h5py.File(path, "r") as handle:
                payload = handle.attrs.get("bpnet")
        except OSError as exc:
            raise BpnetError(f"{path}: cannot read the HDF5 model: {exc}") from None
        if payload is None:
            return None
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BpnetError(f"{source}: not valid JSON ({exc})") from None
    return data, source


def load_model(path: str):
    """``(keras model, ModelInfo or None)`` from a ``.keras``/``.h5``/``.hdf5`` file."""
    import keras

    if not os.path.isfile(path):
        raise BpnetError(f"{path}: model file not found")
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for unreadable files
        raise BpnetError(f"{path}: cannot load the Keras model: {str(exc).splitlines()[0]}") from None
    return model, read_info(path)


def sidecar_metadata_path(model_path: str) -> str:
    """The JSON file beside a TensorRT engine or an OpenVINO IR that holds its bpnet metadata."""
    return model_path + ".json"


def load_onnx_graph_only(path: str):
    """The ``onnx.ModelProto`` of an ONNX file without external weights; a one-line error if unreadable."""
    import onnx

    try:
        return onnx.load(path, load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and others for unreadable files
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BpnetError(f"{path}: cannot read the ONNX model: {reason}") from None


def read_openvino_model(path: str) -> Tuple[Any, Any]:
    """``(openvino.Core, openvino.Model)`` of an IR or ONNX file; one-line errors without the package or
    for an unreadable file."""
    try:
        import openvino
    except ImportError:
        raise BpnetError(f"{path}: an OpenVINO model needs the openvino package (pip install 'bpnet[openvino]')") from None
    core = openvino.Core()
    try:
        return core, core.read_model(path)
    except RuntimeError as exc:
        raise BpnetError(f"{path}: cannot read the OpenVINO model: {error_cause(exc)}") from None


def with_input_alignment(info: ModelInfo, alignment: Callable[[], int]) -> ModelInfo:
    """``info`` with its input alignment read from the graph by ``alignment()`` when its metadata predates the
    field (models written before bpnet recorded it; an engine's is in its metadata or taken as the stride)."""
    if info.input_alignment is not None:
        return info
    return dataclasses.replace(info, input_alignment=alignment())


def file_input_alignment(path: str) -> int:
    """The input alignment of an ONNX file or an OpenVINO IR, read from its graph (weights are not loaded)."""
    if path.endswith(".xml"):
        return openvino_input_alignment(read_openvino_model(path)[1])
    return onnx_input_alignment(load_onnx_graph_only(path))


def read_onnx_metadata(path: str) -> Optional[Dict[str, Any]]:
    """The ``bpnet`` metadata of an ONNX file (None for third-party models); loads no weights."""
    proto = load_onnx_graph_only(path)
    for entry in proto.metadata_props:
        if entry.key == METADATA_KEY:
            return _metadata_mapping(entry.value, f"{path}: metadata {METADATA_KEY}")
    return None


def set_onnx_metadata(proto, metadata: Dict[str, Any]) -> None:
    """Store ``metadata`` as the ``bpnet`` entry of an ``onnx.ModelProto`` (replacing one already there)."""
    kept = [entry for entry in proto.metadata_props if entry.key != METADATA_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)


def read_model_metadata(path: str) -> Optional[Dict[str, Any]]:
    """The bpnet metadata of an exported or imported model file: from an ONNX file itself, else from the
    JSON beside it (TensorRT engine, OpenVINO IR); None when there is none."""
    if path.endswith(".onnx"):
        return read_onnx_metadata(path)
    sidecar = sidecar_metadata_path(path)
    if not os.path.isfile(sidecar):
        return None
    try:
        with open(sidecar, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise BpnetError(f"{sidecar}: cannot read: {exc.strerror or exc}") from None
    return _metadata_mapping(text, sidecar)


def write_sidecar_metadata(model_path: str, metadata: Dict[str, Any]) -> None:
    """Write ``metadata`` beside a TensorRT engine or an OpenVINO IR, atomically."""
    with atomic_path(sidecar_metadata_path(model_path)) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        json.dump(metadata, handle, indent=2)


def _metadata_mapping(text: str, source: str) -> Dict[str, Any]:
    try:
        metadata = json.loads(text)
    except ValueError as exc:
        raise BpnetError(f"{source}: not valid JSON ({exc})") from None
    if not isinstance(metadata, dict):
        raise BpnetError(f"{source}: expected a mapping")
    return metadata


def keras_layer_name(tlt_name: str) -> str:
    """TLT layer names use ``/`` (``stage2/conv1``), which Keras 3 forbids; bpnet writes ``_``."""
    return tlt_name.replace("/", "_")


def keras_variable_path(tlt_name: str) -> str:
    """``stage2/conv1/kernel`` (TLT) → ``stage2_conv1/kernel`` (Keras 3 variable path)."""
    layer, _, variable = tlt_name.removesuffix(":0").rpartition("/")
    return f"{keras_layer_name(layer)}/{variable}" if layer else variable


def read_layer_weights(path: str) -> Dict[str, List[np.ndarray]]:
    """Layer name → weight arrays from a ``.keras`` model, or a Keras 2 / legacy HDF5 model or weights file."""
    if not os.path.isfile(path):
        raise BpnetError(f"{path}: weights file not found (pretrained_weights)")
    if path.endswith(".tlt") or path.endswith(".etlt"):
        raise BpnetError(f"{path}: encrypted TLT models cannot be read; use a .keras/.h5/.hdf5 file or 'imagenet'")
    if path.endswith(".keras"):
        model, _ = load_model(path)
        return {layer.name: [np.asarray(w) for w in layer.get_weights()] for layer in model.layers if layer.weights}
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            group = handle["model_weights"] if "model_weights" in handle else handle
            if "layer_names" not in group.attrs:
                raise BpnetError(f"{path}: not a Keras HDF5 model or weights file (no layer_names)")
            out = {}
            for raw_name in group.attrs["layer_names"]:
                name = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
                layer = group[name]
                weight_names = [w.decode() if isinstance(w, bytes) else str(w) for w in layer.attrs["weight_names"]]
                if weight_names:
                    out[keras_layer_name(name)] = [np.asarray(layer[w]) for w in weight_names]
            return out
    except OSError as exc:
        raise BpnetError(f"{path}: cannot read HDF5 weights: {exc}") from None


def assign_by_name(model, weights: Dict[str, List[np.ndarray]]) -> Tuple[List[str], List[str]]:
    """Copy weights into same-named layers whose shapes match; returns (loaded, skipped for shape)."""
    loaded, skipped = [], []
    for layer in model.layers:
        source = weights.get(layer.name)
        if source is None or not layer.weights:
            continue
        target = layer.get_weights()
        if len(source) != len(target) or any(s.shape != t.shape for s, t in zip(source, target)):
            skipped.append(layer.name)
            continue
        layer.set_weights(source)
        loaded.append(layer.name)
    return loaded, skipped
