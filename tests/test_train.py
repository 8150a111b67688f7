"""`bpnet train` on records from real COCO images: loss falls, exact resume, SIGKILL, NaN, weights, distribution."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import cv2
import h5py
import keras
import numpy as np
import pytest
from click.testing import CliRunner

from bpnet import specs
from bpnet.cli import cli
from bpnet.model.build import build_model
from bpnet.model.io import ModelInfo, load_model, save_model
from bpnet.skeleton import Skeleton
from bpnet.train import weights as weights_module
from bpnet.train.trainer import train
from bpnet.train.weights import VGG19_TO_BPNET, load_graph_without_regularizers, load_pretrained

from .conftest import REPO_ROOT, write_train_spec

BODY18 = Skeleton.from_file(str(REPO_ROOT / "model_pose_config" / "bpnet_18joints.json"))
TINY = {
    "dataloader.batch_size": 4,
    "model.stages": 2,
    "model.width_multiplier": 0.125,
    "model.kernel_regularization_factor": 1e-6,
    "model.kernel_initializer": "xavier",
    "num_epoch": 2,
    "checkpoint_n_epoch": 1,
    "validation_every_n_epoch": 0,
    "log_every_n_secs": 1000,
    "summary_every_n_steps": 1,
}


@pytest.fixture
def tiny_spec(tmp_path, coco_mini_records):
    def make(**changes):
        return write_train_spec(
            tmp_path,
            coco_mini_records,
            coco_mini_records / "dataset_spec.json",
            height=64,
            width=64,
            target=8,
            **{**TINY, **changes},
        )

    return make


def weights_of(path):
    model, _ = load_model(str(path))
    return model.get_weights()


def test_tiny_training_loss_falls_and_writes_every_artefact(tmp_path, tiny_spec, coco_mini_records, coco_val_sample):
    dataset = json.loads((coco_mini_records / "dataset_spec.json").read_text())
    dataset["test_data"] = {  # validation AP is measured on the dataset spec's test split
        "images_root_dir_path": str(coco_val_sample),
        "annotation_root_dir_path": str(coco_val_sample / "test_coco.json"),
    }
    (tmp_path / "with_test.json").write_text(json.dumps(dataset))
    spec = tiny_spec(
        **{
            "dataloader.dataset_config.dataset_specs": {"coco": str(tmp_path / "with_test.json")},
            "num_epoch": 4,
            "checkpoint_n_epoch": 2,
            "validation_every_n_epoch": 2,
            # 5e-3 diverged (NaN at step 11) on an AVX512-BF16 EPYC with oneDNN, not on AVX2 machines
            "optimizer.learning_rate_schedule.base_learning_rate": 2e-3,
            "dataloader.dataset_config.val_records_path": ["train-fold-000-of-001"],
            "dataloader.augmentation_config.spatial_aug_params.rotate_deg_max": 0.0,
        }
    )
    result = train(str(spec), str(tmp_path / "run"), progress=False)
    assert result.epoch_losses[-1] < 0.8 * result.epoch_losses[0], result.epoch_losses
    assert len(result.val_losses) == 2 and result.val_losses[1] < result.val_losses[0]
    run = tmp_path / "run"
    for name in ("experiment_spec.yaml", "status.json", "bpnet_model.keras", "model.epoch-0002.keras", "model.epoch-0004.keras"):
        assert (run / name).is_file(), name
    assert sorted(os.listdir(run / "checkpoints")) == ["epoch-0002", "epoch-0004"]
    statuses = [json.loads(line)["status"] for line in (run / "status.json").read_text().splitlines()]
    assert statuses[0] == "STARTED" and statuses[-1] == "SUCCESS" and statuses.count("RUNNING") == 4
    _, info = load_model(str(run / "bpnet_model.keras"))
    assert info.skeleton == BODY18 and info.stride == 8 and info.image_offset == (0.5, 0.5, 0.5)
    assert specs.load_train_spec(run / "experiment_spec.yaml").checkpoint_dir == str(run)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "events"))
    events.Reload()
    tags = set(events.Tags()["tensors"])
    assert {"total_loss", "learning_rate", "cmap_loss_stage1", "paf_loss_stage2", "val_loss", "val_AP"} <= tags
    with open(run / "training_log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3, 4]
    assert [float(row["loss"]) for row in rows] == pytest.approx(result.epoch_losses, rel=1e-5)
    for row in rows:  # the stage losses add up to the total (plus the small weight penalty)
        stages = sum(float(row[f"{kind}_loss_stage{s}"]) for kind in ("heatmap", "paf") for s in (1, 2))
        assert stages <= float(row["loss"]) <= stages * 1.05 and float(row["learning_rate"]) > 0
    assert [bool(row["validation_AP"]) for row in rows] == [False, True, False, True]
    assert all(0.0 <= float(row["validation_AP"]) <= 1.0 for row in rows if row["validation_AP"])
    assert [float(row["validation_loss"]) for row in rows if row["validation_loss"]] == pytest.approx(result.val_losses)
    plot = cv2.imread(str(run / "results.png"))
    assert plot.shape == (900, 1200, 3) and plot.std() > 10  # four drawn panels, not a blank page


def run_cli_train(spec, results, extra=()):
    return subprocess.Popen(
        [sys.executable, "-m", "bpnet", "train", "-e", str(spec), "-r", str(results), "--deterministic", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_resume_after_sigkill_is_exact(tmp_path, tiny_spec):
    spec = tiny_spec(num_epoch=3)
    straight = run_cli_train(spec, tmp_path / "straight")
    killed = run_cli_train(spec, tmp_path / "killed")
    deadline = time.time() + 300
    while not (tmp_path / "killed" / "checkpoints" / "epoch-0001").exists():
        assert killed.poll() is None and time.time() < deadline, killed.communicate()[0]
        time.sleep(0.2)
    time.sleep(1.0)  # into epoch 2
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / "killed" / "bpnet_model.keras").exists()
    resumed = run_cli_train(spec, tmp_path / "killed")
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    assert "Resumed from epoch" in out
    straight_out, _ = straight.communicate(timeout=300)
    assert straight.returncode == 0, straight_out
    straight_weights = weights_of(tmp_path / "straight" / "bpnet_model.keras")
    for a, b in zip(straight_weights, weights_of(tmp_path / "killed" / "bpnet_model.keras")):
        np.testing.assert_array_equal(a, b)
    logs = [(tmp_path / run / "training_log.csv").read_text().splitlines() for run in ("straight", "killed")]
    assert logs[0] == logs[1] and len(logs[0]) == 1 + 3  # one row per epoch, none lost or repeated by the kill


def test_a_run_stopped_right_after_a_checkpoint_resumes_with_every_log_row(tmp_path, tiny_spec, monkeypatch):
    from bpnet.train.trainer import Trainer

    spec = tiny_spec(num_epoch=3)
    saved = Trainer.save_checkpoint

    def stop_after_epoch_two(self, checkpoint, model, epoch):
        saved(self, checkpoint, model, epoch)
        if epoch == 2:
            raise KeyboardInterrupt  # the process dies as soon as epoch 2's checkpoint is on disk

    monkeypatch.setattr(Trainer, "save_checkpoint", stop_after_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train(str(spec), str(tmp_path / "run"), progress=False)
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == ["epoch-0001", "epoch-0002"]
    monkeypatch.setattr(Trainer, "save_checkpoint", saved)
    result = train(str(spec), str(tmp_path / "run"), progress=False)
    assert result.resumed_from_epoch == 2
    with open(tmp_path / "run" / "training_log.csv", newline="") as handle:
        assert [int(row["epoch"]) for row in csv.DictReader(handle)] == [1, 2, 3]


def test_nan_loss_stops_with_a_clear_message(tmp_path, tiny_spec):
    spec = tiny_spec(
        **{
            "optimizer.learning_rate_schedule.base_learning_rate": 1e30,
            "optimizer.learning_rate_schedule.soft_start": 0.0,
            "num_epoch": 3,
        }
    )
    result = CliRunner().invoke(cli, ["train", "-e", str(spec), "-r", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "loss became nan" in result.stderr.lower() and "try a lower learning rate" in result.stderr
    status = [json.loads(line) for line in (tmp_path / "run" / "status.json").read_text().splitlines()]
    assert status[-1]["status"] == "FAILURE"


def test_gpus_without_a_gpu_is_a_clear_error(tmp_path, tiny_spec):
    result = CliRunner().invoke(cli, ["train", "-e", str(tiny_spec()), "-r", str(tmp_path / "run"), "--gpus", "2"])
    assert result.exit_code == 2 and "--gpus 2: 0 GPU(s) visible" in result.stderr


def test_pretrained_weights_by_layer_name_with_shape_mismatches_skipped(tmp_path, caplog):
    spec = specs.BpNetLiteModelSpec(
        backbone_attributes=specs.BackboneAttributes(architecture="vgg"), stages=2, width_multiplier=0.125
    )
    source = build_model(spec, BODY18)
    five = Skeleton("five", ("a", "b", "c", "d", "e"), ((0, 1), (1, 2)))
    other = build_model(dataclass_replace(spec, stages=3), five)  # different output channels
    path = tmp_path / "source.keras"
    save_model(source, str(path), ModelInfo(BODY18, (256.0,) * 3, (0.5,) * 3, 8))
    with caplog.at_level("INFO"):
        load_pretrained(other, str(path), backbone_use_bias=False)
    np.testing.assert_array_equal(
        other.get_layer("block_2a_conv_1").get_weights()[0], source.get_layer("block_2a_conv_1").get_weights()[0]
    )
    assert "skipped for shape mismatch" in caplog.text and "stage1_paf_branch_out" in caplog.text


def dataclass_replace(obj, **changes):
    import dataclasses

    return dataclasses.replace(obj, **changes)


def write_legacy_vgg19_h5(path, rng):
    """A Keras-2-style weights file laid out like Keras's VGG19 no-top download (random values)."""
    shapes = {
        "block1_conv1": 3,
        "block1_conv2": 64,
        "block2_conv1": 64,
        "block2_conv2": 128,
        "block3_conv1": 128,
        "block3_conv2": 256,
        "block3_conv3": 256,
        "block3_conv4": 256,
        "block4_conv1": 256,
        "block4_conv2": 512,
    }
    outs = {"block1": 64, "block2": 128, "block3": 256, "block4": 512}
    values = {}
    with h5py.File(path, "w") as handle:
        handle.attrs["layer_names"] = [n.encode() for n in shapes]
        for name, cin in shapes.items():
            cout = outs[name[:6]]
            group = handle.create_group(name)
            kernel = rng.normal(size=(3, 3, cin, cout)).astype(np.float32)
            group.attrs["weight_names"] = [f"{name}/kernel:0".encode(), f"{name}/bias:0".encode()]
            group.create_dataset(f"{name}/kernel:0", data=kernel)
            group.create_dataset(f"{name}/bias:0", data=np.zeros(cout, np.float32))
            values[name] = kernel
    return values


