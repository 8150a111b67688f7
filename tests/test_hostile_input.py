"""Hostile input and faults: nothing written outside the outputs, one-line errors, nothing lost or left corrupt.

Each test names the class of issue 14 it covers. File-system faults use real file systems: a read-only
tmpfs and a tiny full tmpfs (root can write to a ``chmod 555`` folder, so permissions alone prove
nothing); those tests skip where mounting is not allowed.
"""

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from bpnet.cli import cli
from bpnet.files import TEMPORARY_MARK, atomic_path, remove_stale_temporaries
from bpnet.images import DEFAULT_MAX_IMAGE_PIXELS as MAX_IMAGE_PIXELS

from .conftest import (
    BODY18,
    COCO_MINI,
    SHARED_DATA,
    assert_one_line_error,
    write_dataset_spec,
    write_invalid_train_spec,
    write_train_spec,
)

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------- helpers


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def snapshot(root: Path, skip=()):
    """relative path → content digest (or link target) of everything under ``root`` except ``skip`` folders."""
    out = {}
    skip = [Path(s) for s in skip]
    for path in sorted(root.rglob("*")):
        if any(path == s or s in path.parents for s in skip):
            continue
        if path.is_symlink():
            out[str(path.relative_to(root))] = "link:" + os.readlink(path)
        elif path.is_file():
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            out[str(path.relative_to(root))] = "dir"
    return out


def last_status(folder: Path):
    return json.loads((folder / "status.json").read_text().splitlines()[-1])


@contextlib.contextmanager
def mounted_tmpfs(where: Path, size_kib: int = 1024, read_only: bool = False, fill=None):
    """A tmpfs at ``where`` (``fill(where)`` populates it first); remounted read-only if asked."""
    where.mkdir(parents=True, exist_ok=True)
    if (
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(where)], capture_output=True).returncode
        != 0
    ):
        pytest.skip("cannot mount a tmpfs here (needs root); the file-system fault tests need one")
    try:
        if fill:
            fill(where)
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True, capture_output=True)
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill_disk(where: Path) -> None:
    """Leave (almost) no free space on the tmpfs at ``where``."""
    with open(where / "filler", "wb", buffering=0) as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 4096)


PERSON = {
    "category_id": 1,
    "iscrowd": 0,
    "area": 5000.0,
    "bbox": [20.0, 20.0, 60.0, 100.0],
    "num_keypoints": 10,
    "segmentation": [[20, 20, 80, 20, 80, 120, 20, 120]],
    "keypoints": [v for k in range(17) for v in ((30 + 2 * k, 30 + 5 * k, 2) if k < 10 else (0, 0, 0))],
}


def write_dataset(folder: Path, images, annotations, real_image: bool = True):
    """A dataset spec in ``folder`` whose annotation file holds ``images`` and ``annotations``."""
    image_dir = folder / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    if real_image:
        cv2.imwrite(str(image_dir / "a.jpg"), np.full((200, 160, 3), 128, np.uint8))
    annotation_file = folder / "annotations.json"
    for index, annotation in enumerate(annotations):
        annotation.setdefault("id", index + 1)
    annotation_file.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "person"}]})
    )
    return write_dataset_spec(folder, image_dir, annotation_file)


def image(image_id, file_name, height=200, width=160):
    return {"id": image_id, "file_name": file_name, "height": height, "width": width}


def person(image_id, **changes):
    return {**json.loads(json.dumps(PERSON)), "image_id": image_id, **changes}


def convert(spec, folder, *extra):
    return run(
        "dataset_convert",
        "-d",
        spec,
        "-o",
        folder / "out" / "train",
        "-r",
        folder / "results",
        "--generate_masks",
        "--workers",
        "1",
        *extra,
    )


# --------------------------------------------------------------------------- 1. writes outside the dataset


