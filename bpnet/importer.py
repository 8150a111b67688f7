"""``bpnet import_model``: a public OpenPose-family network → a self-describing bpnet model.

The imported model carries the metadata ``bpnet export`` writes (skeleton, normalisation, channel order,
input layout, stride, output names) plus which output channels are heatmaps and which PAFs, and the
inference settings that suit it (``inference_defaults``), so ``evaluate``, ``inference`` and the Python
API run it with no spec. Sources:

* a TensorFlow 1 frozen graph of the tf-pose-estimation family (``.pb``; ``mobilenet_thin``,
  ``mobilenet_v2_*``, ``cmu``), converted to ONNX with tf2onnx (``--preset tf_pose``);
* an OpenVINO IR (``.xml`` + ``.bin``) of the Lightweight OpenPose family, e.g. Open Model Zoo's
  ``human-pose-estimation-0001``, kept as an IR and run by OpenVINO (``--preset lightweight_openpose``);
* an ONNX file, with a preset or with a ``network`` description (the inference spec's ``network`` block
  as a YAML file), for anything else.

A ``.pb`` or ONNX source may also be written as ``.keras``: a trainable Keras model with every stage's heads as
outputs (:func:`keras_model`, :mod:`bpnet.model.onnx_keras`) that ``bpnet train`` fine-tunes.

A preset is detected from the tensor names when ``--preset`` is not given. The channel mapping is checked,
not trusted: on a check image the import reports each part's strongest heatmap responses and each limb's
best PAF alignment, and refuses a mapping whose PAFs do not follow their limbs (:func:`check_mapping`).
"""

import dataclasses
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from bpnet import spec_loader
from bpnet.errors import BpnetError
from bpnet.files import atomic_path, temporary_prefix
from bpnet.model.alignment import onnx_input_alignment, openvino_input_alignment
from bpnet.model.io import (
    EXTRA_METADATA_KEYS,
    ModelInfo,
    load_onnx_graph_only,
    read_openvino_model,
    save_model,
    set_onnx_metadata,
    write_sidecar_metadata,
)
from bpnet.resources import resource_path
from bpnet.skeleton import Skeleton
from bpnet.specs import NetworkSpec

logger = logging.getLogger(__name__)

# The OpenPose COCO-18 PAF channels (x, y) per limb of model_pose_config/openpose_coco18.json, counted from
# the first PAF channel: tf-pose's COCOPAIRS_NET and Lightweight OpenPose's BODY_PARTS_PAF_IDS alike.
OPENPOSE_COCO18_PAF_CHANNELS = (
    (12, 13), (20, 21), (14, 15), (16, 17), (22, 23), (24, 25), (0, 1), (2, 3), (4, 5), (6, 7),
    (8, 9), (10, 11), (28, 29), (30, 31), (34, 35), (32, 33), (36, 37), (18, 19), (26, 27),
)  # fmt: skip
TF_POSE_KEEP_FLOAT = r"MConv_Stage\d+_(concat|L\d+_1_depthwise|L\d+_[2-9]_)"
"""tf-pose refinement-stage nodes that stay in float in an ONNX Runtime or TensorRT INT8 export (all but each
branch's first pointwise convolution)."""
TF_POSE_OPENVINO_KEEP_FLOAT = r"MConv_Stage\d+_(concat|L\d+_[2-9]_)"
"""The same for an OpenVINO INT8 export, whose histogram activation ranges also keep each branch's first depthwise
convolution accurate in INT8 (ONNX Runtime's percentile ranges do not: docs/export.md)."""
MIN_LIMB_ALIGNMENT = 0.2  # median best PAF alignment of the limbs a check image shows (right mappings: 0.6–0.8)


@dataclasses.dataclass(frozen=True)
class OutputNames:
    """One way a preset's network may name its input and outputs (None: its only output)."""

    input: str
    heatmap_output: Optional[str]
    paf_output: Optional[str]
    image_scale: Tuple[float, float, float]
    image_offset: Tuple[float, float, float]


@dataclasses.dataclass(frozen=True)
class Preset:
    """A known network layout: skeleton, channels, input convention and the inference settings that suit it."""

    name: str
    pose_config: str  # in bpnet's model_pose_config
    variants: Tuple[OutputNames, ...]
    heatmap_start: int  # first heatmap channel in the heatmap output (K + 1 channels)
    paf_start: int  # first PAF channel in the PAF output
    input_layout: str
    channel_order: str
    input_shape: Tuple[int, int]  # (height, width) for adjust_network_input
    stride: int = 8
    int8_keep_float: Optional[str] = None  # export's --int8_keep_float default (docs/export.md, INT8)
    openvino_int8_keep_float: Optional[str] = None  # the same for --target openvino (default: int8_keep_float)

    def paf_channels(self) -> List[int]:
        return [self.paf_start + c for pair in OPENPOSE_COCO18_PAF_CHANNELS for c in pair]