def test_imagenet_vgg19_weights_map_onto_the_backbone(tmp_path):
    values = write_legacy_vgg19_h5(tmp_path / "vgg19_notop.h5", np.random.default_rng(0))
    spec = specs.BpNetLiteModelSpec(backbone_attributes=specs.BackboneAttributes(architecture="vgg"), stages=2)
    model = build_model(spec, BODY18)
    load_pretrained(model, str(tmp_path / "vgg19_notop.h5"), backbone_use_bias=False)
    for theirs, ours in VGG19_TO_BPNET.items():
        np.testing.assert_array_equal(model.get_layer(ours).get_weights()[0], values[theirs])


def test_imagenet_offline_without_a_file_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("URL fetch failure: no network")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    model = build_model(
        specs.BpNetLiteModelSpec(
            backbone_attributes=specs.BackboneAttributes(architecture="vgg"), stages=2, width_multiplier=0.125
        ),
        BODY18,
    )
    with pytest.raises(weights_module.BpnetError, match="imagenet: cannot download .*set pretrained_weights to its path"):
        load_pretrained(model, "imagenet", backbone_use_bias=False)


def test_load_graph_strips_regularizers(tmp_path):
    spec = specs.BpNetLiteModelSpec(
        backbone_attributes=specs.BackboneAttributes(architecture="vgg"),
        stages=2,
        width_multiplier=0.125,
        kernel_regularization_factor=1e-2,
    )
    model = build_model(spec, BODY18)
    assert len(model.losses) > 0
    save_model(model, str(tmp_path / "pruned.keras"), ModelInfo(BODY18, (256.0,) * 3, (0.5,) * 3, 8))
    loaded, info = load_graph_without_regularizers(str(tmp_path / "pruned.keras"))
    assert loaded.losses == [] and info.skeleton == BODY18
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