def test_convert_never_writes_outside_the_mask_folder_nor_over_a_file_it_did_not_write(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("precious")
    absolute_target = tmp_path / "absolute" / "victim.txt"
    absolute_target.parent.mkdir()
    absolute_target.write_text("precious too")
    mask_root = tmp_path / "train_mask"
    mask_root.mkdir()
    (mask_root / "notes.png").write_text("a file of the user's, named like a mask")
    (mask_root / "link").symlink_to(outside, target_is_directory=True)
    images = [
        image(1, "a.jpg"),
        image(2, "../outside/victim.txt"),
        image(3, str(absolute_target)),
        image(4, "notes.jpg"),
        image(5, "link/b.jpg"),
        image(6, f"{'../' * 12}tmp/escape-{tmp_path.name}.jpg"),
    ]
    spec = write_dataset(tmp_path, images, [person(i) for i in range(1, 7)])
    before = snapshot(tmp_path, skip=[tmp_path / "out", tmp_path / "results", mask_root])

    result = convert(spec, tmp_path)

    assert result.exit_code == 0, result.output
    assert snapshot(tmp_path, skip=[tmp_path / "out", tmp_path / "results", mask_root]) == before
    assert (outside / "victim.txt").read_text() == "precious"
    assert absolute_target.read_text() == "precious too"
    assert (mask_root / "notes.png").read_text() == "a file of the user's, named like a mask"
    assert not Path(f"/tmp/escape-{tmp_path.name}.png").exists()
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"]
    assert "5 images skipped" in result.stdout
    assert "file_name leaves the image folder" in result.stdout
    assert "not a bpnet mask" in result.stdout and "through a symlink" in result.stdout
    from bpnet.data.records import read_records

    records = list(read_records(str(tmp_path / "out" / "train-fold-000-of-001")))
    assert [r.image_path for r in records] == [os.path.join(str(tmp_path / "images"), "a.jpg")]


def test_a_rerun_replaces_its_own_masks(tmp_path):
    spec = write_dataset(tmp_path, [image(1, "a.jpg")], [person(1)])
    assert convert(spec, tmp_path).exit_code == 0
    first = (tmp_path / "train_mask" / "a.png").read_bytes()
    result = convert(spec, tmp_path)
    assert result.exit_code == 0 and "0 images skipped" in result.stdout, result.output
    assert (tmp_path / "train_mask" / "a.png").read_bytes() == first


# --------------------------------------------------------------------------- 2. reads outside the image folder


def test_sample_calibration_images_reads_nothing_outside_the_image_folder(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0")
    images_dir = tmp_path / "images"
    images_dir.mkdir()
    cv2.imwrite(str(images_dir / "good.jpg"), np.zeros((8, 8, 3), np.uint8))
    annotation_file = tmp_path / "annotations.json"
    annotation_file.write_text(
        json.dumps(
            {
                "images": [
                    {"id": 1, "file_name": "../secret.txt"},
                    {"id": 2, "file_name": str(secret)},
                    {"id": 3, "file_name": "good.jpg"},
                ],
                "annotations": [
                    {"image_id": 1, "num_keypoints": 5},
                    {"image_id": 2, "num_keypoints": 5},
                    {"image_id": 3, "num_keypoints": 5},
                    {"num_keypoints": 5},
                    {"image_id": [1], "num_keypoints": 3},
                ],
            }
        )
    )
    result = run("sample_calibration_images", "-a", annotation_file, "-i", images_dir, "-o", tmp_path / "out", "-n", "1")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.jpg"]
    too_many = run("sample_calibration_images", "-a", annotation_file, "-i", images_dir, "-o", tmp_path / "out2", "-n", "2")
    assert_one_line_error(too_many, "only 1 images")
    assert not any(p.name == "secret.txt" for p in tmp_path.rglob("*") if p != secret)


# --------------------------------------------------------------------------- 3. duplicate image ids


def test_duplicate_image_ids_are_skipped_and_counted(tmp_path):
    cv2.imwrite(str(tmp_path / "b.jpg"), np.zeros((200, 160, 3), np.uint8))
    spec = write_dataset(tmp_path, [image(1, "a.jpg"), image(1, "b.jpg"), image(2, "a.jpg")], [person(1), person(2)])
    result = convert(spec, tmp_path)
    assert result.exit_code == 0, result.output
    assert "2 image id used by several image entries" in result.stdout
    assert "1 image_id names several images" in result.stdout
    assert "1 records" in result.stdout


# --------------------------------------------------------------------------- 4, 8. malformed annotations


BAD_ANNOTATIONS = {
    "RLE counts that do not cover the image": {"segmentation": {"counts": [5, 20], "size": [200, 160]}},
    "negative RLE counts": {"segmentation": {"counts": [-5, 32005], "size": [200, 160]}},
    "garbage compressed RLE": {"segmentation": {"counts": "0000", "size": [200, 160]}},
    "RLE of another size": {"segmentation": {"counts": [100], "size": [10, 10]}},
    "polygon far outside the image": {"segmentation": [[0, 0, 1e30, 0, 1e30, 1e30]]},
    "iscrowd that is a word": {"iscrowd": "no"},
    "zero-height bbox": {"bbox": [20.0, 20.0, 60.0, 0.0]},
}


def test_malformed_annotations_are_skipped_and_counted_not_crashing(tmp_path):
    images = [image(i + 1, "a.jpg") if i == 0 else image(i + 1, f"a{i}.jpg") for i in range(len(BAD_ANNOTATIONS) + 1)]
    annotations = [person(1)] + [person(i + 2, **change) for i, change in enumerate(BAD_ANNOTATIONS.values())]
    spec = write_dataset(tmp_path, images, annotations)
    result = convert(spec, tmp_path)
    assert result.exit_code == 0, result.output
    assert f"{len(BAD_ANNOTATIONS)} bad annotations skipped" in result.stdout
    for reason in (
        "RLE counts are malformed",
        "RLE size is not the image's",
        "polygon lies far outside",
        "iscrowd is not 0 or 1",
        "bbox has zero width or height",
    ):
        assert reason in result.stdout
    assert "1 records" in result.stdout


def test_compressed_rle_decoding_matches_pycocotools():
    from pycocotools import mask as mask_utils

    from bpnet.data.coco import decode_compressed_counts

    rng = np.random.default_rng(0)
    for _ in range(50):
        height, width = rng.integers(1, 40, size=2)
        binary = (rng.random((height, width)) < rng.random()).astype(np.uint8)
        compressed = mask_utils.encode(np.asfortranarray(binary))["counts"].decode()
        flat = binary.ravel(order="F")
        changes = np.flatnonzero(np.diff(flat)) + 1
        bounds = np.concatenate([[0], changes, [flat.size]])
        runs = list(np.diff(bounds))
        if flat[0] == 1:
            runs = [0] + runs
        assert decode_compressed_counts(compressed) == runs
    assert decode_compressed_counts("0\x7f") is None


# --------------------------------------------------------------------------- 5. memory exhaustion


def test_a_huge_declared_image_is_refused_before_any_allocation(tmp_path):
    spec = write_dataset(tmp_path, [image(1, "a.jpg"), image(2, "huge.jpg", 40000, 40000)], [person(1), person(2)])
    started = time.perf_counter()
    result = convert(spec, tmp_path)
    assert result.exit_code == 0, result.output
    assert f"declared image size over {MAX_IMAGE_PIXELS} pixels" in result.stdout
    assert time.perf_counter() - started < 60  # a guard against allocating the 1.6 G-pixel mask, not a benchmark


def test_a_yaml_alias_bomb_and_duplicate_keys_are_refused(tiny_model, tmp_path):
    _, infer = tiny_model
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(infer.read_text() + "evaluator:\n" + "\n".join("  " + line for line in levels) + "\n")
    assert len(bomb.read_bytes()) < 2000
    result = run("inference", "-i", bomb, "--input", SHARED_DATA / "media" / "messi5.jpg", "--results_dir", tmp_path / "r")
    assert_one_line_error(result, str(bomb), "anchors")
    duplicate = tmp_path / "duplicate.yaml"
    duplicate.write_text(infer.read_text() + "heatmap_threshold: 0.5\n")
    assert_one_line_error(
        run("inference", "-i", duplicate, "--input", "x.jpg", "--results_dir", tmp_path / "r2"),
        str(duplicate),
        "'heatmap_threshold' is given twice",
    )


# --------------------------------------------------------------------------- 4, 8. spec values that fail later


@pytest.mark.parametrize(
    "changes, fragments",
    [
        ({"summary_every_n_steps": 0}, ["summary_every_n_steps", "must be >= 1"]),
        ({"random_seed": -1}, ["random_seed", "[0, 2^32)"]),
        ({"dataloader.augmentation_config.spatial_aug_params.translate_max_x": float("inf")}, ["translate_max_x", "finite"]),
        ({"dataloader.pose_config.target_shape": [16, 16]}, ["target_shape", "stride of 4", "model's is 8"]),
        (
            {
                "optimizer.learning_rate_schedule": {
                    "__class_name__": "BpNetExponentialDecayLRSchedule",
                    "learning_rate": -0.1,
                    "decay_epochs": 1.0,
                    "decay_rate": 0.5,
                }
            },
            ["learning_rate", "positive"],
        ),
    ],
)
def test_train_spec_values_that_could_only_fail_later_are_refused(tmp_path, changes, fragments):
    spec = write_invalid_train_spec(tmp_path, tmp_path, tmp_path / "dataset.json", **changes)
    result = run("train", "-e", spec, "-r", tmp_path / "run")
    assert_one_line_error(result, str(spec), *fragments)


@pytest.mark.parametrize(
    "line, fragments",
    [
        ("heatmap_threshold: .nan", ["heatmap_threshold", "finite"]),
        ("paf_threshold: -0.5", ["paf_threshold", "[0, 1]"]),
    ],
)
def test_inference_spec_thresholds_must_be_real_and_in_range(tiny_model, tmp_path, line, fragments):
    _, infer = tiny_model
    bad = tmp_path / "infer.yaml"
    key = line.split(":")[0]
    kept = [existing for existing in infer.read_text().splitlines() if not existing.startswith(key + ":")]
    bad.write_text("\n".join(kept + [line]) + "\n")
    result = run("inference", "-i", bad, "--input", "x.jpg", "--results_dir", tmp_path / "r")
    assert_one_line_error(result, str(bad), *fragments)


def test_wrong_heat_channels_and_missing_images_are_one_line_errors_with_failure_status(tmp_path, coco_mini_records):
    spec = write_train_spec(
        tmp_path,
        coco_mini_records,
        coco_mini_records / "dataset_spec.json",
        height=64,
        width=64,
        target=8,
        **{"model.heat_channels": 7, "validation_every_n_epoch": 0},
    )
    result = run("train", "-e", spec, "-r", tmp_path / "run")
    assert_one_line_error(result, str(spec), "heat_channels is 7", "needs 19")
    assert last_status(tmp_path / "run")["status"] == "FAILURE"

    dataset_spec = write_dataset(tmp_path / "data", [image(1, "a.jpg")], [person(1)])
    assert convert(dataset_spec, tmp_path / "data").exit_code == 0
    (tmp_path / "data" / "images" / "a.jpg").unlink()
    spec = write_train_spec(
        tmp_path,
        tmp_path / "data" / "out",
        dataset_spec,
        height=64,
        width=64,
        target=8,
        **{
            "dataloader.batch_size": 1,
            "model.stages": 1,
            "model.width_multiplier": 0.125,
            "validation_every_n_epoch": 0,
            "dataloader.shuffle_buffer_size": 1,
            "dataloader.dataset_config.train_records_path": ["train-fold-000-of-001"],
        },
    )
    result = run("train", "-e", spec, "-r", tmp_path / "run2")
    assert_one_line_error(result, "a.jpg", "image not found")
    assert last_status(tmp_path / "run2")["status"] == "FAILURE"


# --------------------------------------------------------------------------- 4, 8. hostile model files


def test_a_keras_model_with_empty_or_bad_metadata_is_a_one_line_error(tiny_model, tmp_path):
    folder, infer = tiny_model
    model = next((folder / "run").glob("bpnet_model.keras"))
    for name, payload in (("empty", "{}"), ("stride0", None)):
        crafted = tmp_path / f"{name}.keras"
        with zipfile.ZipFile(model) as source, zipfile.ZipFile(crafted, "w") as target:
            for item in source.infolist():
                data = source.read(item.filename)
                if item.filename == "bpnet.json":
                    info = json.loads(data)
                    data = payload if payload is not None else json.dumps({**info, "stride": 0})
                target.writestr(item, data)
        result = run(
            "inference",
            "-i",
            infer,
            "-m",
            crafted,
            "--input",
            SHARED_DATA / "media" / "messi5.jpg",
            "--results_dir",
            tmp_path / name,
        )
        assert_one_line_error(result, str(crafted), "bpnet.json", "skeleton: missing" if name == "empty" else "stride")
        assert last_status(tmp_path / name)["status"] == "FAILURE"


def test_an_onnx_model_whose_outputs_do_not_fit_its_metadata_is_a_one_line_error(tiny_model, tmp_path):
    import onnx

    folder, infer = tiny_model
    model = folder / "run" / "bpnet_model.keras"
    assert run("export", "-m", model, "-o", tmp_path / "model.onnx").exit_code == 0
    proto = onnx.load(str(tmp_path / "model.onnx"))
    for entry in proto.metadata_props:
        if entry.key == "bpnet":
            metadata = json.loads(entry.value)
            metadata["outputs"]["paf"]["name"] = metadata["outputs"]["heatmap"]["name"]
            entry.value = json.dumps(metadata)
    onnx.save(proto, str(tmp_path / "crafted.onnx"))
    result = run(
        "inference",
        "-i",
        infer,
        "-m",
        tmp_path / "crafted.onnx",
        "--input",
        SHARED_DATA / "media" / "messi5.jpg",
        "--results_dir",
        tmp_path / "r",
    )
    assert_one_line_error(result, "crafted.onnx", "has 19 channels", "PAF")


def test_pruning_everything_keeps_a_working_model(tiny_model, tmp_path):
    folder, infer = tiny_model
    output = tmp_path / "pruned.keras"
    result = run("prune", "-m", folder / "run" / "bpnet_model.keras", "-o", output, "-pth", "1000", "-nf", "0")
    assert result.exit_code == 0, result.output
    assert (
        run(
            "inference",
            "-i",
            infer,
            "-m",
            output,
            "--input",
            SHARED_DATA / "media" / "messi5.jpg",
            "--results_dir",
            tmp_path / "r",
        ).exit_code
        == 0
    )


def test_a_pickled_calibration_file_is_refused_not_loaded(tiny_model, tmp_path):
    folder, _ = tiny_model
    pickled = tmp_path / "cal.npy"
    np.save(pickled, np.array([{"not": "an array"}], dtype=object), allow_pickle=True)
    result = run(
        "export",
        "-m",
        folder / "run" / "bpnet_model.keras",
        "-o",
        tmp_path / "m.onnx",
        "--data_type",
        "int8",
        "--cal_data_file",
        pickled,
        "-d",
        "32,32,3",
        "--batches",
        "1",
    )
    assert_one_line_error(result, str(pickled), "--cal_data_file")


# --------------------------------------------------------------------------- 4. read-only and full disks


@pytest.mark.parametrize("command", ["inference", "export", "prune"])
def test_a_read_only_results_folder_is_a_one_line_error(tiny_model, tmp_path, command):
    folder, infer = tiny_model
    model = folder / "run" / "bpnet_model.keras"
    with mounted_tmpfs(tmp_path / "ro", read_only=True) as read_only:
        args = {
            "inference": [
                "inference",
                "-i",
                infer,
                "--input",
                SHARED_DATA / "media" / "messi5.jpg",
                "--results_dir",
                read_only / "out",
            ],
            "export": ["export", "-m", model, "-o", read_only / "model.onnx"],
            "prune": ["prune", "-m", model, "-o", read_only / "pruned.keras"],
        }[command]
        line = assert_one_line_error(run(*args), str(read_only))
        assert "read-only" in line.lower()


@pytest.mark.parametrize("command", ["export", "inference", "dataset_convert", "train"])
def test_a_full_disk_is_a_one_line_error_and_a_failure_status(tiny_model, coco_mini_records, tmp_path, command):
    folder, infer = tiny_model
    model = folder / "run" / "bpnet_model.keras"
    status_dir = tmp_path / "status"
    with mounted_tmpfs(tmp_path / "full", size_kib=256, fill=fill_disk) as full:
        if command == "export":
            result = run("export", "-m", model, "-o", full / "model.onnx", "-r", status_dir)
        elif command == "inference":  # the renderings fill the disk, status.json and the journal do not
            status_dir = tmp_path / "out"
            with mounted_tmpfs(status_dir / "images_annotated", size_kib=64, fill=fill_disk):
                result = run(
                    "inference",
                    "-i",
                    infer,
                    "--input_type",
                    "dir",
                    "--input",
                    COCO_MINI / "train2017",
                    "--results_dir",
                    status_dir,
                    "--dump_visualizations",
                )
        elif command == "dataset_convert":
            spec = write_dataset(tmp_path / "data", [image(1, "a.jpg")], [person(1)])
            result = run("dataset_convert", "-d", spec, "-o", full / "train", "-r", status_dir, "--workers", "1")
        else:
            spec = write_train_spec(
                tmp_path,
                coco_mini_records,
                coco_mini_records / "dataset_spec.json",
                height=64,
                width=64,
                target=8,
                **{
                    "dataloader.batch_size": 16,
                    "model.stages": 1,
                    "model.width_multiplier": 0.125,
                    "num_epoch": 1,
                    "checkpoint_n_epoch": 1,
                    "validation_every_n_epoch": 0,
                },
            )
            status_dir = tmp_path / "run"
            (status_dir / "checkpoints").mkdir(parents=True)
            with mounted_tmpfs(status_dir / "checkpoints", size_kib=64, fill=fill_disk):
                result = run("train", "-e", spec, "-r", status_dir)
        assert_one_line_error(result, "no space left on the device")
        assert last_status(status_dir)["status"] == "FAILURE"
        assert not [p for p in full.rglob("*") if TEMPORARY_MARK in p.name]


# --------------------------------------------------------------------------- 6. interrupted work


def _bpnet(*args):
    return subprocess.Popen(
        [sys.executable, "-m", "bpnet", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _kill_when(process, ready, timeout=240):
    deadline = time.time() + timeout
    while not ready():
        assert process.poll() is None, process.communicate()[0]
        assert time.time() < deadline, "the run never reached the point to kill it at"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()


@contextlib.contextmanager
def _captured_log():
    """The root logger's records as text (the CLI's own handler writes to the real stderr)."""
    import io
    import logging

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logging.getLogger().addHandler(handler)
    try:
        yield stream
    finally:
        logging.getLogger().removeHandler(handler)


def _entries(folder: Path):
    return json.loads((folder / "detections.json").read_text())["images"]


def test_kill_9_during_folder_inference_then_rerun_equals_an_uninterrupted_run(tiny_model, tmp_path):
    _, infer = tiny_model
    images = tmp_path / "images"
    images.mkdir()
    for path in sorted((COCO_MINI / "train2017").iterdir())[:12]:
        (images / path.name).symlink_to(path)
    args = ("inference", "-i", infer, "--input_type", "dir", "--input", images, "--dump_visualizations")
    journal = tmp_path / "killed" / "detections.partial.jsonl"
    killed = _bpnet(*args, "--results_dir", tmp_path / "killed")
    _kill_when(killed, lambda: journal.exists() and len(journal.read_text().splitlines()) >= 4)
    assert not (tmp_path / "killed" / "detections.json").exists()
    done_before = journal.read_text().count("\n") - 1  # complete lines; a cut-short last one is dropped
    assert 3 <= done_before < 12
    with _captured_log() as log:
        resumed = run(*args, "--results_dir", tmp_path / "killed")
    assert resumed.exit_code == 0, resumed.output
    assert f"Resuming: {done_before} of 12 images" in log.getvalue()
    assert run(*args, "--results_dir", tmp_path / "straight").exit_code == 0
    assert _entries(tmp_path / "killed") == _entries(tmp_path / "straight")
    assert not journal.exists()
    assert {p.name for p in (tmp_path / "killed" / "images_annotated").iterdir()} == {p.stem + ".png" for p in images.iterdir()}
    assert not [p for p in (tmp_path / "killed").rglob("*") if TEMPORARY_MARK in p.name]


def test_kill_9_during_video_inference_leaves_no_corrupt_video_and_a_rerun_has_every_frame(tiny_model, tmp_path):
    _, infer = tiny_model
    source = tmp_path / "clip.avi"
    frames = [cv2.resize(cv2.imread(str(p)), (160, 120)) for p in sorted((COCO_MINI / "train2017").iterdir())[:16]]
    writer = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (160, 120))
    for frame in frames:
        writer.write(frame)
    writer.release()
    args = ("inference", "-i", infer, "--input_type", "video", "--input", source, "--dump_visualizations")
    annotated = tmp_path / "killed" / "images_annotated"
    killed = _bpnet(*args, "--results_dir", tmp_path / "killed")
    _kill_when(killed, lambda: annotated.exists() and any(TEMPORARY_MARK in p.name for p in annotated.iterdir()))
    assert not (annotated / "clip.mp4").exists()
    assert [p for p in annotated.iterdir() if TEMPORARY_MARK in p.name]
    rerun = run(*args, "--results_dir", tmp_path / "killed")
    assert rerun.exit_code == 0, rerun.output
    assert run(*args, "--results_dir", tmp_path / "straight").exit_code == 0
    assert _entries(tmp_path / "killed") == _entries(tmp_path / "straight")
    capture = cv2.VideoCapture(str(annotated / "clip.mp4"))
    count = 0
    while capture.read()[0]:
        count += 1
    assert count == len(frames)
    assert sorted(p.name for p in annotated.iterdir()) == ["clip.mp4"]


def test_the_epoch_model_is_recreated_on_resume_when_a_kill_interrupted_its_saving(tmp_path, coco_mini_records):
    from bpnet.train.trainer import train

    changes = {
        "dataloader.batch_size": 16,
        "model.stages": 1,
        "model.width_multiplier": 0.125,
        "validation_every_n_epoch": 0,
        "num_epoch": 1,
        "checkpoint_n_epoch": 1,
    }
    spec = write_train_spec(
        tmp_path, coco_mini_records, coco_mini_records / "dataset_spec.json", height=64, width=64, target=8, **changes
    )
    run_dir = tmp_path / "run"
    train(str(spec), str(run_dir), progress=False)
    (run_dir / "model.epoch-0001.keras").unlink()
    (run_dir / f".model.epoch-0001{TEMPORARY_MARK}999999999-x.keras").write_bytes(b"half a model")
    spec = write_train_spec(
        tmp_path,
        coco_mini_records,
        coco_mini_records / "dataset_spec.json",
        height=64,
        width=64,
        target=8,
        **{**changes, "num_epoch": 2},
    )
    train(str(spec), str(run_dir), progress=False)
    assert (run_dir / "model.epoch-0001.keras").is_file() and (run_dir / "model.epoch-0002.keras").is_file()
    assert not [p for p in run_dir.iterdir() if TEMPORARY_MARK in p.name]


@pytest.mark.parametrize("pipeline", ["sequential", "threads"])
def test_ctrl_c_writes_a_failure_status_and_keeps_the_journal(tiny_model, tmp_path, monkeypatch, pipeline):
    """Ctrl-C while the third image is in the network (in the network thread with ``threads``): exit 130,
    FAILURE, and the journal keeps the two images done before it."""
    from bpnet.infer import predict

    _, infer = tiny_model
    calls = {"n": 0}
    original = predict.Predictor.decoder_maps

    def interrupted(self, image):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, image)

    monkeypatch.setattr(predict.Predictor, "decoder_maps", interrupted)
    result = run(
        "inference",
        "-i",
        infer,
        "--input_type",
        "dir",
        "--input",
        COCO_MINI / "train2017",
        "--results_dir",
        tmp_path / "out",
        "--pipeline",
        pipeline,
    )
    assert result.exit_code == 130 and "Interrupted" in result.stderr
    assert last_status(tmp_path / "out")["status"] == "FAILURE"
    assert len((tmp_path / "out" / "detections.partial.jsonl").read_text().splitlines()) == 3


# --------------------------------------------------------------------------- 7. orphans and races


def _state_and_parent(pid: int):
    """(state letter, parent pid) of a process from /proc, or None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def _children(pid: int):
    return [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and (_state_and_parent(int(entry.name)) or ("", 0))[1] == pid
    ]


def _running(pid: int) -> bool:
    state = _state_and_parent(pid)
    return state is not None and state[0] not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to list worker processes")
def test_convert_workers_die_with_their_parent(tmp_path):
    count = 60
    images = [image(i, f"img{i}.jpg", 3000, 3000) for i in range(1, count + 1)]
    annotations = [person(i, segmentation=[[20, 20, 2900, 30, 2800, 2900, 40, 2700]]) for i in range(1, count + 1)]
    spec = write_dataset(tmp_path, images, annotations)
    process = _bpnet("dataset_convert", "-d", spec, "-o", tmp_path / "out" / "train", "--generate_masks", "--workers", "2")
    workers = []

    def started():
        workers[:] = _children(process.pid)
        return len(workers) >= 2 and (tmp_path / "train_mask").exists() and any((tmp_path / "train_mask").iterdir())

    _kill_when(process, started)
    deadline = time.time() + 10
    while [pid for pid in workers if _running(pid)]:
        assert time.time() < deadline, f"workers {workers} outlived their parent"
        time.sleep(0.1)


def test_temporaries_are_unpredictable_and_status_json_follows_no_symlink(tiny_model, tmp_path):
    _, infer = tiny_model
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / f".detections.tmp-{os.getpid()}.json").symlink_to(victim)
    result = run("inference", "-i", infer, "--input", SHARED_DATA / "media" / "messi5.jpg", "--results_dir", out)
    assert result.exit_code == 0, result.output
    assert victim.read_text() == "precious"
    (out / "status.json").unlink()
    (out / "status.json").symlink_to(victim)
    result = run("inference", "-i", infer, "--input", SHARED_DATA / "media" / "messi5.jpg", "--results_dir", out)
    assert_one_line_error(result, "status.json")
    assert victim.read_text() == "precious"


def test_stale_temporaries_of_dead_processes_are_removed_and_live_ones_kept(tmp_path):
    dead = tmp_path / f".x{TEMPORARY_MARK}999999999-abc.json"
    dead.write_text("left by a killed run")
    live = tmp_path / f".y{TEMPORARY_MARK}{os.getpid()}-abc.json"
    live.write_text("being written")
    (tmp_path / f".z{TEMPORARY_MARK}999999998-abc").mkdir()
    assert remove_stale_temporaries(str(tmp_path)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name]
    with atomic_path(str(tmp_path / "final.json")) as first, atomic_path(str(tmp_path / "other.json")) as second:
        assert first != second and Path(first).name.startswith(f".final{TEMPORARY_MARK}{os.getpid()}-")


def test_a_zero_threshold_on_a_noisy_map_keeps_the_decoder_bounded():
    from bpnet.infer.decode import DecoderParams, decode, find_peaks

    skeleton = BODY18
    rng = np.random.default_rng(0)
    heatmaps = rng.random((240, 240, skeleton.num_heatmap_channels)).astype(np.float32)
    pafs = rng.uniform(-1, 1, (240, 240, skeleton.num_paf_channels)).astype(np.float32)
    params = DecoderParams(heatmap_threshold=0.0, paf_threshold=0.0, smoothing_sigma=0.0)
    peaks = find_peaks(heatmaps, params, skeleton.num_keypoints)
    assert max(len(p) for p in peaks) == params.max_peaks_per_part  # thousands of maxima, the strongest kept
    assert all(np.all(np.diff(p[:, 2]) <= 0) for p in peaks)
    decode(heatmaps, pafs, skeleton.limbs, params)  # completes in bounded memory