PRESETS: Dict[str, Preset] = {
    "tf_pose": Preset(
        "tf_pose",
        "openpose_coco18.json",
        (OutputNames("image:0", "Openpose/concat_stage7:0", "Openpose/concat_stage7:0", (1.0,) * 3, (0.0,) * 3),),
        heatmap_start=0,
        paf_start=19,
        input_layout="NHWC",
        channel_order="BGR",
        input_shape=(368, 368),
        # the refinement stages amplify 8-bit noise; only their first pointwise convolution (most of their
        # work) is quantised, and for OpenVINO their first depthwise one too (held-out AP: docs/export.md)
        int8_keep_float=TF_POSE_KEEP_FLOAT,
        openvino_int8_keep_float=TF_POSE_OPENVINO_KEEP_FLOAT,
    ),
    "lightweight_openpose": Preset(
        "lightweight_openpose",
        "openpose_coco18.json",
        (  # Open Model Zoo's IR normalises inside; the project's own ONNX export expects (x − 128) / 256
            OutputNames("data", "Mconv7_stage2_L2", "Mconv7_stage2_L1", (1.0,) * 3, (0.0,) * 3),
            OutputNames("data", "stage_1_output_1_heatmaps", "stage_1_output_0_pafs", (256.0,) * 3, (0.5,) * 3),
        ),
        heatmap_start=0,
        paf_start=0,
        input_layout="NCHW",
        channel_order="BGR",
        input_shape=(256, 456),
    ),
}


@dataclasses.dataclass(frozen=True)
class MappingCheck:
    """What :func:`check_mapping` saw: per part, the mean of its strongest heatmap peaks; per limb, the best
    mean PAF projection over its parts' strongest peak pairs (None where a part has no peak)."""

    part_responses: Dict[str, float]
    limb_alignments: Dict[str, Optional[float]]

    @property
    def median_alignment(self) -> Optional[float]:
        seen = [a for a in self.limb_alignments.values() if a is not None]
        return float(np.median(seen)) if seen else None

    def lines(self) -> List[str]:
        parts = ", ".join(f"{name} {value:.2f}" for name, value in self.part_responses.items())
        limbs = ", ".join(f"{name} {'-' if value is None else f'{value:.2f}'}" for name, value in self.limb_alignments.items())
        return [f"heatmap response at the strongest peaks: {parts}", f"PAF alignment along the limbs: {limbs}"]


@dataclasses.dataclass(frozen=True)
class ImportResult:
    model: str
    preset: str
    check: Optional[MappingCheck]
    input_alignment: int  # inputs are padded to a multiple of it and of the stride (bpnet.model.alignment)


def _network_names(source: str) -> Tuple[List[str], List[str]]:
    """Input and output tensor names of an ONNX file, an OpenVINO IR or a frozen TensorFlow graph."""
    if source.endswith(".onnx"):
        graph = load_onnx_graph_only(source).graph
        initialisers = {i.name for i in graph.initializer}
        return [i.name for i in graph.input if i.name not in initialisers], [o.name for o in graph.output]
    if source.endswith(".xml"):
        _, model = read_openvino_model(source)  # a tensor may have several names (OpenVINO merges them when fusing)
        return [n for i in model.inputs for n in sorted(i.get_names())], [n for o in model.outputs for n in sorted(o.get_names())]
    return [], []  # a frozen graph: the preset names its tensors


def detect_preset(source: str, inputs: Sequence[str], outputs: Sequence[str]) -> Tuple[Preset, OutputNames]:
    """The preset (and its naming variant) whose tensor names the network has; a frozen graph is tf_pose's."""
    if source.endswith(".pb"):
        return PRESETS["tf_pose"], PRESETS["tf_pose"].variants[0]
    found = [
        (preset, names)
        for preset in PRESETS.values()
        for names in preset.variants
        if names.input in inputs and {names.heatmap_output, names.paf_output} <= set(outputs)
    ]
    if len(found) != 1:
        raise BpnetError(
            f"{source}: no known layout found (inputs {list(inputs)}, outputs {list(outputs)}); give --preset "
            f"({', '.join(PRESETS)}) or describe the network with --network"
        )
    return found[0]