MIRRORED_SCRIPT = r"""
import json, sys
import numpy as np
import tensorflow as tf
from bpnet.train import distribution
strategy2 = distribution.make_strategy(None, logical_cpus=2)
from bpnet.specs import load_train_spec
from bpnet.train.trainer import Trainer
from bpnet.data.pipeline import build_dataset
spec = load_train_spec(sys.argv[1])
distribution.seed_everything(0, deterministic=True)
import dataclasses
global_spec = dataclasses.replace(spec, dataloader=dataclasses.replace(spec.dataloader, batch_size=8))
single = Trainer(global_spec, sys.argv[2], tf.distribute.get_strategy(), progress=False)  # global batch 8
mirrored = Trainer(spec, sys.argv[2], strategy2, progress=False)  # 2 replicas x 4
images, labels = next(iter(build_dataset(spec, batch_size=8)))
results = []
start = None
for trainer in (single, mirrored):
    with trainer.strategy.scope():
        model = trainer.build_model()
        optimizer = trainer.build_optimizer(model)
        optimizer.build(model.trainable_variables)
    if start is None:
        start = model.get_weights()
    model.set_weights(start)
    step = trainer._train_step_fn(model, optimizer, None)
    batch = tf.data.Dataset.from_tensors((images, labels)).unbatch().batch(8)
    x, y = next(iter(trainer.strategy.experimental_distribute_dataset(batch)))
    loss = step(x, y)[0]
    results.append((float(loss), model.get_weights()))
print(json.dumps({"replicas": mirrored.replicas, "losses": [results[0][0], results[1][0]],
                  "max_diff": max(float(np.abs(a - b).max()) for a, b in zip(results[0][1], results[1][1])),
                  "max_change": max(float(np.abs(a - b).max()) for a, b in zip(results[0][1], start))}))
"""


