"""`bpnet export`: ONNX against Keras on real images, metadata, INT8 ONNX Runtime, calibration, TensorRT parts."""

import dataclasses
import importlib.util
import json
import shutil

import numpy as np
import onnx
import onnxruntime
import pytest
from click.testing import CliRunner

from bpnet import specs
from bpnet.cli import cli
from bpnet.errors import BpnetError
from bpnet.export.calibration import (
    calibration_batches,
    calibration_data,
    preprocess_for_calibration,
    sample_calibration_images,
    sample_images,
)
from bpnet.export.onnx_export import (
    HEATMAP_OUTPUT,
    INPUT_NAME,
    PAF_OUTPUT,
    SDK_PAF_OUTPUT,
    OnnxSettings,
    to_onnx,
)
from bpnet.export.pipeline import ExportRequest, default_onnx_path, export, parse_input_dims
from bpnet.export.tensorrt import CalibrationFeeder, EngineSettings, optimization_profile
from bpnet.images import read_image
from bpnet.infer.predict import preprocess
from bpnet.model.build import build_model
from bpnet.model.io import ModelInfo, read_onnx_metadata, save_model

from .conftest import BODY18

INFO = ModelInfo(BODY18, (256.0,) * 3, (0.5,) * 3, 8)
ALIGNED_INFO = dataclasses.replace(INFO, input_alignment=8)  # what saving records: the VGG backbone down-samples by 8


def spread_model(seed: int = 0, attention: bool = False):
    """A 2-stage width-1/8 model with random batch-norm statistics and biases (so nothing is trivially 0)."""
    spec = specs.BpNetLiteModelSpec(
        backbone_attributes=specs.BackboneAttributes(architecture="vgg"),
        stages=2,
        width_multiplier=0.125,
        use_self_attention=attention,
        kernel_initializer="xavier",
    )
    model = build_model(spec, BODY18)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if layer.__class__.__name__ == "BatchNormalization":
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, w.shape).astype(np.float32)
                    if i in (0, 3)
                    else rng.normal(0, 0.1, w.shape).astype(np.float32)
                    for i, w in enumerate(weights)
                ]
            )
        elif len(weights) == 2:
            layer.set_weights([weights[0], rng.normal(0, 0.05, weights[1].shape).astype(np.float32)])
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    model = spread_model(attention=True)
    save_model(model, str(folder / "model.keras"), INFO)
    result = CliRunner().invoke(cli, ["export", "-m", str(folder / "model.keras"), "-o", str(folder / "model.onnx")])
    assert result.exit_code == 0, result.output
    return folder, model


def real_batch(folder, size=(96, 128)):
    images = sorted(str(p) for p in folder.glob("*.jpg"))
    return np.stack([preprocess(read_image(p), size, "pad_image_input", INFO)[0] for p in images])


