"""Pruning MobileNets (issue 27): depthwise groups, residual additions, MAC counts and budgets, mean-activation
compensation, the real imported mobilenet_thin, and distillation from a teacher.

Exactness is checked against the original model with the removed channels' contributions zeroed by hand here
(kernels, biases and batch-norm scale/offset), and MACs against a loop over the layers' own shapes."""

import re

import numpy as np
import pytest
from click.testing import CliRunner

from bpnet.cli import cli
from bpnet.errors import BpnetError
from bpnet.model.io import ModelInfo, load_model, model_extras, save_model
from bpnet.prune import PruneSettings, count_macs, prune_model

from .conftest import BODY18, REPO_ROOT, SHARED_DATA, assert_one_line_error

MEDIA = SHARED_DATA / "media"


def mobilenet(seed: int = 0, constant_channels: int = 0):
    """A MobileNet-shaped two-stage pose model: a strided stem, a depthwise-separable block, an inverted residual
    pair (expand, ReLU6, depthwise, linear projection, Add, twice), a feature concatenation and two stages whose
    heads are outputs. Weights and batch-norm statistics are random; the stem's first ``constant_channels``
    filters have zero kernels (their channels are the constant ReLU of their bias)."""
    import keras
    from keras import layers

    rng = np.random.default_rng(seed)
    inputs = keras.Input((None, None, 3), name="input_1")
    x = layers.Conv2D(16, 3, strides=2, padding="same", name="backbone_stem")(inputs)
    x = layers.ReLU(name="backbone_stem_relu")(x)
    x = layers.DepthwiseConv2D(3, padding="same", name="backbone_dw1")(x)
    x = layers.BatchNormalization(name="backbone_dw1_bn")(x)
    x = layers.ReLU(name="backbone_dw1_relu")(x)
    x = layers.Conv2D(24, 1, use_bias=False, name="backbone_pw1")(x)
    x = layers.BatchNormalization(name="backbone_pw1_bn")(x)
    block = layers.ReLU(name="backbone_pw1_relu")(x)
    residual = block
    for i in (1, 2):
        y = layers.Conv2D(48, 1, name=f"backbone_expand{i}")(residual)
        y = layers.ReLU(6.0, name=f"backbone_expand{i}_relu6")(y)
        y = layers.DepthwiseConv2D(3, padding="same", name=f"backbone_dw_res{i}")(y)
        y = layers.Conv2D(24, 1, name=f"backbone_project{i}")(y)
        residual = layers.Add(name=f"backbone_add{i}")([residual if i > 1 else block, y])
    features = layers.Concatenate(name="backbone_concat")([block, residual])
    heats, pafs, stage_input = [], [], features
    for stage in (1, 2):
        s = layers.DepthwiseConv2D(3, padding="same", name=f"stage{stage}_dw")(stage_input)
        s = layers.Conv2D(32, 1, name=f"stage{stage}_pw")(s)
        s = layers.ReLU(name=f"stage{stage}_relu")(s)
        heats.append(layers.Conv2D(19, 1, name="heatmap_out" if stage == 2 else f"stage{stage}_heat")(s))
        pafs.append(layers.Conv2D(38, 1, name="paf_out" if stage == 2 else f"stage{stage}_paf")(s))
        stage_input = layers.Concatenate(name=f"stage{stage + 1}_concat")([features, heats[-1], pafs[-1]])
    model = keras.Model(inputs, heats + pafs)
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        if type(layer).__name__ == "BatchNormalization":
            gamma, beta = rng.uniform(0.5, 1.5, weights[0].shape), rng.normal(0, 0.2, weights[1].shape)
            weights = [gamma, beta, rng.normal(0, 0.2, weights[2].shape), rng.uniform(0.5, 2.0, weights[3].shape)]
        else:
            spread = weights[0].shape[-2:] if type(layer).__name__ == "DepthwiseConv2D" else weights[0].shape[-1:]
            kernel = rng.normal(0, 0.3, weights[0].shape) * rng.uniform(0.05, 1.0, spread)  # filter norms spread out
            weights = [kernel] + [rng.normal(0.1, 0.2, w.shape) for w in weights[1:]]
        layer.set_weights([w.astype(np.float32) for w in weights])
    if constant_channels:
        stem = model.get_layer("backbone_stem")
        kernel, bias = stem.get_weights()
        kernel[..., :constant_channels] = 0.0
        bias[:constant_channels] = rng.uniform(0.5, 1.5, constant_channels)
        stem.set_weights([kernel, bias])
    return model


