"""Shared fixtures: the real COCO samples in ../shared/data (tests skip with a reason when absent)."""

import json
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("BPNET_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
COCO_MINI = SHARED_DATA / "coco_mini"
COCO_VAL_SAMPLE = SHARED_DATA / "coco_val_sample"


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path} (set BPNET_SHARED_DATA to the shared/data folder)")
    return path


@pytest.fixture
def coco_mini() -> Path:
    return _require(COCO_MINI)


@pytest.fixture
def coco_val_sample() -> Path:
    return _require(COCO_VAL_SAMPLE)


def write_dataset_spec(folder: Path, images_dir: Path, annotation_file: Path, mode: str = "train") -> Path:
    """A copy of the shipped coco_spec.json rooted in ``folder`` (masks go there) for read-only data."""
    spec = json.loads((REPO_ROOT / "data_pose_config" / "coco_spec.json").read_text())
    spec["root_directory_path"] = str(folder)
    split = {
        "images_root_dir_path": str(images_dir),
        "mask_root_dir_path": f"{mode}_mask",
        "annotation_root_dir_path": str(annotation_file),
    }
    spec["train_data" if mode == "train" else "test_data"] = split
    path = folder / "dataset_spec.json"
    path.write_text(json.dumps(spec, indent=2))
    return path


@pytest.fixture
def coco_mini_spec(tmp_path: Path, coco_mini: Path) -> Path:
    return write_dataset_spec(
        tmp_path, coco_mini / "train2017", coco_mini / "annotations" / "person_keypoints_train2017.json"
    )