def test_onnx_equals_keras_on_real_images_with_dynamic_batch_and_size(exported, coco_val_sample):
    folder, model = exported
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [INPUT_NAME]
    assert [o.name for o in session.get_outputs()] == [PAF_OUTPUT, HEATMAP_OUTPUT]
    for size in ((96, 128), (72, 64)):
        batch = real_batch(coco_val_sample, size)
        assert batch.shape[0] == 4
        paf, heat = session.run(None, {INPUT_NAME: batch})
        keras_outputs = model(batch, training=False)
        expected_heat, expected_paf = np.asarray(keras_outputs[1]), np.asarray(keras_outputs[3])
        assert heat.shape == expected_heat.shape == (4, size[0] // 8, size[1] // 8, 19)
        assert paf.shape == expected_paf.shape and paf.shape[-1] == 38
        assert np.abs(heat - expected_heat).max() <= 1e-4 and np.abs(paf - expected_paf).max() <= 1e-4
        assert np.abs(expected_heat).max() > 0.01  # the comparison is not between zeros


def test_metadata_round_trip_and_inference_from_onnx_alone(exported, coco_val_sample, tmp_path):
    folder, _ = exported
    metadata = read_onnx_metadata(str(folder / "model.onnx"))
    assert ModelInfo.from_dict(metadata) == ALIGNED_INFO
    assert metadata["outputs"]["paf"] == {"name": PAF_OUTPUT, "stride": 8} and metadata["sdk_compatible"] is False
    infer = tmp_path / "infer.yaml"  # the train spec named here does not exist: the ONNX file is self-describing
    infer.write_text(
        f"train_spec: {tmp_path / 'absent.yaml'}\ninput_shape: [96, 128]\noutput_upsampling_factor: [4, 4]\n"
        "heatmap_threshold: 0.02\n"
    )
    from bpnet.infer.predict import load_predictor

    onnx_predictor, _ = load_predictor(str(infer), str(folder / "model.onnx"))
    keras_predictor, _ = load_predictor(str(infer), str(folder / "model.keras"))
    image = read_image(str(sorted(coco_val_sample.glob("*.jpg"))[0]))
    onnx_heat, onnx_paf, _ = onnx_predictor.upsampled_maps(image)
    keras_heat, keras_paf, _ = keras_predictor.upsampled_maps(image)
    assert np.abs(onnx_heat - keras_heat).max() <= 1e-4 and np.abs(onnx_paf - keras_paf).max() <= 1e-4
    result = CliRunner().invoke(
        cli,
        [
            "inference",
            "-i",
            str(infer),
            "-m",
            str(folder / "model.onnx"),
            "--input_type",
            "dir",
            "--input",
            str(coco_val_sample),
            "--results_dir",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out" / "detections.json").read_text())


def test_onnx_without_metadata_is_a_clear_error(exported, tmp_path):
    folder, _ = exported
    proto = onnx.load(str(folder / "model.onnx"))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "bare.onnx"))
    infer = tmp_path / "infer.yaml"
    infer.write_text(f"train_spec: {tmp_path / 'absent.yaml'}\n")
    from bpnet.infer.predict import load_predictor

    with pytest.raises(BpnetError, match="bare.onnx: no bpnet metadata"):
        load_predictor(str(infer), str(tmp_path / "bare.onnx"))


def test_sdk_compatible_model_upsamples_pafs_nearest_and_static_batch():
    model = spread_model(seed=3)
    proto = to_onnx(model, INFO, OnnxSettings(static_batch_size=2, sdk_compatible=True, upsample_ratio=4))
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == [SDK_PAF_OUTPUT, HEATMAP_OUTPUT]
    assert session.get_inputs()[0].shape[0] == 2
    batch = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 64, 96, 3)).astype(np.float32)
    paf, heat = session.run(None, {INPUT_NAME: batch})
    expected_paf = np.asarray(model(batch, training=False)[3])
    assert paf.shape == (2, 32, 48, 38)
    np.testing.assert_allclose(paf, expected_paf.repeat(4, axis=1).repeat(4, axis=2), atol=1e-4)
    from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

    with pytest.raises(InvalidArgument, match="Got invalid dimensions"):
        session.run(None, {INPUT_NAME: batch[:1]})


def test_int8_onnx_runtime_model_is_quantized_close_and_self_describing(exported, coco_val_sample, tmp_path):
    folder, _ = exported
    result = export(
        ExportRequest(
            str(folder / "model.keras"),
            str(tmp_path / "m.onnx"),
            data_type="int8",
            input_dims="96,128,3",
            cal_image_dir=str(coco_val_sample),
            batches=2,
            batch_size=2,
            cal_data_file=str(tmp_path / "cal.npy"),
        )
    )
    assert result.int8_onnx_file == str(tmp_path / "m.int8.onnx")
    proto = onnx.load(result.int8_onnx_file)
    ops = [node.op_type for node in proto.graph.node]
    assert ops.count("QuantizeLinear") > 10 and ops.count("DequantizeLinear") > 10
    output_convs = [n for n in proto.graph.node if n.op_type == "Conv" and ("paf_out" in n.name or "heatmap_out" in n.name)]
    producers = {o: n for n in proto.graph.node for o in n.output}
    for conv in output_convs:  # the output convolutions read float weights (no DequantizeLinear in front)
        assert producers.get(conv.input[1]) is None or producers[conv.input[1]].op_type != "DequantizeLinear"
    assert ModelInfo.from_dict(read_onnx_metadata(result.int8_onnx_file)) == ALIGNED_INFO
    onnx.checker.check_model(proto)  # once failed: the bpnet metadata key was written twice
    assert [entry.key for entry in proto.metadata_props].count("bpnet") == 1
    batch = real_batch(coco_val_sample)
    fp32 = onnxruntime.InferenceSession(result.onnx_file, providers=["CPUExecutionProvider"]).run(None, {INPUT_NAME: batch})
    int8 = onnxruntime.InferenceSession(result.int8_onnx_file, providers=["CPUExecutionProvider"]).run(None, {INPUT_NAME: batch})
    for a, b in zip(fp32, int8):
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.98
        assert not np.array_equal(a, b)