def zero_removed(model, channels):
    """In place: every channel a layer no longer has is zero at its output (kernels, biases, batch-norm gamma and
    beta); ``channels`` maps a layer to the original indices of the output channels it keeps."""
    for layer in model.layers:
        kind = type(layer).__name__
        if kind not in ("Conv2D", "DepthwiseConv2D", "BatchNormalization"):
            continue
        weights = layer.get_weights()
        removed = np.setdiff1d(np.arange(layer.output.shape[-1]), channels[layer.name])
        if kind == "Conv2D":
            weights[0][..., removed] = 0.0
        elif kind == "DepthwiseConv2D":
            weights[0][:, :, removed, :] = 0.0
        for index in range(1, len(weights)) if kind != "BatchNormalization" else (0, 1):
            weights[index][removed] = 0.0
        layer.set_weights(weights)


def kept_channels(original, pruned_result):
    """Layer → kept output channels, followed through the graph by hand: depthwise layers, batch norms and
    activations keep their input's; concatenations offset each input's."""
    from bpnet.model.layer_graph import LayerGraph

    graph = LayerGraph(original)
    channels = {}
    for name in graph.order:
        kind, inputs = graph.class_name[name], graph.inputs[name]
        if kind == "InputLayer":
            channels[name] = np.arange(3)
        elif kind == "Conv2D":
            channels[name] = pruned_result.kept_filters[name]
        elif kind == "Concatenate":
            offsets = np.cumsum([0] + [graph.channels[i] for i in inputs[:-1]])
            channels[name] = np.concatenate([channels[i] + o for i, o in zip(inputs, offsets)])
        else:
            channels[name] = channels[inputs[0]]
    return channels


def outputs(model, images):
    return [np.asarray(o) for o in model(images, training=False)]


def test_depthwise_groups_and_residuals_prune_exactly_like_zeroed_channels():
    model = mobilenet()
    result = prune_model(model, PruneSettings(threshold=0.5, granularity=4, min_filters=4, equalization_criterion="intersection"))
    kept = result.kept_filters
    assert len(kept["backbone_stem"]) < 16 and len(kept["backbone_pw1"]) < 24 and len(kept["stage1_pw"]) < 32
    pruned = result.model
    assert pruned.get_layer("backbone_dw1").output.shape[-1] == len(kept["backbone_stem"])  # the depthwise follows
    # every convolution meeting in the residual additions keeps one channel set
    for name in ("backbone_project1", "backbone_project2"):
        np.testing.assert_array_equal(kept[name], kept["backbone_pw1"])
    assert [o.shape[-1] for o in pruned.outputs] == [19, 19, 38, 38]
    images = np.random.default_rng(3).uniform(-1, 1, (2, 40, 56, 3)).astype(np.float32)
    got = outputs(pruned, images)
    zero_removed(model, kept_channels(model, result))
    for expected, actual in zip(outputs(model, images), got):
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)


def test_threshold_zero_keeps_the_mobilenet_whole():
    model = mobilenet(seed=4)
    result = prune_model(model, PruneSettings(threshold=0.0))
    assert result.params_after == result.params_before and result.macs_after == result.macs_before
    images = np.random.default_rng(5).uniform(-1, 1, (1, 32, 48, 3)).astype(np.float32)
    for expected, actual in zip(outputs(model, images), outputs(result.model, images)):
        np.testing.assert_array_equal(actual, expected)


def loop_macs(model, height: int, width: int) -> int:
    """Multiply-accumulates of every convolution, from each layer's own kernel and its output's shape."""
    import keras

    convs = [layer for layer in model.layers if type(layer).__name__ in ("Conv2D", "DepthwiseConv2D")]
    probe = keras.Model(model.inputs[0], [layer.output for layer in convs])
    total = 0
    for layer, output in zip(convs, probe(np.zeros((1, height, width, 3), np.float32))):
        kh, kw, cin, cout = layer.kernel.shape
        pixels = output.shape[1] * output.shape[2]
        total += pixels * kh * kw * cin * (cout if type(layer).__name__ == "Conv2D" else 1)
    return int(total)