def _preset_variant(preset: Preset, source: str, inputs: Sequence[str], outputs: Sequence[str]) -> OutputNames:
    if source.endswith(".pb"):
        return preset.variants[0]
    for names in preset.variants:
        if {names.heatmap_output, names.paf_output} <= set(outputs):
            return names
    raise BpnetError(
        f"{source}: preset {preset.name}: the network has none of its output names "
        f"({', '.join(str(v.heatmap_output) + ' / ' + str(v.paf_output) for v in preset.variants)}); outputs: {list(outputs)}"
    )


def preset_metadata(preset: Preset, names: OutputNames) -> Dict[str, Any]:
    skeleton = Skeleton.from_file(str(resource_path("model_pose_config", preset.pose_config)))
    info = ModelInfo(skeleton, names.image_scale, names.image_offset, preset.stride, preset.input_layout, preset.channel_order)
    heat = list(range(preset.heatmap_start, preset.heatmap_start + skeleton.num_heatmap_channels))
    metadata = _metadata(
        info, names.input, names.heatmap_output, heat, names.paf_output, preset.paf_channels(), preset.input_shape
    )
    defaults = {"int8_keep_float": preset.int8_keep_float, "openvino_int8_keep_float": preset.openvino_int8_keep_float}
    if any(defaults.values()):
        metadata["export_defaults"] = {key: pattern for key, pattern in defaults.items() if pattern}
    return metadata


def network_metadata(network: NetworkSpec, input_name: str, input_shape: Tuple[int, int]) -> Dict[str, Any]:
    skeleton = Skeleton.from_file(network.pose_config_path)
    info = ModelInfo(skeleton, network.image_scale, network.image_offset, network.stride, "NHWC", network.channel_order)
    heat = list(range(*network.heatmap_channels))
    return _metadata(info, input_name, network.heatmap_output, heat, network.paf_output, list(network.paf_channels), input_shape)


def _metadata(info, input_name, heatmap_output, heat, paf_output, paf, input_shape) -> Dict[str, Any]:
    return {
        **info.to_dict(),
        "input": input_name,
        "outputs": {
            "heatmap": {"name": heatmap_output, "stride": info.stride, "channels": heat},
            "paf": {"name": paf_output, "stride": info.stride, "channels": paf},
        },
        "inference_defaults": {
            "input_shape": list(input_shape),
            "keep_aspect_ratio_mode": "adjust_network_input",
            "decoder_preset": "accurate",
        },
    }


def _convert_frozen_graph(source: str, output: str, names: OutputNames) -> None:
    """tf2onnx's conversion of a frozen TensorFlow 1 graph (in a subprocess: it imports TensorFlow 1 APIs), once
    :func:`_check_frozen_graph` has found the preset's nodes in it."""
    _check_frozen_graph(source, names)
    command = [sys.executable, "-m", "tf2onnx.convert", "--graphdef", source, "--inputs", names.input]
    command += ["--outputs", str(names.heatmap_output), "--opset", "17", "--output", output]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    except subprocess.TimeoutExpired:
        raise BpnetError(f"{source}: tf2onnx did not finish converting the graph in 30 minutes") from None
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if "Error" in line or "error" in line]
        raise BpnetError(f"{source}: tf2onnx could not convert the graph: {(errors or ['see its log'])[-1].strip()}")