def test_openvino_target_writes_fp32_and_int8_irs_that_run_like_onnx(exported, coco_val_sample, tmp_path):
    pytest.importorskip("openvino", reason="the optional openvino package is not installed")
    pytest.importorskip("nncf", reason="the optional nncf package is not installed")
    from bpnet.infer.backends import open_backend

    folder, _ = exported
    request = ExportRequest(
        str(folder / "model.keras"),
        str(tmp_path / "m.onnx"),
        data_type="int8",
        target="openvino",
        input_dims="96,128,3",
        cal_image_dir=str(coco_val_sample),
        batches=2,
        batch_size=2,
    )
    result = export(request)
    assert (result.openvino_file, result.int8_openvino_file) == (str(tmp_path / "m.xml"), str(tmp_path / "m.int8.xml"))
    for xml in (tmp_path / "m.xml", tmp_path / "m.int8.xml"):
        assert xml.with_suffix(".bin").is_file() and (tmp_path / (xml.name + ".json")).is_file()
    batch = real_batch(coco_val_sample)
    onnx_model, fp32, int8 = (open_backend(str(tmp_path / name)) for name in ("m.onnx", "m.xml", "m.int8.xml"))
    assert fp32.info == int8.info == onnx_model.info == ALIGNED_INFO
    for expected, got in zip(onnx_model.backend(batch), fp32.backend(batch)):
        np.testing.assert_allclose(got, expected, atol=1e-4)
    for expected, got in zip(onnx_model.backend(batch), int8.backend(batch)):
        assert np.corrcoef(expected.ravel(), got.ravel())[0, 1] > 0.98 and not np.array_equal(expected, got)


def test_openvino_int8_ranges_do_not_depend_on_how_the_calibration_images_are_batched(tmp_path):
    """The same 8 images as 8 batches of 1 and as 1 batch of 8 give the same activation ranges. With NNCF's default
    (the mean of each batch's maximum) the image input's range would be 4.5 against 8 here: checked by mutation."""
    openvino = pytest.importorskip("openvino", reason="the optional openvino package is not installed")
    pytest.importorskip("nncf", reason="the optional nncf package is not installed")
    from openvino import opset13 as ops

    from bpnet.export.openvino_export import quantize_openvino_int8

    rng = np.random.default_rng(0)

    def convolution(inputs, channels_in, channels_out, name):
        weights = ops.constant(rng.normal(0, 0.5, (channels_out, channels_in, 3, 3)).astype(np.float32))
        node = ops.convolution(inputs, weights, [1, 1], [1, 1], [1, 1], [1, 1])
        node.set_friendly_name(name)
        return node

    image = ops.parameter(openvino.PartialShape([-1, 3, 16, 16]), np.float32, name="image")
    hidden = ops.relu(convolution(ops.relu(convolution(image, 3, 8, "first")), 8, 8, "second"))
    openvino.save_model(openvino.Model([convolution(hidden, 8, 4, "output")], [image]), str(tmp_path / "m.xml"))
    images = (rng.uniform(0, 1, (8, 3, 16, 16)) * np.arange(1, 9)[:, None, None, None]).astype(np.float32)
    ranges = []
    for name, batches in (("ones", images.reshape(8, 1, 3, 16, 16)), ("eight", images.reshape(1, 8, 3, 16, 16))):
        int8 = tmp_path / f"{name}.int8.xml"
        quantize_openvino_int8(None, str(tmp_path / "m.xml"), str(int8), batches, {})
        quantisers = [op for op in openvino.Core().read_model(str(int8)).get_ops() if op.get_type_name() == "FakeQuantize"]
        ranges.append({op.get_friendly_name(): float(op.input_value(2).get_node().get_data().max()) for op in quantisers})
    assert len(ranges[0]) == 2 and ranges[0].keys() == ranges[1].keys()  # the image and the hidden activation
    for name, high in ranges[0].items():
        assert high == pytest.approx(ranges[1][name], rel=0.02), name
    assert ranges[0]["image/fq_output_0"] == pytest.approx(8, rel=0.02)  # the largest image's maximum


