"""`bpnet quickstart` end to end: a shortened run in CI, the full run (AP ≥ 0.5) marked slow."""

import json

import pytest
import yaml
from click.testing import CliRunner

from bpnet.cli import cli
from bpnet.infer.coco_eval import KPI_NAMES
from bpnet.quickstart import QUICKSTART_INFER_SPEC, QUICKSTART_RETRAIN_SPEC, QUICKSTART_TRAIN_SPEC
from bpnet.specs import load_inference_spec, load_train_spec


def test_the_shipped_quickstart_specs_load():
    train = load_train_spec(QUICKSTART_TRAIN_SPEC)
    assert train.model.width_multiplier < 1 and train.model.stages >= 1
    assert load_inference_spec(QUICKSTART_INFER_SPEC).input_shape == tuple(
        getattr(train.dataloader.image_config.image_dims, side) for side in ("height", "width")
    )


def test_the_quickstart_retrain_spec_is_the_train_spec_retraining_the_pruned_model():
    train = yaml.safe_load(QUICKSTART_TRAIN_SPEC.read_text())
    retrain = yaml.safe_load(QUICKSTART_RETRAIN_SPEC.read_text())
    assert retrain["load_graph"] is True and retrain["pretrained_weights"].endswith("pruned/bpnet_model.pruned.keras")
    assert retrain["checkpoint_dir"].endswith("quickstart/retrain")
    for key in ("load_graph", "pretrained_weights", "checkpoint_dir", "num_epoch", "checkpoint_n_epoch"):
        train.pop(key)
        retrain.pop(key)
    assert retrain == train
    load_train_spec(QUICKSTART_RETRAIN_SPEC)


def _run(results_dir, *args):
    result = CliRunner().invoke(cli, ["quickstart", "-r", str(results_dir), *args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.integration
def test_a_shortened_quickstart_runs_every_step(tmp_path):
    output = _run(tmp_path, "--train_images", "8", "--val_images", "4", "--epochs", "1")
    for line in (
        "synthesize train:",
        "dataset_convert train:",
        "dataset_convert test:",
        "train: 1 epochs",
        "AP_0.50:0.95_all",
        "rendered images",
    ):
        assert line in output
    assert (tmp_path / "model" / "bpnet_model.keras").is_file()
    assert "training curves" in output and (tmp_path / "model" / "results.png").is_file()
    assert (tmp_path / "evaluate" / "report" / "index.html").is_file()
    status = [json.loads(line) for line in (tmp_path / "evaluate" / "status.json").read_text().splitlines()]
    assert set(KPI_NAMES) <= set(status[-1]["kpi"])
    assert len(list((tmp_path / "inference" / "images_annotated").glob("*.png"))) == 4
    rerun = _run(tmp_path, "--train_images", "8", "--val_images", "4", "--epochs", "1")
    assert "synthesize train: kept" in rerun and "dataset_convert train: kept" in rerun
    runner = CliRunner()  # the pruning workflow of docs/quickstart.md, on this run's files
    pruned = runner.invoke(
        cli,
        [
            "prune",
            "-m",
            str(tmp_path / "model" / "bpnet_model.keras"),
            "-o",
            str(tmp_path / "pruned" / "bpnet_model.pruned.keras"),
            "-pth",
            "0.5",
        ],
    )
    assert pruned.exit_code == 0, pruned.output
    spec = yaml.safe_load((tmp_path / "specs" / "retrain.yaml").read_text())
    spec["num_epoch"] = spec["checkpoint_n_epoch"] = 1
    (tmp_path / "specs" / "retrain.yaml").write_text(yaml.safe_dump(spec))
    retrained = runner.invoke(cli, ["train", "-e", str(tmp_path / "specs" / "retrain.yaml"), "-r", str(tmp_path / "retrain")])
    assert retrained.exit_code == 0, retrained.output
    evaluated = runner.invoke(
        cli,
        [
            "evaluate",
            "-i",
            str(tmp_path / "specs" / "infer.yaml"),
            "-m",
            str(tmp_path / "retrain" / "bpnet_model.keras"),
            "-d",
            str(tmp_path / "data" / "dataset_spec.json"),
            "--results_dir",
            str(tmp_path / "ev"),
        ],
    )
    assert evaluated.exit_code == 0 and "AP_0.50:0.95_all" in evaluated.output, evaluated.output


@pytest.mark.slow
def test_the_full_quickstart_reaches_ap_one_half(tmp_path):
    _run(tmp_path)
    status = [json.loads(line) for line in (tmp_path / "evaluate" / "status.json").read_text().splitlines()]
    assert status[-1]["kpi"]["AP_0.50:0.95_all"] >= 0.5