def keras_model(proto, source: str, metadata: Dict[str, Any]) -> Tuple[Any, ModelInfo, Dict[str, Any]]:
    """``(Keras model, ModelInfo, extra metadata)``: an ONNX network described by ``metadata`` as a trainable Keras
    model with every stage's heads as outputs (:mod:`bpnet.model.onnx_keras`).

    The Keras model gives the PAF channels in the network's own order; its skeleton lists the limbs in that order
    (a limb's x and y channels must be adjacent, x first, as in every OpenPose-family network), so that no
    channel is moved. Its input is NHWC whatever the network's."""
    from bpnet.model.onnx_keras import onnx_to_keras

    info = ModelInfo.parse(metadata, f"{source}: bpnet metadata")
    heat, paf = metadata["outputs"]["heatmap"], metadata["outputs"]["paf"]
    heat_channels, paf_channels = list(heat["channels"]), list(paf["channels"])
    first_paf = min(paf_channels)
    local = [c - first_paf for c in paf_channels]
    pairs = [(local[2 * limb], local[2 * limb + 1]) for limb in range(len(local) // 2)]
    if sorted(local) != list(range(len(local))) or any(x % 2 or y != x + 1 for x, y in pairs):
        raise BpnetError(
            f"{source}: the PAF channels are not (x, y) pairs in one block; this network cannot become a .keras model"
        )
    native = sorted(range(len(pairs)), key=lambda limb: pairs[limb][0])
    skeleton = dataclasses.replace(info.skeleton, limbs=tuple(info.skeleton.limbs[limb] for limb in native))
    outputs = [o.name for o in proto.graph.output]
    model, _ = onnx_to_keras(
        proto,
        source,
        metadata["input"],
        info.input_layout == "NCHW",
        (heat["name"] or outputs[0], heat_channels[0], len(heat_channels)),
        (paf["name"] or outputs[0], first_paf, len(paf_channels)),
    )
    extras = {key: metadata[key] for key in EXTRA_METADATA_KEYS if key in metadata}
    return model, dataclasses.replace(info, skeleton=skeleton, input_layout="NHWC"), extras


def _check_frozen_graph(source: str, names: OutputNames) -> None:
    """Refuse, in one line saying what the file is, a ``.pb`` that is empty, is no TensorFlow GraphDef, or lacks
    the preset's input and output nodes (tf2onnx would call it a corrupt SavedModel or a missing tensor)."""
    from google.protobuf.message import DecodeError
    from tensorflow.core.framework import graph_pb2

    with open(source, "rb") as handle:
        data = handle.read()
    if not data:
        raise BpnetError(f"{source}: empty file, not a frozen TensorFlow graph")
    graph = graph_pb2.GraphDef()
    try:
        graph.ParseFromString(data)
    except DecodeError:
        raise BpnetError(f"{source}: not a frozen TensorFlow graph (the file does not parse as a GraphDef)") from None
    nodes = {node.name for node in graph.node}
    wanted = [name.split(":")[0] for name in (names.input, names.heatmap_output, names.paf_output) if name]
    missing = sorted({name for name in wanted if name not in nodes})
    if missing:
        raise BpnetError(
            f"{source}: a TensorFlow graph of {len(nodes)} nodes without the tf_pose nodes {', '.join(missing)}; "
            "not a tf-pose-estimation network"
        )


def check_mapping(model_path: str, image_path: str, top: int = 3) -> MappingCheck:
    """Run the imported model on ``image_path`` and measure whether its channel mapping makes sense: per
    part the mean of its ``top`` strongest heatmap peaks, per limb the best mean PAF projection (10 bilinear
    samples on the network-resolution PAFs) over the ``top × top`` strongest peak pairs of its two parts."""
    from bpnet.images import read_image
    from bpnet.infer.decode import DecoderParams, find_peaks, mean_paf_projections
    from bpnet.infer.predict import load_predictor

    predictor, _ = load_predictor(None, model_path)
    heat, paf, upsampling, _ = predictor.decoder_maps(read_image(image_path))
    skeleton = predictor.info.skeleton
    probe = DecoderParams(heatmap_threshold=0.05, max_peaks_per_part=top)
    peaks = find_peaks(heat, probe, skeleton.num_keypoints, upsampling)
    responses = {name: float(p[:, 2].mean()) if len(p) else 0.0 for name, p in zip(skeleton.keypoints, peaks)}
    alignments: Dict[str, Optional[float]] = {}
    for limb, (a, b) in enumerate(skeleton.limbs):
        name = f"{skeleton.keypoints[a]}-{skeleton.keypoints[b]}"
        if not len(peaks[a]) or not len(peaks[b]):
            alignments[name] = None
            continue
        pairs = np.array([(i, j) for i in range(len(peaks[a])) for j in range(len(peaks[b]))])
        projections = mean_paf_projections(
            peaks[a][pairs[:, 0], :2], peaks[b][pairs[:, 1], :2], paf[..., 2 * limb : 2 * limb + 2], upsampling
        )
        alignments[name] = float(projections.max())
    return MappingCheck(responses, alignments)


def import_model(
    source: str,
    output: str,
    preset: Optional[str] = None,
    network: Optional[str] = None,
    check_image: Optional[str] = None,
    input_shape: Optional[Tuple[int, int]] = None,
) -> ImportResult:
    """Import ``source`` (see the module docstring) as ``output`` (``.onnx``; ``.xml`` for an OpenVINO IR) and
    check its mapping on ``check_image`` when one is given; a refused mapping leaves no output behind."""
    if not os.path.isfile(source):
        raise BpnetError(f"{source}: model file not found")
    suffix = os.path.splitext(source)[1].lower()
    if suffix not in (".pb", ".onnx", ".xml"):
        raise BpnetError(f"{source}: expected a frozen TensorFlow graph (.pb), an ONNX file or an OpenVINO IR (.xml)")
    wanted = (".xml",) if suffix == ".xml" else (".onnx", ".keras")
    if not output.endswith(wanted):
        raise BpnetError(f"{output}: the imported model of a {suffix} file is written as {' or '.join(wanted)}")
    if preset is not None and preset not in PRESETS:
        raise BpnetError(f"--preset: unknown preset {preset!r} (known: {', '.join(PRESETS)})")
    if network is not None and (preset is not None or suffix != ".onnx"):
        raise BpnetError("--network describes an ONNX file, in place of a preset")
    if suffix == ".pb" and preset not in (None, "tf_pose"):
        raise BpnetError(f"{source}: a frozen TensorFlow graph is imported with the tf_pose preset, not {preset}")
    if check_image is not None and not os.path.isfile(check_image):
        raise BpnetError(f"{check_image}: check image not found (--check_image)")
    inputs, outputs = _network_names(source)
    if network is not None:
        spec = spec_loader.load(NetworkSpec, network)
        metadata = network_metadata(spec, inputs[0], input_shape or (368, 368))
        chosen = "network"
    else:
        if preset is None:
            chosen_preset, names = detect_preset(source, inputs, outputs)
        else:
            chosen_preset = PRESETS[preset]
            names = _preset_variant(chosen_preset, source, inputs, outputs)
        metadata = preset_metadata(chosen_preset, names)
        if input_shape is not None:
            metadata["inference_defaults"]["input_shape"] = list(input_shape)
        chosen = chosen_preset.name
    metadata["imported_from"] = {"file": os.path.basename(source), "layout": chosen}
    folder = os.path.dirname(os.path.abspath(output))
    os.makedirs(folder, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=temporary_prefix(os.path.basename(output)), dir=folder)
    try:  # the model is written and checked in a staging folder: a failure leaves nothing under its name
        staged = os.path.join(staging, os.path.basename(output))
        _write_model(source, staged, metadata)
        check = _check_staged(staged, check_image, source, chosen) if check_image is not None else None
        for name in sorted(os.listdir(staging)):
            os.replace(os.path.join(staging, name), os.path.join(folder, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if check is None:
        logger.warning("%s: the channel mapping was not checked; give --check_image with a photo of people", output)
    return ImportResult(os.path.abspath(output), chosen, check, metadata["input_alignment"])


def _check_staged(model: str, check_image: str, source: str, layout: str) -> MappingCheck:
    """:func:`check_mapping` of the staged model; a one-line error when its PAFs do not follow the limbs."""
    check = check_mapping(model, check_image)
    median = check.median_alignment
    if median is None or median < MIN_LIMB_ALIGNMENT:
        seen = "no limb with both parts" if median is None else f"median PAF alignment {median:.2f}"
        raise BpnetError(
            f"{source}: the {layout} channel mapping does not fit this network: on {check_image}, {seen} "
            f"(right mappings give 0.6 to 0.8 on photos of people; at least {MIN_LIMB_ALIGNMENT} needed)"
        )
    return check


def _write_model(source: str, output: str, metadata: Dict[str, Any]) -> None:
    """Write the imported model with ``metadata``, to which the network's ``input_alignment`` (read from its
    graph, :mod:`bpnet.model.alignment`) is added."""
    import onnx

    if output.endswith(".keras"):
        with tempfile.TemporaryDirectory() as work:
            onnx_path = source
            if source.endswith(".pb"):
                onnx_path = os.path.join(work, "converted.onnx")
                _convert_frozen_graph(source, onnx_path, PRESETS["tf_pose"].variants[0])
            proto = onnx.load(onnx_path)
            metadata["input_alignment"] = onnx_input_alignment(proto)
            model, info, extras = keras_model(proto, source, metadata)
        save_model(model, output, info, extras)
        return

    if source.endswith(".xml"):
        weights = os.path.splitext(source)[0] + ".bin"
        if not os.path.isfile(weights):
            raise BpnetError(f"{weights}: the IR's weights file not found beside {source}")
        metadata["input_alignment"] = openvino_input_alignment(read_openvino_model(source)[1])
        with atomic_path(os.path.splitext(output)[0] + ".bin") as tmp:
            shutil.copyfile(weights, tmp)
        with atomic_path(output) as tmp:
            shutil.copyfile(source, tmp)
        write_sidecar_metadata(output, metadata)
        return
    with atomic_path(output) as tmp:
        if source.endswith(".pb"):
            _convert_frozen_graph(source, tmp, PRESETS["tf_pose"].variants[0])
            proto = onnx.load(tmp)
        else:
            proto = onnx.load(source)
        metadata["input_alignment"] = onnx_input_alignment(proto)
        set_onnx_metadata(proto, metadata)
        onnx.save(proto, tmp)
