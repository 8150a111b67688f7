"""The `bpnet` command: entry points, and one-line errors with exit code 2 for each bad input."""

import json
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from bpnet import __version__
from bpnet.cli import cli

from .conftest import assert_one_line_error as assert_user_error
from .conftest import write_dataset_spec


def run(*args):
    result = CliRunner().invoke(cli, list(map(str, args)))
    return result


def test_version_and_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "bpnet", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"bpnet, version {__version__}"
    help_text = run("--help").output
    assert "dataset_convert" in help_text and "dataset-convert" not in help_text


@pytest.fixture
def small_dataset(tmp_path, coco_val_sample):
    """A writable copy of coco_val_sample (4 images) with its dataset spec."""
    images = tmp_path / "images"
    shutil.copytree(coco_val_sample, images, ignore=shutil.ignore_patterns("*.json"))
    annotation_file = tmp_path / "annotations.json"
    shutil.copy(coco_val_sample / "test_coco.json", annotation_file)
    return write_dataset_spec(tmp_path, images, annotation_file), images, annotation_file


def test_dataset_convert_succeeds_and_prints_a_summary(tmp_path, small_dataset):
    spec, _, _ = small_dataset
    result = run(
        "dataset_convert",
        "-d",
        spec,
        "-o",
        tmp_path / "out" / "train",
        "-m",
        "train",
        "--generate_masks",
        "-r",
        tmp_path / "results",
        "--workers",
        "1",
    )
    assert result.exit_code == 0, result.output
    assert "dataset_convert: 4 images" in result.stdout
    assert (tmp_path / "out" / "train-fold-000-of-001").is_file()
    assert json.loads((tmp_path / "results" / "status.json").read_text().splitlines()[-1])["status"] == "SUCCESS"


def test_missing_annotation_file(tmp_path, small_dataset):
    spec, _, annotation_file = small_dataset
    annotation_file.unlink()
    result = run("dataset_convert", "-d", spec, "-o", tmp_path / "train")
    assert_user_error(result, str(annotation_file), f"train_data.annotation_root_dir_path of {spec}")


def test_malformed_annotation_file(tmp_path, small_dataset):
    spec, _, annotation_file = small_dataset
    annotation_file.write_text('{"images": [}')
    assert_user_error(run("dataset_convert", "-d", spec, "-o", tmp_path / "train"), str(annotation_file), "invalid JSON")
    annotation_file.write_text('{"images": []}')
    assert_user_error(run("dataset_convert", "-d", spec, "-o", tmp_path / "train"), str(annotation_file), "annotations")


def test_misspelled_dataset_spec_key(tmp_path, small_dataset):
    spec, _, _ = small_dataset
    data = json.loads(spec.read_text())
    data["data_filtering_params"]["min_acceptable_kpt"] = data["data_filtering_params"].pop("min_acceptable_kpts")
    spec.write_text(json.dumps(data))
    result = run("dataset_convert", "-d", spec, "-o", tmp_path / "train")
    assert_user_error(result, str(spec), "data_filtering_params.min_acceptable_kpt", "did you mean 'min_acceptable_kpts'?")


def test_missing_dataset_spec(tmp_path):
    assert_user_error(run("dataset_convert", "-d", tmp_path / "nope.json", "-o", tmp_path / "t"), "nope.json")


def test_mode_without_its_split(tmp_path, small_dataset):
    spec, _, _ = small_dataset
    data = json.loads(spec.read_text())
    del data["test_data"]
    spec.write_text(json.dumps(data))
    assert_user_error(run("dataset_convert", "-d", spec, "-o", tmp_path / "t", "-m", "test"), str(spec), "test_data")


def test_bad_annotations_are_skipped_and_counted(tmp_path, small_dataset):
    spec, _, annotation_file = small_dataset
    data = json.loads(annotation_file.read_text())
    data["annotations"][0]["keypoints"] = data["annotations"][0]["keypoints"][:-3]
    data["annotations"][1]["bbox"][2] = -5.0
    data["annotations"][2]["keypoints"][2] = 7
    annotation_file.write_text(json.dumps(data))
    result = run("dataset_convert", "-d", spec, "-o", tmp_path / "out" / "train", "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "3 bad annotations skipped" in result.stdout
    for reason in ("keypoints is not 51 numbers", "bbox is negative", "unknown visibility value"):
        assert reason in result.stdout


def test_missing_image_under_check_files(tmp_path, small_dataset):
    spec, images, _ = small_dataset
    victim = sorted(images.glob("*.jpg"))[0]
    victim.unlink()
    result = run("dataset_convert", "-d", spec, "-o", tmp_path / "train", "--check_files", "--generate_masks", "--workers", "1")
    assert_user_error(result, str(victim), "not found")
    assert not (tmp_path / "train-fold-000-of-001").exists()


def test_corrupt_image_under_check_files(tmp_path, small_dataset):
    spec, images, _ = small_dataset
    victim = sorted(images.glob("*.jpg"))[1]
    victim.write_bytes(b"not a jpeg at all")
    result = run("dataset_convert", "-d", spec, "-o", tmp_path / "train", "--check_files", "--generate_masks", "--workers", "2")
    assert_user_error(result, str(victim), "corrupt")


def test_missing_mask_under_check_files(tmp_path, small_dataset):
    spec, _, _ = small_dataset
    result = run("dataset_convert", "-d", spec, "-o", tmp_path / "train", "--check_files", "--workers", "1")
    assert_user_error(result, "mask not found", "--generate_masks")


def test_unwritable_output_folder(tmp_path, small_dataset):
    spec, _, _ = small_dataset
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    result = run("dataset_convert", "-d", spec, "-o", blocker / "out" / "train")
    assert_user_error(result, str(blocker / "out"), "cannot create output folder")


@pytest.mark.integration
def test_real_exit_code_and_no_traceback(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "bpnet", "dataset_convert", "-d", str(tmp_path / "missing.json"), "-o", str(tmp_path / "x")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and "missing.json: no such spec file" in out.stderr