def test_calibration_batches_are_the_inference_preprocessing(coco_val_sample, tmp_path):
    paths = sample_images(str(coco_val_sample), 4)
    assert sample_images(str(coco_val_sample), 4) == paths and len(set(paths)) == 4
    batches = list(calibration_batches(paths, 2, (96, 128), INFO))
    assert len(batches) == 2 and batches[0].shape == (2, 96, 128, 3) and batches[0].dtype == np.float32
    for index, path in enumerate(paths):
        expected, _ = preprocess(read_image(path), (96, 128), "pad_image_input", INFO)
        np.testing.assert_array_equal(batches[index // 2][index % 2], expected)
        np.testing.assert_array_equal(preprocess_for_calibration(path, (96, 128), INFO), expected)
    data_file = tmp_path / "cal.npy"
    data = calibration_data((96, 128), INFO, 2, 2, str(coco_val_sample), str(data_file))
    np.testing.assert_array_equal(data, np.stack(batches))
    reused = calibration_data((96, 128), INFO, 2, 2, None, str(data_file))  # no images needed the second time
    np.testing.assert_array_equal(reused, data)
    with pytest.raises(BpnetError, match="cal.npy: holds calibration data of shape"):
        calibration_data((96, 128), INFO, 1, 2, None, str(data_file))
    with pytest.raises(BpnetError, match="fewer than --batches × --batch_size = 10"):
        calibration_data((96, 128), INFO, 5, 2, str(coco_val_sample))


def test_calibration_feeder_and_cache(tmp_path):
    data = np.arange(2 * 3 * 4 * 4 * 3, dtype=np.float32).reshape(2, 3, 4, 4, 3)
    feeder = CalibrationFeeder(data, str(tmp_path / "sub" / "cal.bin"))
    assert feeder.batch_size == 3 and feeder.read_cache() is None
    np.testing.assert_array_equal(feeder.next_batch(), data[0])
    np.testing.assert_array_equal(feeder.next_batch(), data[1])
    assert feeder.next_batch() is None
    feeder.write_cache(b"TRT-1000-EntropyCalibration2\ninput_1:0: 3c010a14\n")
    again = CalibrationFeeder(None, str(tmp_path / "sub" / "cal.bin"))
    assert again.read_cache() == b"TRT-1000-EntropyCalibration2\ninput_1:0: 3c010a14\n" and again.next_batch() is None


def test_optimization_profile_from_the_batch_flags():
    assert optimization_profile(EngineSettings(input_hw=(288, 384))) == {
        "min": (1, 288, 384, 3),
        "opt": (1, 288, 384, 3),
        "max": (1, 288, 384, 3),
    }
    profile = optimization_profile(
        EngineSettings(input_hw=(288, 384), opt_batch_size=4, max_batch_size=16, calibration_batch_size=8)
    )
    assert profile == {"min": (1, 288, 384, 3), "opt": (4, 288, 384, 3), "max": (16, 288, 384, 3)}
    assert optimization_profile(EngineSettings(input_hw=(64, 64), static_batch_size=8))["min"] == (8, 64, 64, 3)
    with pytest.raises(BpnetError, match="--opt_batch_size"):
        optimization_profile(EngineSettings(opt_batch_size=4, max_batch_size=2))


def test_flags_and_paths():
    assert parse_input_dims("288,384,3") == (288, 384) and parse_input_dims("3,288,384") == (288, 384)
    with pytest.raises(BpnetError, match="--input_dims"):
        parse_input_dims("288,384")
    assert default_onnx_path("a/model.keras", None) == "a/model.onnx"
    assert default_onnx_path("a/model.keras", "b/out.etlt") == "b/out.onnx"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data_type", "fp16"], "fp16: is a TensorRT precision"),
        (["-t", "uff"], "UFF is obsolete"),
        (["-i", "channels_first"], "channels_first is not supported"),
        (["--data_type", "int8"], "--cal_image_dir: needed for INT8 calibration"),
    ],
)
def test_export_flag_errors_are_one_line(exported, tmp_path, args, message):
    folder, _ = exported
    result = CliRunner().invoke(cli, ["export", "-m", str(folder / "model.keras"), "-o", str(tmp_path / "x.onnx"), *args])
    assert result.exit_code == 2 and message in result.output, result.output


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_tensorrt_target_without_tensorrt_says_so(exported, tmp_path):
    folder, _ = exported
    result = CliRunner().invoke(
        cli,
        [
            "export",
            "-m",
            str(folder / "model.keras"),
            "-o",
            str(tmp_path / "x.onnx"),
            "--engine_file",
            str(tmp_path / "x.engine"),
        ],
    )
    assert result.exit_code == 2 and "TensorRT is not installed" in result.output
    assert (tmp_path / "x.onnx").is_file()  # the ONNX model is written before the engine is attempted


