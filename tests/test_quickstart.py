"""`bpnet quickstart` end to end: a shortened run in CI, the full run (AP ≥ 0.5) marked slow."""

import json

import pytest
from click.testing import CliRunner

from bpnet.cli import cli
from bpnet.coco_eval import KPI_NAMES
from bpnet.quickstart import QUICKSTART_INFER_SPEC, QUICKSTART_TRAIN_SPEC
from bpnet.specs import load_inference_spec, load_train_spec


def test_the_shipped_quickstart_specs_load():
    train = load_train_spec(QUICKSTART_TRAIN_SPEC)
    assert train.model.width_multiplier < 1 and train.model.stages >= 2
    assert load_inference_spec(QUICKSTART_INFER_SPEC).input_shape == tuple(
        getattr(train.dataloader.image_config.image_dims, side) for side in ("height", "width"))


def _run(results_dir, *args):
    result = CliRunner().invoke(cli, ["quickstart", "-r", str(results_dir), *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_a_shortened_quickstart_runs_every_step(tmp_path):
    output = _run(tmp_path, "--train_images", "8", "--val_images", "4", "--epochs", "1")
    for line in ("synthesize train:", "dataset_convert train:", "dataset_convert test:", "train: 1 epochs",
                 "AP_0.50:0.95_all", "rendered images"):
        assert line in output
    assert (tmp_path / "model" / "bpnet_model.keras").is_file()
    status = [json.loads(line) for line in (tmp_path / "evaluate" / "status.json").read_text().splitlines()]
    assert set(KPI_NAMES) <= set(status[-1]["kpi"])
    assert len(list((tmp_path / "inference" / "images_annotated").glob("*.png"))) == 4
    rerun = _run(tmp_path, "--train_images", "8", "--val_images", "4", "--epochs", "1")
    assert "synthesize train: kept" in rerun and "dataset_convert train: kept" in rerun


@pytest.mark.slow
def test_the_full_quickstart_reaches_ap_one_half(tmp_path):
    _run(tmp_path)
    status = [json.loads(line) for line in (tmp_path / "evaluate" / "status.json").read_text().splitlines()]
    assert status[-1]["kpi"]["AP_0.50:0.95_all"] >= 0.5