@pytest.mark.slow  # the distributed path on logical CPUs: `make test-slow` (46 s together with the next one)
def test_one_mirrored_step_on_two_cpus_equals_one_single_device_step(tmp_path, tiny_spec):
    spec = tiny_spec(
        **{
            "dataloader.batch_size": 4,
            "optimizer.learning_rate_schedule.base_learning_rate": 1e-2,
            "optimizer.learning_rate_schedule.soft_start": 0.0,
        }
    )
    out = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT, str(spec), str(tmp_path / "run")], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["losses"][0] == pytest.approx(result["losses"][1], rel=1e-5)
    assert result["max_change"] > 1e-6  # the step did move the weights
    # float32 summation order (all-reduce, synchronised batch statistics): updates agree within 0.1% of their size
    assert result["max_diff"] <= 1e-3 * result["max_change"]


def free_ports(count):
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_worker_multiworker_run_on_localhost_gives_identical_weights(tmp_path, tiny_spec, coco_mini_records):
    from bpnet.data.records import count_records

    spec = tiny_spec(num_epoch=1)
    global_steps = count_records([str(coco_mini_records / "train-fold-000-of-001")]) // (2 * 4)
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    processes = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}))
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bpnet",
                    "train",
                    "-e",
                    str(spec),
                    "-r",
                    str(tmp_path / f"worker{index}"),
                    "--deterministic",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
            )
        )
    outputs = [p.communicate(timeout=400)[0] for p in processes]
    for process, out in zip(processes, outputs):
        assert process.returncode == 0, out[-3000:]
        assert f"train: 1 epochs, {global_steps} steps" in out  # 2 replicas x batch 4 per step
    steps = [
        json.loads(line)["kpi"]
        for line in (tmp_path / "worker0" / "status.json").read_text().splitlines()
        if json.loads(line)["status"] == "SUCCESS"
    ]
    assert steps and steps[0]["epochs"] == 1
    first, second = (weights_of(tmp_path / f"worker{i}" / "bpnet_model.keras") for i in range(2))
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow  # mixed precision is a GPU feature; on a CPU float16 is emulated (18 s of CI time)
def test_mixed_precision_trains_and_counts_every_step(tmp_path, tiny_spec, coco_mini_records):
    from bpnet.data.records import count_records

    steps = count_records([str(coco_mini_records / "train-fold-000-of-001")]) // 4
    out = subprocess.run(
        [sys.executable, "-m", "bpnet", "train", "-e", str(tiny_spec(num_epoch=1)), "-r", str(tmp_path / "amp"), "--use_amp"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"train: 1 epochs, {steps} steps" in out.stdout
    model, _ = load_model(str(tmp_path / "amp" / "bpnet_model.keras"))
    assert model.get_layer("stage2_conv1").dtype_policy.name == "mixed_float16"


def test_adam_optimizer_spec_trains_and_refuses_gradient_weights(tmp_path, tiny_spec):
    spec = tiny_spec(
        **{
            "num_epoch": 1,
            "use_stagewise_lr_multipliers": False,
            "optimizer": {
                "__class_name__": "AdamOptimizer",
                "learning_rate_schedule": {
                    "__class_name__": "SoftstartAnnealingLearningRateSchedule",
                    "base_learning_rate": 1e-3,
                    "min_learning_rate": 1e-6,
                },
            },
        }
    )
    result = train(str(spec), str(tmp_path / "adam"), progress=False)
    assert np.isfinite(result.epoch_losses[0])
    import tensorflow as tf

    saved = [name for name, _ in tf.train.list_variables(str(tmp_path / "adam" / "checkpoints" / "epoch-0001" / "ckpt"))]
    weights = sum(name.startswith("optimizer/_trainable_variables/") for name in saved)
    slots = sum(name.startswith("optimizer/_variables/") for name in saved)
    assert weights > 0 and slots == 2 * weights, "Adam keeps two moments per weight (SGD with momentum: one)"
    bad = tiny_spec(
        **{
            "use_stagewise_lr_multipliers": True,
            "optimizer": {
                "__class_name__": "AdamOptimizer",
                "learning_rate_schedule": {
                    "__class_name__": "SoftstartAnnealingLearningRateSchedule",
                    "base_learning_rate": 1e-3,
                    "min_learning_rate": 1e-6,
                },
            },
        }
    )
    from bpnet.errors import BpnetError

    with pytest.raises(BpnetError, match="use_stagewise_lr_multipliers"):
        specs.load_train_spec(bad)