def test_sample_calibration_images(coco_mini, tmp_path):
    annotations = coco_mini / "annotations" / "person_keypoints_train2017.json"
    coco = json.loads(annotations.read_text())
    labeled = {}
    for a in coco["annotations"]:
        if not a.get("iscrowd") and a["num_keypoints"] > 0:
            labeled[a["image_id"]] = labeled.get(a["image_id"], 0) + 1
    names = {i["id"]: i["file_name"] for i in coco["images"]}
    with_two = sorted(names[i] for i, n in labeled.items() if n >= 2)
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "sample_calibration_images",
            "-a",
            str(annotations),
            "-i",
            str(coco_mini / "train2017"),
            "-o",
            str(tmp_path / "cal"),
            "-n",
            "5",
            "-pth",
            "2",
            "--randomize",
        ],
    )
    assert result.exit_code == 0, result.output
    copied = sorted(p.name for p in (tmp_path / "cal").iterdir())
    assert len(copied) == 5 and set(copied) <= set(with_two)
    chosen = sample_calibration_images(str(annotations), str(coco_mini / "train2017"), str(tmp_path / "c2"), 3, 2)
    assert chosen == sorted(with_two, key=lambda n: [i for i, f in names.items() if f == n][0])[:3]
    too_many = runner.invoke(
        cli,
        [
            "sample_calibration_images",
            "-a",
            str(annotations),
            "-i",
            str(coco_mini / "train2017"),
            "-o",
            str(tmp_path / "c3"),
            "-n",
            str(len(with_two) + 1),
            "-pth",
            "2",
        ],
    )
    assert too_many.exit_code == 2 and f"only {len(with_two)} images have at least 2 labeled people" in too_many.output


def _gpu_with_tensorrt() -> bool:
    if importlib.util.find_spec("tensorrt") is None or shutil.which("nvidia-smi") is None:
        return False
    return True