def test_macs_are_counted_per_layer_and_a_budget_is_met():
    model = mobilenet(seed=6)
    result = prune_model(model, PruneSettings(target_macs=0.6, granularity=1, min_filters=1), (64, 80))
    assert result.macs_before == loop_macs(model, 64, 80) == count_macs(model, (64, 80))
    assert result.macs_after == loop_macs(result.model, 64, 80) == count_macs(result.model, (64, 80))
    assert result.kept_fraction is not None and "strongest" in result.line()
    assert 0.5 <= result.macs_ratio <= 0.6, result.macs_ratio
    assert sum(b.macs_after for b in result.blocks) == result.macs_after
    assert sum(b.params_before for b in result.blocks) == result.params_before
    assert {b.block for b in result.blocks} == {"backbone block 1", "stage 1", "stage 2"}
    assert "stage 2" in result.table() and "MACs at 64×80" in result.line()
    with pytest.raises(BpnetError, match="target_macs: 0.01 cannot be reached.*keeps 0.[0-9]+ of the MACs"):
        prune_model(model, PruneSettings(target_macs=0.01, granularity=8, min_filters=8), (64, 80))


def test_compensation_restores_constant_channels_exactly_where_the_consumer_reads_them():
    import keras
    from keras import layers

    rng = np.random.default_rng(7)
    inputs = keras.Input((None, None, 3), name="input_1")
    x = layers.ReLU(name="relu")(layers.Conv2D(8, 1, name="producer")(inputs))
    heads = [layers.Conv2D(19, 3, padding="same", name="heatmap_out")(x), layers.Conv2D(38, 1, name="paf_out")(x)]
    model = keras.Model(inputs, heads)
    kernel = rng.normal(0, 1, (1, 1, 3, 8)).astype(np.float32)
    kernel[..., :3] = 0.0  # 3 constant channels: ReLU of their bias (one is 0)
    model.get_layer("producer").set_weights([kernel, np.array([1.5, 0.7, -0.2, 0, 0, 0, 0, 0], np.float32)])
    calibration = rng.uniform(-1, 1, (3, 16, 16, 3)).astype(np.float32)
    settings = PruneSettings(threshold=1e-6, granularity=1, min_filters=1)
    compensated = prune_model(model, settings, (16, 16), calibration)
    np.testing.assert_array_equal(compensated.kept_filters["producer"], np.arange(3, 8))  # no spread: removed first
    images = rng.uniform(-1, 1, (2, 20, 24, 3)).astype(np.float32)
    expected = outputs(model, images)
    np.testing.assert_allclose(outputs(compensated.model, images)[1], expected[1], atol=1e-3)  # 1 × 1: refitted too
    inner = (slice(None), slice(1, -1), slice(1, -1))  # 3 × 3: the zero padding reads no constant at the border
    np.testing.assert_allclose(outputs(compensated.model, images)[0][inner], expected[0][inner], atol=1e-5)
    plain = prune_model(model, settings, (16, 16))
    assert np.abs(outputs(plain.model, images)[1] - expected[1]).max() > 0.1  # without it the constants are lost


def test_reconstruction_recovers_removed_channels_that_the_kept_ones_span():
    import keras
    from keras import layers

    rng = np.random.default_rng(11)
    inputs = keras.Input((None, None, 3), name="input_1")
    x = layers.Conv2D(8, 1, name="producer")(inputs)  # linear: 8 channels spanning 3 dimensions
    heads = [layers.Conv2D(19, 1, name="heatmap_out")(x), layers.Conv2D(38, 1, name="paf_out")(x)]
    model = keras.Model(inputs, heads)
    kernel = np.zeros((1, 1, 3, 8), np.float32)
    kernel[0, 0, :, 3:6] = np.eye(3)
    kernel[0, 0, :, :3] = 0.1 * rng.normal(0, 1, (3, 3))  # the weakest: removed, yet combinations of 3..5
    kernel[0, 0, :, 6:] = 0.1 * rng.normal(0, 1, (3, 2))
    model.get_layer("producer").set_weights([kernel, rng.normal(0, 1, 8).astype(np.float32)])
    calibration = rng.uniform(-1, 1, (4, 16, 16, 3)).astype(np.float32)
    settings = PruneSettings(target_macs=0.8, granularity=1, min_filters=1)
    images = rng.uniform(-1, 1, (2, 20, 24, 3)).astype(np.float32)
    expected = outputs(model, images)
    refitted = prune_model(model, settings, (16, 16), calibration)
    assert len(refitted.kept_filters["producer"]) < 8
    assert set(refitted.kept_filters["producer"]) >= {3, 4, 5}
    for got, want in zip(outputs(refitted.model, images), expected):  # new images: the fit generalises
        np.testing.assert_allclose(got, want, atol=1e-3)
    sliced = prune_model(model, settings, (16, 16))
    assert np.abs(outputs(sliced.model, images)[1] - expected[1]).max() > 0.05


