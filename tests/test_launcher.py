"""TLT's launcher flags (issue 30): each parses on every TLT task and does what docs/differences_from_tlt.md says."""

import os

import pytest
from click.testing import CliRunner

from bpnet import launcher
from bpnet.cli import cli
from bpnet.errors import BpnetError

from .conftest import assert_one_line_error, write_dataset_spec

TLT_TASKS = ("dataset_convert", "train", "evaluate", "inference", "prune", "export")


@pytest.mark.parametrize("task", TLT_TASKS)
def test_every_tlt_task_lists_the_launcher_flags(task):
    result = CliRunner().invoke(cli, [task, "--help"])
    assert result.exit_code == 0
    for flag in ("--gpu_index", "--log_file", "-np, --num_processes", "--gpus"):
        assert flag in result.output, (task, flag)


def test_gpu_index_sets_the_visible_devices_in_tlt_spelling(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    result = CliRunner().invoke(
        cli, ["evaluate", "--gpu_index", "1", "2", "--annotations", str(tmp_path / "absent.json"), "--images", str(tmp_path)]
    )
    assert_one_line_error(result, "absent.json")  # the task ran past the flags
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1,2"


def test_log_file_keeps_the_output_and_the_error_line(tmp_path):
    log = tmp_path / "logs" / "evaluate.log"
    missing = tmp_path / "absent.json"
    result = CliRunner().invoke(
        cli, ["evaluate", "--log_file", str(log), "--annotations", str(missing), "--images", str(tmp_path)]
    )
    error = assert_one_line_error(result, "absent.json")
    assert error in log.read_text()
    CliRunner().invoke(cli, ["evaluate", "--log_file", str(log), "--annotations", str(missing), "--images", str(tmp_path)])
    assert log.read_text().count(error) == 2  # appended, as a log file is


@pytest.mark.integration
def test_log_file_holds_the_log_lines_and_results_of_a_run(tmp_path, coco_val_sample):
    spec = write_dataset_spec(tmp_path, coco_val_sample, coco_val_sample / "test_coco.json", mode="test")
    log = tmp_path / "convert.log"
    result = CliRunner().invoke(
        cli,
        ["dataset_convert", "-d", str(spec), "-m", "test", "-o", str(tmp_path / "val"), "--log_file", str(log)],
    )
    assert result.exit_code == 0, result.output
    text = log.read_text()
    assert "[bpnet] INFO" in text  # the log lines
    assert "dataset_convert:" in text and "records" in text  # the results the command printed
    assert "\r" not in text  # progress-bar redraws stay on the terminal


def test_num_processes_maps_to_gpus_for_train_and_is_one_elsewhere(tmp_path):
    assert launcher.training_gpus(None, 2, ()) == 2
    assert launcher.training_gpus(None, -1, (0, 3)) == 2
    assert launcher.training_gpus(2, -1, ()) == 2 and launcher.training_gpus(None, -1, ()) is None
    with pytest.raises(BpnetError, match="one process per GPU"):
        launcher.training_gpus(2, 3, ())
    with pytest.raises(BpnetError, match="names only 1 GPU"):
        launcher.training_gpus(2, -1, (0,))
    runner = CliRunner()
    assert_one_line_error(runner.invoke(cli, ["evaluate", "-np", "2", "-d", "x.json"]), "-np 2", "evaluate runs on one device")
    assert_one_line_error(runner.invoke(cli, ["export", "--gpus", "2", "-m", "x.keras"]), "--gpus 2", "export runs on one device")
    accepted = runner.invoke(
        cli,
        ["inference", "-np", "1", "--gpus", "1", "-m", "absent.onnx", "--input", "absent.jpg", "--results_dir", str(tmp_path)],
    )
    assert_one_line_error(accepted, "absent.jpg")  # -np 1 and --gpus 1 pass; the input is what fails


def test_train_takes_its_gpu_count_from_np(tmp_path, monkeypatch):
    seen = {}

    def fake_training(spec, results_dir, **kwargs):
        seen.update(kwargs)
        raise BpnetError("stopped after parsing")

    monkeypatch.setattr("bpnet.train.trainer.train", fake_training)
    spec = tmp_path / "spec.yaml"
    spec.write_text("{}")
    result = CliRunner().invoke(cli, ["train", "-e", str(spec), "-r", str(tmp_path), "-np", "2", "--gpu_index", "0", "1"])
    assert_one_line_error(result, "stopped after parsing")
    assert seen["gpus"] == 2


def test_an_unwritable_log_file_is_one_line(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    result = CliRunner().invoke(cli, ["evaluate", "--log_file", str(blocked / "run.log"), "-d", "absent.json"])
    assert_one_line_error(result, str(blocked / "run.log"), "--log_file")
