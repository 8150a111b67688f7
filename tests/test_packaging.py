"""Packaging: the shipped specs and configs are package data, and a wheel installed outside the checkout runs."""

import subprocess
import sys
from pathlib import Path

import pytest

from bpnet.resources import resource_path
from bpnet.specs import load_inference_spec, load_train_spec

from .conftest import REPO_ROOT

SHIPPED = ("specs", "data_pose_config", "model_pose_config")


def test_the_top_level_spec_folders_are_the_package_resources():
    for name in SHIPPED:
        top = REPO_ROOT / name
        assert top.is_symlink() and top.resolve() == resource_path(name).resolve(), name
    train = load_train_spec(str(resource_path("specs", "quickstart_train.yaml")))
    assert (
        Path(train.dataloader.pose_config.pose_config_path).resolve()
        == resource_path("model_pose_config", "bpnet_18joints.json").resolve()
    )
    assert load_inference_spec(str(resource_path("specs", "infer_spec_small.yaml"))).train_spec is None


@pytest.mark.slow
def test_a_wheel_installed_in_a_fresh_venv_runs_a_shortened_quickstart(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO_ROOT)], check=True, timeout=600
    )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *map(str, wheels.glob("bpnet-*.whl"))], check=True, timeout=1200)
    run = subprocess.run(
        [
            str(venv / "bin" / "bpnet"),
            "quickstart",
            "-r",
            str(tmp_path / "qs"),
            "--train_images",
            "8",
            "--val_images",
            "4",
            "--epochs",
            "1",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "AP_0.50:0.95_all" in run.stdout and (tmp_path / "qs" / "model" / "bpnet_model.keras").is_file()