def test_compensation_shrinks_the_error_of_pruning_a_mobilenet():
    model = mobilenet(seed=7, constant_channels=4)
    calibration = np.random.default_rng(8).uniform(-1, 1, (4, 48, 48, 3)).astype(np.float32)
    settings = PruneSettings(target_macs=0.8, granularity=1, min_filters=1)
    images = np.random.default_rng(9).uniform(-1, 1, (2, 48, 48, 3)).astype(np.float32)
    expected = outputs(model, images)

    def error(result):
        return float(np.mean([np.abs(a - b).mean() for a, b in zip(outputs(result.model, images), expected)]))

    assert error(prune_model(model, settings, (48, 48), calibration)) < 0.5 * error(prune_model(model, settings, (48, 48)))


# --------------------------------------------------------------------------- the real network


@pytest.fixture(scope="module")
def thin_keras(thin_import, tmp_path_factory):
    return thin_import("thin.keras", tmp_path_factory.mktemp("thin_keras"))


def test_the_imported_thin_prunes_whole_at_zero_and_to_a_mac_budget(thin_keras, tmp_path):
    import cv2

    runner = CliRunner()
    same = runner.invoke(cli, ["prune", "-m", str(thin_keras), "-o", str(tmp_path / "same.keras"), "-pth", "0"])
    assert same.exit_code == 0, same.output
    image = cv2.resize(cv2.imread(str(MEDIA / "messi5.jpg")), (368, 368)).astype(np.float32)[None]
    original, info = load_model(str(thin_keras))
    for expected, actual in zip(outputs(original, image), outputs(load_model(str(tmp_path / "same.keras"))[0], image)):
        np.testing.assert_array_equal(actual, expected)
    budget = runner.invoke(
        cli,
        ["prune", "-m", str(thin_keras), "-o", str(tmp_path / "small.keras"), "--target_macs", "0.6", "-r", str(tmp_path / "r"),
         "--calibration_images", str(MEDIA / "messi5.jpg"), "--calibration_images", str(MEDIA / "demo.mp4")],
    )  # fmt: skip
    assert budget.exit_code == 0, budget.output
    assert "backbone block 3" in budget.output and "stage 6" in budget.output and "MACs at 368×368" in budget.output
    small, small_info = load_model(str(tmp_path / "small.keras"))
    assert loop_macs(small, 368, 368) <= 0.6 * loop_macs(original, 368, 368)
    assert small_info == info and model_extras(str(tmp_path / "small.keras")) == model_extras(str(thin_keras))
    assert [o.shape[-1] for o in small.outputs] == [19] * 6 + [38] * 6
    both = runner.invoke(
        cli, ["prune", "-m", str(thin_keras), "-o", str(tmp_path / "x.keras"), "-pth", "0.2", "--target_macs", "0.5"]
    )
    assert_one_line_error(both, "not both")


