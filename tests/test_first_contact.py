"""A new user's and a TLT user's first runs (issue 17): fine-tuning, --set, spec-free inference, outputs that
match their inputs, TLT's file formats and flag spellings, reruns, and a quiet terminal."""

import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from bpnet.cli import cli
from bpnet.errors import BpnetError, SpecError
from bpnet.specs import load_train_spec

from .conftest import REPO_ROOT, SHARED_DATA, write_train_spec

pytestmark = pytest.mark.integration

TINY = {
    "dataloader.batch_size": 16,
    "model.stages": 1,
    "model.width_multiplier": 0.125,
    "model.kernel_initializer": "xavier",
    "validation_every_n_epoch": 0,
    "checkpoint_n_epoch": 1,
    "log_every_n_secs": 1000,
    "summary_every_n_steps": 1,
}


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def step_losses(run_dir: Path):
    """``total_loss`` per step from a run's TensorBoard events, in step order."""
    import tensorflow as tf

    losses = {}
    for path in sorted((run_dir / "events").glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag == "total_loss":
                    losses[event.step] = float(tf.make_ndarray(value.tensor))
    return [losses[step] for step in sorted(losses)]


def test_finetuning_restores_the_weights_and_starts_a_new_schedule(tmp_path, coco_mini_records):
    from bpnet.train.trainer import train

    records = coco_mini_records
    spec = write_train_spec(
        tmp_path, records, records / "dataset_spec.json", height=64, width=64, target=8, **{**TINY, "num_epoch": 4}
    )
    base = train(str(spec), str(tmp_path / "base"), progress=False)
    base_losses = step_losses(tmp_path / "base")
    finetune = load_train_spec(
        str(spec),
        overrides=[
            "num_epoch=1",
            f"finetuning_config.checkpoint_path={tmp_path / 'base'}",
            "finetuning_config.is_finetune_exp=true",
            "finetuning_config.ckpt_epoch_num=4",
            "random_seed=7",
        ],
    )
    tuned = train(finetune, str(tmp_path / "tuned"), progress=False)
    tuned_losses = step_losses(tmp_path / "tuned")
    assert tuned.steps == base.steps // 4 and tuned.resumed_from_epoch == 0  # a new schedule from step 0
    last = float(np.mean(base_losses[-base.steps // 4 :]))
    assert abs(tuned_losses[0] - last) < 0.25 * last, (tuned_losses[0], last, base_losses[0])
    assert abs(base_losses[0] - last) > 0.25 * last  # a fresh model starts far from there: the check can fail
    with pytest.raises(BpnetError, match="no checkpoint of epoch 9"):
        train(
            load_train_spec(
                str(spec),
                overrides=[
                    f"finetuning_config.checkpoint_path={tmp_path / 'base'}",
                    "finetuning_config.is_finetune_exp=true",
                    "finetuning_config.ckpt_epoch_num=9",
                ],
            ),
            str(tmp_path / "bad"),
            progress=False,
        )


def test_a_finished_training_rerun_does_nothing_and_gpus_1_trains_on_the_cpu(tmp_path, coco_mini_records):
    records = coco_mini_records
    spec = write_train_spec(
        tmp_path, records, records / "dataset_spec.json", height=64, width=64, target=8, **{**TINY, "num_epoch": 1}
    )
    first = run("train", "-e", spec, "-r", tmp_path / "run", "--gpus", "1")
    assert first.exit_code == 0, first.output
    final = tmp_path / "run" / "bpnet_model.keras"
    before = final.stat().st_mtime_ns
    again = run("train", "-e", spec, "-r", tmp_path / "run")
    assert again.exit_code == 0 and "already trained to epoch 1; nothing to do" in again.stdout, again.output
    assert final.stat().st_mtime_ns == before
    more = run("train", "-e", spec, "-r", tmp_path / "run", "--set", "num_epoch=2")
    assert more.exit_code == 0 and "train: 2 epochs" in more.stdout, more.output
    assert final.stat().st_mtime_ns != before


def test_set_overrides_are_typed_and_validated_like_the_file():
    spec = REPO_ROOT / "specs" / "bpnet_train_small_coco.yaml"
    loaded = load_train_spec(
        str(spec),
        overrides=["num_epoch=3", "dataloader.batch_size=2", "dataloader.augmentation_config.spatial_aug_params.flip_lr_prob=0"],
    )
    assert (loaded.num_epoch, loaded.dataloader.batch_size) == (3, 2)
    assert loaded.dataloader.augmentation_config.spatial_aug_params.flip_lr_prob == 0.0
    with pytest.raises(SpecError, match=r"dataloader\.batch_sise: unknown key; did you mean 'batch_size'\?"):
        load_train_spec(str(spec), overrides=["dataloader.batch_sise=2"])
    with pytest.raises(SpecError, match="num_epoch: expected an integer"):
        load_train_spec(str(spec), overrides=["num_epoch=many"])
    with pytest.raises(SpecError, match="expected key.path=value"):
        load_train_spec(str(spec), overrides=["num_epoch"])
    result = run("train", "-e", spec, "-r", "/nonexistent/never", "--set", "dataloader.batch_sise=2")
    assert result.exit_code == 2 and "did you mean 'batch_size'" in result.stderr


def test_spec_free_inference_labels_people_and_keeps_json_extra_keys(tiny_model, tmp_path):
    folder, _ = tiny_model
    model = folder / "run" / "bpnet_model.keras"
    listing = tmp_path / "list.json"
    messi = SHARED_DATA / "media" / "messi5.jpg"
    listing.write_text(json.dumps({"images": [{"full_image_path": str(messi), "camera": "north", "frame_id": 7}]}))
    result = run(
        "inference",
        "-m",
        model,
        "--input_type",
        "json",
        "--input",
        listing,
        "--results_dir",
        tmp_path / "out",
        "--dump_visualizations",
        "--set",
        "input_shape=[96,96]",
        "--set",
        "heatmap_threshold=0.01",
        "--set",
        "paf_threshold=0.0",
    )
    assert result.exit_code == 0, result.output
    detections = json.loads((tmp_path / "out" / "detections.json").read_text())
    entry = detections["images"][0]
    assert (entry["camera"], entry["frame_id"]) == ("north", 7)  # TLT kept the entry's other keys
    assert detections["inference_spec"]["model_path"] == str(model)
    assert detections["inference_spec"]["input_shape"] == [96, 96]
    rendering = cv2.imread(str(tmp_path / "out" / "images_annotated" / "messi5.png"))
    assert rendering is not None and rendering.shape == cv2.imread(str(messi)).shape


def test_labels_are_drawn_for_each_person():
    from bpnet.infer.results import Prediction
    from bpnet.skeleton import Skeleton

    skeleton = Skeleton("two", ("a", "b"), ((0, 1),))
    keypoints = np.array([[[40, 60, 1], [40, 90, 1]], [[120, 60, 1], [120, 90, 1]]], float)
    image = np.zeros((120, 200, 3), np.uint8)
    prediction = Prediction(keypoints, np.array([0.9, 0.5]), skeleton)
    plain, labelled = prediction.draw(image, labels=False), prediction.draw(image)
    changed = np.any(plain != labelled, axis=-1)
    rows = np.flatnonzero(changed.any(axis=1))
    assert changed[:, :100].any() and changed[:, 100:].any()  # one label per person
    assert rows.max() < 60  # above the people


def test_prune_accepts_tlt_layer_names_and_suggests_close_ones(tiny_model, tmp_path):
    folder, _ = tiny_model
    model = folder / "run" / "bpnet_model.keras"
    ok = run("prune", "-m", model, "-o", tmp_path / "p.keras", "-el", "stage1/conv1", "-pth", "0.5")
    assert ok.exit_code == 0, ok.output
    bad = run("prune", "-m", model, "-o", tmp_path / "q.keras", "-el", "stage1_conv9")
    assert bad.exit_code == 2 and "did you mean" in bad.stderr


def test_the_onnxruntime_int8_path_says_it_writes_no_tensorrt_cache(tiny_model, coco_val_sample, tmp_path, caplog):
    folder, _ = tiny_model
    result = run(
        "export",
        "-m",
        folder / "run" / "bpnet_model.keras",
        "-o",
        tmp_path / "m.onnx",
        "--data_type",
        "int8",
        "--cal_image_dir",
        coco_val_sample,
        "--batches",
        "2",
        "-d",
        "64,64,3",
        "--cal_cache_file",
        tmp_path / "cal.bin",
    )
    assert result.exit_code == 0, result.output
    assert "--cal_cache_file" in caplog.text and "not written" in caplog.text
    assert not (tmp_path / "cal.bin").exists()


def test_dataset_inspect_panels_have_titles_and_a_legend(tmp_path, coco_mini_records):
    spec = write_train_spec(tmp_path, coco_mini_records, coco_mini_records / "dataset_spec.json", height=64, width=64, target=8)
    result = run("dataset_inspect", "-e", spec, "-n", "1", "-o", tmp_path / "inspect")
    assert result.exit_code == 0, result.output
    picture = cv2.imread(str(tmp_path / "inspect" / "sample_0000.png"))
    assert picture.shape[0] > 2 * 64 + 40  # a caption band above and a legend below the 128-pixel panels
    assert picture[:10].mean() < 60 and picture[-5:].mean() < 80  # dark bands with light text


def test_no_tensorflow_start_up_noise_at_the_default_log_level(tiny_model, tmp_path):
    folder, _ = tiny_model
    command = [
        sys.executable,
        "-m",
        "bpnet",
        "inference",
        "-m",
        str(folder / "run" / "bpnet_model.keras"),
        "--input",
        str(SHARED_DATA / "media" / "messi5.jpg"),
        "--results_dir",
        str(tmp_path / "out"),
        "--set",
        "input_shape=[96,96]",
    ]
    quiet = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 0, quiet.stderr
    noise = [
        line
        for line in quiet.stderr.splitlines()
        if any(mark in line for mark in ("cuda", "absl", "cpu_feature_guard", "oneDNN", "I0000", "E0000", "W0000"))
    ]
    assert noise == [], noise

    from bpnet.cli_support import configure_logging

    try:
        configure_logging("DEBUG")  # -ll DEBUG lets TensorFlow's C++ log through again
        assert __import__("os").environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
    finally:
        configure_logging("INFO")


def test_readme_names_only_existing_specs_and_its_workflow_runs_on_a_cpu():
    readme = (REPO_ROOT / "README.md").read_text()
    for name in set(re.findall(r"(?:specs|data_pose_config|model_pose_config)/[\w.]+\.(?:yaml|json)", readme)):
        assert name.startswith("specs/my_") or (REPO_ROOT / name).is_file(), name  # my_*: an error example
    workflow = readme.split("## COCO workflow")[1].split("## Specs")[0]
    assert "specs/bpnet_train_small_coco.yaml" in workflow and "--gpus 1" not in workflow
    small = load_train_spec(str(REPO_ROOT / "specs" / "bpnet_train_small_coco.yaml"))
    assert small.pretrained_weights is None and small.model.width_multiplier <= 0.25 and small.model.stages == 1


def test_a_frozen_graph_or_a_bare_onnx_model_points_to_import_model(tmp_path):
    import onnx

    from .conftest import assert_one_line_error

    graph = tmp_path / "graph_opt.pb"
    graph.write_bytes(b"\x0a\x00")
    bare = tmp_path / "bare.onnx"
    onnx.save(onnx.helper.make_model(onnx.helper.make_graph([], "empty", [], [])), str(bare))
    image = tmp_path / "photo.png"
    cv2.imwrite(str(image), np.zeros((32, 32, 3), np.uint8))
    runner = CliRunner()
    for model in (graph, bare):
        arguments = ["inference", "-m", str(model), "--input", str(image), "--results_dir", str(tmp_path / "out")]
        result = runner.invoke(cli, arguments)
        assert_one_line_error(result, model.name, f"bpnet import_model -m {model}")
