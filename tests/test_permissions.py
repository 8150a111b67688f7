"""Files bpnet writes honour the umask, atomic writes included (their ``mkstemp`` temporary is 0600 until renamed).

Each writer family is run under umask 027, whose modes (0640 files, 0750 folders) differ both from the
temporary's 0600 and from the usual 0644, and the modes are read back with ``os.stat``."""

import contextlib
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from bpnet.cli import cli
from bpnet.files import atomic_path, current_umask
from bpnet.model.io import save_model
from bpnet.status import task_status

from .conftest import COCO_VAL_SAMPLE, write_dataset_spec
from .test_export import INFO, spread_model

UMASK = 0o027
FILE_MODE = 0o640
FOLDER_MODE = 0o750


@contextlib.contextmanager
def umask(mask: int):
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def written_files(folder: Path):
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != ".bpnet.lock")


def test_current_umask_reads_without_changing_it():
    with umask(0o037):
        assert current_umask() == 0o037
        assert current_umask() == 0o037


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_write_gets_the_mode_a_plain_open_would(tmp_path, mask, expected):
    with umask(mask):
        with atomic_path(str(tmp_path / "out.json")) as tmp:
            Path(tmp).write_text("{}")
        with open(tmp_path / "plain.json", "w") as handle:
            handle.write("{}")
    assert mode(tmp_path / "out.json") == expected == mode(tmp_path / "plain.json")


def test_status_json_and_a_failed_atomic_write_leave_nothing_private(tmp_path):
    with umask(UMASK):
        with task_status(str(tmp_path), "testing") as status:
            status.write("SUCCESS", "done")
        with pytest.raises(RuntimeError), atomic_path(str(tmp_path / "never.json")) as tmp:
            Path(tmp).write_text("half")
            raise RuntimeError("interrupted")
    assert not (tmp_path / "never.json").exists()
    assert [p.name for p in written_files(tmp_path)] == ["status.json"]
    assert mode(tmp_path / "status.json") == FILE_MODE


@pytest.mark.integration
def test_models_exports_detections_and_records_follow_the_umask(tmp_path):
    if not COCO_VAL_SAMPLE.exists():
        pytest.skip(f"real data not found at {COCO_VAL_SAMPLE}")
    runner = CliRunner()
    with umask(UMASK):
        save_model(spread_model(), str(tmp_path / "model.keras"), INFO)
        exported = runner.invoke(cli, ["export", "-m", str(tmp_path / "model.keras"), "-o", str(tmp_path / "export" / "m.onnx")])
        assert exported.exit_code == 0, exported.output
        inferred = runner.invoke(
            cli,
            ["inference", "-m", str(tmp_path / "model.keras"), "--input_type", "dir", "--input", str(COCO_VAL_SAMPLE)]
            + ["--results_dir", str(tmp_path / "inference"), "--dump_visualizations"],
        )
        assert inferred.exit_code == 0, inferred.output
        spec = write_dataset_spec(tmp_path, COCO_VAL_SAMPLE, COCO_VAL_SAMPLE / "test_coco.json")
        converted = runner.invoke(
            cli, ["dataset_convert", "-m", "train", "-o", str(tmp_path / "data" / "train"), "-d", str(spec), "--generate_masks"]
        )
        assert converted.exit_code == 0, converted.output
    files = written_files(tmp_path)
    names = {p.name for p in files}
    assert {"model.keras", "m.onnx", "detections.json", "status.json", "train-fold-000-of-001"} <= names, names
    assert any(p.suffix == ".png" for p in files)
    assert {str(p.relative_to(tmp_path)): oct(mode(p)) for p in files if mode(p) != FILE_MODE} == {}
    folders = [p for p in tmp_path.rglob("*") if p.is_dir()]
    assert {str(p.relative_to(tmp_path)): oct(mode(p)) for p in folders if mode(p) != FOLDER_MODE} == {}


def test_training_outputs_follow_the_umask(tiny_model):
    folder, _ = tiny_model
    run = folder / "run"
    expected_file, expected_folder = 0o666 & ~current_umask(), 0o777 & ~current_umask()
    files = written_files(run)
    assert any(p.suffix == ".keras" for p in files) and any(p.name == "status.json" for p in files)
    assert {str(p.relative_to(run)): oct(mode(p)) for p in files if mode(p) != expected_file} == {}
    folders = [p for p in run.rglob("*") if p.is_dir()]
    assert folders, "the checkpoint folders"
    assert {str(p.relative_to(run)): oct(mode(p)) for p in folders if mode(p) != expected_folder} == {}


@pytest.mark.integration
def test_openvino_int8_exports_follow_the_umask(tmp_path):
    """The FP32 and INT8 IRs (written through temporaries), their metadata and status.json, with accuracy control."""
    pytest.importorskip("openvino", reason="the optional openvino package is not installed")
    pytest.importorskip("nncf", reason="the optional nncf package is not installed")
    if not COCO_VAL_SAMPLE.exists():
        pytest.skip(f"real data not found at {COCO_VAL_SAMPLE}")
    with umask(UMASK):
        save_model(spread_model(), str(tmp_path / "model.keras"), INFO)
        arguments = ["export", "-m", str(tmp_path / "model.keras"), "-o", str(tmp_path / "export" / "m.onnx")]
        arguments += ["-r", str(tmp_path / "export"), "--target", "openvino", "--data_type", "int8", "-d", "96,128,3"]
        arguments += ["--cal_image_dir", str(COCO_VAL_SAMPLE), "--batches", "2", "--batch_size", "2", "--int8_accuracy_control"]
        exported = CliRunner().invoke(cli, arguments)
        assert exported.exit_code == 0, exported.output
    files = written_files(tmp_path / "export")
    names = {p.name for p in files}
    assert {"m.onnx", "m.xml", "m.bin", "m.int8.xml", "m.int8.bin", "m.int8.xml.json", "status.json"} <= names, names
    assert {str(p.relative_to(tmp_path)): oct(mode(p)) for p in files if mode(p) != FILE_MODE} == {}
    folders = [p for p in (tmp_path / "export").rglob("*") if p.is_dir()]
    assert {str(p.relative_to(tmp_path)): oct(mode(p)) for p in folders if mode(p) != FOLDER_MODE} == {}