def test_keep_stages_makes_an_earlier_stage_the_output_exactly_and_counts_the_budget_against_the_whole(thin_keras, tmp_path):
    import cv2

    runner = CliRunner()
    four = runner.invoke(
        cli, ["prune", "-m", str(thin_keras), "-o", str(tmp_path / "four.keras"), "--keep_stages", "4", "-pth", "0"]
    )
    assert four.exit_code == 0, four.output
    original, info = load_model(str(thin_keras))
    truncated, truncated_info = load_model(str(tmp_path / "four.keras"))
    assert truncated_info == info and model_extras(str(tmp_path / "four.keras")) == model_extras(str(thin_keras))
    image = cv2.resize(cv2.imread(str(MEDIA / "messi5.jpg")), (368, 368)).astype(np.float32)[None]
    expected, actual = outputs(original, image), outputs(truncated, image)
    assert len(actual) == 8
    for stage in range(4):  # heatmaps, then PAFs: the original's first four stages, bit for bit
        np.testing.assert_array_equal(actual[stage], expected[stage])
        np.testing.assert_array_equal(actual[4 + stage], expected[6 + stage])
    assert [o._keras_history[0].name for o in truncated.outputs][3::4] == ["heatmap_out", "paf_out"]
    dropped = loop_macs(original, 368, 368) - loop_macs(truncated, 368, 368)
    assert dropped > 0 and f"MACs at 368×368 {loop_macs(original, 368, 368) / 1e9:.3f} G" in four.output
    assert re.search(r"stage 5 +165,819 → 0 +0\.350 → 0\.000", four.output), four.output
    budget = runner.invoke(
        cli, ["prune", "-m", str(thin_keras), "-o", str(tmp_path / "b.keras"), "--keep_stages", "4", "--target_macs", "0.7"]
    )
    assert budget.exit_code == 0, budget.output
    small, _ = load_model(str(tmp_path / "b.keras"))
    assert 0.6 * loop_macs(original, 368, 368) < loop_macs(small, 368, 368) <= 0.7 * loop_macs(original, 368, 368)
    too_many = runner.invoke(cli, ["prune", "-m", str(thin_keras), "-o", str(tmp_path / "x.keras"), "--keep_stages", "7"])
    assert_one_line_error(too_many, "keep_stages: the model has 6 stages")


@pytest.mark.slow  # an AP measurement (30 s); --calibration_images itself is exercised by the tests above
def test_calibration_images_keep_the_ap_of_a_lightly_pruned_thin(thin_keras, tmp_path):
    """AP on real COCO val2017 images (coco_val_sample, 14 people), calibrated on other images (media, coco_mini):
    at 95 % of the MACs the calibrated prune keeps most of the import's AP, TLT's kernel-norm prune keeps none."""
    from bpnet.infer.evaluate import evaluate

    from .conftest import COCO_MINI, COCO_VAL_SAMPLE, write_dataset_spec

    if not (COCO_VAL_SAMPLE.exists() and COCO_MINI.exists()):
        pytest.skip(f"real data not found at {COCO_VAL_SAMPLE} and {COCO_MINI}")
    runner = CliRunner()
    common = ["prune", "-m", str(thin_keras), "--target_macs", "0.95"]
    photos = [MEDIA / "messi5.jpg", MEDIA / "basketball1.png"] + sorted((COCO_MINI / "train2017").glob("*.jpg"))[:14]
    calibrated = runner.invoke(
        cli, common + ["-o", str(tmp_path / "calibrated.keras")] + [a for p in photos for a in ("--calibration_images", str(p))]
    )
    assert calibrated.exit_code == 0, calibrated.output
    plain = runner.invoke(cli, common + ["-o", str(tmp_path / "plain.keras")])
    assert plain.exit_code == 0, plain.output
    spec = write_dataset_spec(tmp_path, COCO_VAL_SAMPLE, COCO_VAL_SAMPLE / "test_coco.json", mode="test")

    def ap(model):
        results = tmp_path / f"eval_{model.stem}"
        return evaluate(None, str(spec), str(results), str(model), progress=False)["AP_0.50:0.95_all"]

    unpruned, with_images, without = ap(thin_keras), ap(tmp_path / "calibrated.keras"), ap(tmp_path / "plain.keras")
    assert unpruned > 0.4, unpruned
    assert with_images >= 0.8 * unpruned, (unpruned, with_images)
    assert without < 0.5 * with_images, (without, with_images)


# --------------------------------------------------------------------------- distillation