@pytest.mark.skipif(not _gpu_with_tensorrt(), reason="TensorRT and an NVIDIA GPU are needed (absent on CI)")
@pytest.mark.parametrize("data_type, tolerance", [("fp32", 1e-3), ("fp16", 5e-2), ("int8", 0.25)])
def test_tensorrt_engine_matches_onnx_runtime(exported, coco_val_sample, tmp_path, data_type, tolerance):
    from bpnet.infer.backends import open_backend

    folder, _ = exported
    engine = tmp_path / f"model.{data_type}.engine"
    result = export(
        ExportRequest(
            str(folder / "model.keras"),
            str(tmp_path / "m.onnx"),
            data_type=data_type,
            engine_file=str(engine),
            input_dims="96,128,3",
            cal_image_dir=str(coco_val_sample),
            batches=2,
            batch_size=2,
            max_batch_size=4,
            cal_cache_file=str(tmp_path / "cal.bin"),
        )
    )
    assert engine.is_file()
    if data_type == "int8":
        assert (tmp_path / "cal.bin").is_file()
    batch = real_batch(coco_val_sample)
    paf, heat = onnxruntime.InferenceSession(result.onnx_file, providers=["CPUExecutionProvider"]).run(None, {INPUT_NAME: batch})
    trt_heat, trt_paf = open_backend(str(engine)).backend(batch)
    assert np.abs(trt_heat - heat).max() <= tolerance and np.abs(trt_paf - paf).max() <= tolerance


def test_an_nchw_network_gets_a_channels_first_profile():
    settings = EngineSettings(input_hw=(96, 128), max_batch_size=4, channels_last=False)
    assert optimization_profile(settings) == {"min": (1, 3, 96, 128), "opt": (1, 3, 96, 128), "max": (4, 3, 96, 128)}


def test_runtime_model_exports_refuse_bad_input_in_one_line(tmp_path):
    from .conftest import assert_one_line_error

    bare = tmp_path / "bare.onnx"
    onnx.save(onnx.helper.make_model(onnx.helper.make_graph([], "empty", [], [])), str(bare))
    runner = CliRunner()

    def run(*arguments):
        return runner.invoke(cli, ["export", *arguments])

    assert_one_line_error(run("-m", str(tmp_path / "missing.onnx")), "missing.onnx", "not found")
    assert_one_line_error(run("-m", str(bare)), "bare.onnx", "no bpnet metadata", "import_model")
    assert_one_line_error(run("-m", str(bare), "--data_type", "int8", "--int8_keep_float", "Stage(1"), "--int8_keep_float")
    assert_one_line_error(run("-m", str(bare), "--sdk_compatible_model"), "--sdk_compatible_model")
    described = tmp_path / "described.onnx"
    model = onnx.load(str(bare))
    from bpnet.export.onnx_export import OnnxSettings, metadata
    from bpnet.model.io import set_onnx_metadata

    set_onnx_metadata(model, {**metadata(INFO, OnnxSettings()), "export_defaults": {"int8_keep_float": 7}})
    onnx.save(model, str(described))
    assert_one_line_error(
        run("-m", str(described), "--data_type", "int8", "--cal_image_dir", str(tmp_path)), "export_defaults.int8_keep_float"
    )
    set_onnx_metadata(
        model,
        {**metadata(INFO, OnnxSettings()), "export_defaults": {"int8_keep_float": "x", "openvino_int8_keep_float": "Stage(1"}},
    )
    onnx.save(model, str(described))
    openvino_int8 = ["--target", "openvino", "--data_type", "int8", "--cal_image_dir", str(tmp_path)]
    assert_one_line_error(run("-m", str(described), *openvino_int8), "export_defaults.openvino_int8_keep_float")


def test_an_imported_models_int8_recommendation_is_the_one_for_the_target():
    from bpnet.export.pipeline import _metadata_keep_float
    from bpnet.importer import PRESETS, TF_POSE_KEEP_FLOAT, TF_POSE_OPENVINO_KEEP_FLOAT, preset_metadata

    preset = PRESETS["tf_pose"]
    both = preset_metadata(preset, preset.variants[0])
    assert _metadata_keep_float(both, "thin.onnx", "openvino") == TF_POSE_OPENVINO_KEEP_FLOAT
    for target in ("onnxruntime", "tensorrt"):
        assert _metadata_keep_float(both, "thin.onnx", target) == TF_POSE_KEEP_FLOAT
    older = {"export_defaults": {"int8_keep_float": TF_POSE_KEEP_FLOAT}}  # imported before the OpenVINO entry existed
    assert _metadata_keep_float(older, "thin.onnx", "openvino") == TF_POSE_KEEP_FLOAT
    assert _metadata_keep_float({}, "thin.onnx", "openvino") is None