def test_a_teacher_must_share_the_skeleton_and_be_a_keras_model(tmp_path):
    from bpnet.specs import DistillationSpec
    from bpnet.train.distill import load_teacher, unlabeled_image_files

    teacher = tmp_path / "teacher.keras"
    save_model(mobilenet(), str(teacher), ModelInfo(BODY18, (256.0,) * 3, (0.5,) * 3, 2))
    student = ModelInfo(BODY18, (1.0,) * 3, (0.0,) * 3, 2, channel_order="BGR")
    loaded = load_teacher(DistillationSpec(teacher=str(teacher)), student, BODY18)
    # the teacher receives its own convention: student BGR 0..255 → teacher RGB x / 256 − 0.5
    bgr = np.array([10.0, 100.0, 200.0], np.float32)
    np.testing.assert_allclose(
        bgr[list(loaded.order)] * loaded.scale + loaded.offset, [200 / 256 - 0.5, 100 / 256 - 0.5, 10 / 256 - 0.5]
    )
    from bpnet.skeleton import Skeleton

    other = Skeleton.from_file(str(REPO_ROOT / "model_pose_config" / "openpose_coco18.json"))
    with pytest.raises(BpnetError, match="teacher's skeleton .* is not the student's"):
        load_teacher(DistillationSpec(teacher=str(teacher)), student, other)
    with pytest.raises(BpnetError, match="must be a Keras model"):
        load_teacher(DistillationSpec(teacher=str(tmp_path / "t.onnx")), student, BODY18)
    with pytest.raises(BpnetError, match="nowhere: no such file or folder \\(distillation.unlabeled_images\\)"):
        unlabeled_image_files([str(tmp_path / "nowhere")], str(tmp_path / "cache"), 10)


@pytest.fixture(scope="module")
def distill_spec(thin_keras, coco_mini_records, tmp_path_factory):
    """The shipped retrain recipe at 256 × 256 on coco_mini's records: a pruned thin as student, the import as teacher,
    two photos and a video's frames as unlabelled images."""
    from bpnet.specs import load_train_spec

    from .conftest import dump_at_256, replaced

    folder = tmp_path_factory.mktemp("distill")
    pruned = folder / "pruned.keras"
    result = CliRunner().invoke(cli, ["prune", "-m", str(thin_keras), "-o", str(pruned), "--target_macs", "0.6"])
    assert result.exit_code == 0, result.output
    spec = load_train_spec(str(REPO_ROOT / "specs" / "bpnet_retrain_pruned_tf_pose.yaml"))
    data = str(coco_mini_records)
    spec = replaced(
        spec,
        {
            "pretrained_weights": str(pruned),
            "num_epoch": 1,
            "checkpoint_n_epoch": 1,
            "checkpoint_dir": str(folder / "run"),
            "dataloader.batch_size": 2,
            "dataloader.dataset_config.root_data_path": data,
            "dataloader.dataset_config.train_records_folder_path": data,
            "dataloader.dataset_config.dataset_specs": {"coco": str(coco_mini_records / "dataset_spec.json")},
            "distillation.teacher": str(thin_keras),
            "distillation.unlabeled_images": tuple(str(MEDIA / n) for n in ("messi5.jpg", "basketball1.png", "demo.mp4")),
            "distillation.unlabeled_batch_size": 2,
            "distillation.video_frame_step": 1,
            "distillation.weight": 1.0,  # the mechanism at the rate it moves quickly (the recipe's 1e-5 barely does)
            "optimizer.learning_rate_schedule.base_learning_rate": 1e-4,
        },
    )
    return dump_at_256(spec, folder / "retrain.yaml")


def test_distillation_steps_bring_the_student_closer_to_the_teacher(distill_spec, thin_keras, tmp_path):
    import cv2

    from bpnet.model.build import stage_outputs
    from bpnet.specs import load_train_spec
    from bpnet.train import distribution
    from bpnet.train.trainer import Trainer

    spec = load_train_spec(str(distill_spec), overrides=["num_epoch=1"])
    trainer = Trainer(spec, str(tmp_path / "run"), distribution.make_strategy(None, None), progress=False)
    assert trainer.unlabeled_global_batch == 2 and len(trainer.unlabeled_files) == 2 + 5  # 2 photos, demo.mp4's 5 frames
    teacher, _ = load_model(str(thin_keras))
    images = np.stack([cv2.resize(cv2.imread(str(MEDIA / n)), (256, 256)) for n in ("messi5.jpg", "basketball1.png")])
    images = images.astype(np.float32)  # BGR 0..255: the convention of both

    def distance(model_path):
        student = stage_outputs(load_model(model_path)[0](images))
        target = stage_outputs(teacher(images))
        return sum(float(np.mean(np.square(np.asarray(s[-1]) - np.asarray(t[-1])))) for s, t in zip(student, target))

    before = distance(spec.pretrained_weights)
    result = trainer.run()
    assert result.steps >= 5
    after = distance(result.final_model)
    assert after < 0.8 * before, (before, after)
