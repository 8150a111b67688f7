"""`bpnet prune`: exactness against zeroed filters, thresholds, granularity, equalisation, CLI, retraining."""

import dataclasses

import numpy as np
import pytest
from click.testing import CliRunner

from bpnet import specs
from bpnet.cli import cli
from bpnet.model.build import build_model
from bpnet.model.io import ModelInfo, load_model, save_model
from bpnet.prune import PruneSettings, equalize, filter_norms, normalize, output_model_path, prune_model, retained_filters

from .conftest import BODY18

INFO = ModelInfo(BODY18, (256.0,) * 3, (0.5,) * 3, 8)


def small_model(two_branch: bool, attention: bool, seed: int = 0):
    """A 2-stage model at width 1/8 whose filter norms and batch-norm statistics are spread out at random."""
    kind = specs.BpNetModelSpec if two_branch else specs.BpNetLiteModelSpec
    spec = kind(
        backbone_attributes=specs.BackboneAttributes(architecture="vgg"),
        stages=2,
        width_multiplier=0.125,
        use_self_attention=attention,
        kernel_initializer="xavier",
    )
    model = build_model(spec, BODY18)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        if layer.__class__.__name__ == "Conv2D":
            weights[0] = weights[0] * rng.uniform(0.05, 1.0, weights[0].shape[-1])
            weights[1:] = [rng.normal(0, 0.05, w.shape).astype(np.float32) for w in weights[1:]]
        else:  # batch norm: gamma, beta, moving mean, moving variance
            weights = [
                rng.uniform(0.5, 1.5, weights[0].shape),
                rng.normal(0, 0.1, weights[1].shape),
                rng.normal(0, 0.1, weights[2].shape),
                rng.uniform(0.5, 2.0, weights[3].shape),
            ]
            weights = [w.astype(np.float32) for w in weights]
        layer.set_weights(weights)
    return model


def zero_dropped_channels(model, kept_filters):
    """In place: every dropped filter's kernel and bias are zeroed, and so are the ``gamma`` and ``beta`` of
    the batch norm that follows it, so the dropped channels are exactly 0 wherever they go."""
    for name, kept in kept_filters.items():
        layer = model.get_layer(name)
        weights = layer.get_weights()
        dropped = np.setdiff1d(np.arange(weights[0].shape[-1]), kept)
        weights[0][..., dropped] = 0.0
        for other in weights[1:]:
            other[dropped] = 0.0
        layer.set_weights(weights)
        norm_name = name.replace("_conv_", "_bn_")
        if norm_name != name:
            norm = model.get_layer(norm_name)
            gamma, beta, mean, variance = norm.get_weights()
            gamma[dropped] = 0.0
            beta[dropped] = 0.0
            norm.set_weights([gamma, beta, mean, variance])


def outputs(model, images):
    return [np.asarray(o) for o in model(images, training=False)]


@pytest.mark.parametrize("two_branch", [False, True], ids=["lite", "two_branch"])
@pytest.mark.parametrize("attention", [False, True], ids=["plain", "attention"])
def test_pruned_outputs_equal_the_original_with_dropped_filters_zeroed(two_branch, attention):
    model = small_model(two_branch, attention)
    rng = np.random.default_rng(1)
    threshold = float(rng.uniform(0.3, 0.7))
    result = prune_model(model, PruneSettings(threshold=threshold, granularity=2, min_filters=2))
    assert result.params_after < result.params_before
    assert sum(len(k) < model.get_layer(n).filters for n, k in result.kept_filters.items()) >= 10
    images = rng.uniform(-0.5, 0.5, (2, 48, 64, 3)).astype(np.float32)
    pruned_out = outputs(result.model, images)
    zero_dropped_channels(model, result.kept_filters)
    for expected, got in zip(outputs(model, images), pruned_out):
        assert expected.shape == got.shape
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_threshold_zero_keeps_every_filter_and_changes_no_output():
    model = small_model(two_branch=False, attention=True)
    result = prune_model(model, PruneSettings(threshold=0.0))
    assert result.params_after == result.params_before
    images = np.random.default_rng(2).uniform(-0.5, 0.5, (1, 32, 40, 3)).astype(np.float32)
    for expected, got in zip(outputs(model, images), outputs(result.model, images)):
        np.testing.assert_array_equal(got, expected)


def test_parameters_fall_monotonically_and_granularity_and_minimum_hold_per_layer():
    model = small_model(two_branch=False, attention=False)
    counts = []
    for threshold in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        settings = PruneSettings(threshold=threshold, granularity=3, min_filters=5)
        result = prune_model(model, settings)
        counts.append(result.params_after)
        for name, kept in result.kept_filters.items():
            total = model.get_layer(name).filters
            assert len(kept) >= min(5, total), name
            assert len(kept) == total or len(kept) % 3 == 0, (name, len(kept))
            stats = normalize(filter_norms(model.get_layer(name).kernel.numpy()), "max")
            above = int(np.sum(stats > threshold))
            assert len(kept) >= min(above, total), name
            if len(kept) < total:  # the kept filters are the strongest
                assert stats[kept].min() >= np.delete(stats, kept).max(), name
    assert counts == sorted(counts, reverse=True) and counts[-1] < counts[0], counts


def test_outputs_and_excluded_layers_keep_every_filter():
    model = small_model(two_branch=False, attention=False)
    result = prune_model(model, PruneSettings(threshold=0.9, granularity=1, min_filters=1, excluded_layers=("stage1_conv2",)))
    for name in ("stage1_conv2", "stage1_heat_branch_out", "stage1_paf_branch_out", "heatmap_out", "paf_out"):
        assert len(result.kept_filters[name]) == model.get_layer(name).filters, name
    assert [o.shape[-1] for o in result.model.outputs] == [19, 19, 38, 38]


def test_attention_inputs_keep_the_same_channels_for_every_equalization():
    model = small_model(two_branch=True, attention=True)
    for criterion in ("union", "intersection", "arithmetic_mean", "geometric_mean"):
        result = prune_model(model, PruneSettings(threshold=0.5, granularity=1, min_filters=1, equalization_criterion=criterion))
        kept = result.kept_filters
        for branch in ("paf_branch", "heat_branch"):
            short = "paf" if branch == "paf_branch" else "cmap"
            np.testing.assert_array_equal(kept[f"stage2_{branch}_conv6"], kept[f"stage2_{short}_attention_conv"])


def test_retained_filters_and_equalization_by_hand():
    stats = np.array([0.9, 0.05, 0.5, 0.3, 1.0, 0.2])
    assert retained_filters(stats, 0.25, granularity=1, min_filters=1).tolist() == [0, 2, 3, 4]
    assert retained_filters(stats, 0.25, granularity=4, min_filters=1).tolist() == [0, 2, 3, 4]
    assert retained_filters(stats, 0.4, granularity=4, min_filters=1).tolist() == [0, 2, 3, 4]  # 3 rounded up to 4
    assert retained_filters(stats, 0.95, granularity=1, min_filters=2).tolist() == [0, 4]  # minimum count
    assert retained_filters(stats, 0.0, granularity=4, min_filters=16).tolist() == [0, 1, 2, 3, 4, 5]
    a, b = np.array([1.0, 4.0]), np.array([4.0, 1.0])
    assert equalize([a, b], "union").tolist() == [4.0, 4.0]
    assert equalize([a, b], "intersection").tolist() == [1.0, 1.0]
    assert equalize([a, b], "arithmetic_mean").tolist() == [2.5, 2.5]
    np.testing.assert_allclose(equalize([a, b], "geometric_mean"), [2.0, 2.0])
    np.testing.assert_allclose(normalize(np.array([3.0, 4.0]), "L2"), [1.2, 1.6])
    np.testing.assert_allclose(normalize(np.array([3.0, 4.0]), "max"), [0.75, 1.0])
    kernel = np.zeros((3, 3, 2, 2))
    kernel[0, 0, 0, 1], kernel[2, 1, 1, 1] = 3.0, 4.0
    np.testing.assert_allclose(filter_norms(kernel), [0.0, 5.0])


def test_bad_settings_are_one_line_errors():
    from bpnet.errors import BpnetError

    with pytest.raises(BpnetError, match="normalizer"):
        PruneSettings(normalizer="L1")
    with pytest.raises(BpnetError, match="pruning_granularity"):
        PruneSettings(granularity=0)
    with pytest.raises(BpnetError, match="excluded_layers: no layer named nope"):
        prune_model(small_model(False, False), PruneSettings(excluded_layers=("nope",)))


def test_output_suffix():
    assert output_model_path("a/pruned") == "a/pruned.keras"
    assert output_model_path("a/pruned.hdf5") == "a/pruned.hdf5"


def test_cli_prune_saves_a_smaller_model_with_its_skeleton(tmp_path):
    source = tmp_path / "model.keras"
    save_model(small_model(False, False), str(source), INFO)
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "prune",
            "-m",
            str(source),
            "-o",
            str(tmp_path / "pruned"),
            "-pth",
            "0.6",
            "-pg",
            "2",
            "-nf",
            "2",
            "-r",
            str(tmp_path / "results"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "parameters" in result.output and "pruned/original" in result.output
    pruned, info = load_model(str(tmp_path / "pruned.keras"))
    original, _ = load_model(str(source))
    assert info == dataclasses.replace(INFO, input_alignment=8) and pruned.count_params() < original.count_params()
    assert (tmp_path / "results" / "status.json").is_file()
    missing = runner.invoke(cli, ["prune", "-m", str(tmp_path / "none.keras"), "-o", str(tmp_path / "x.keras")])
    assert missing.exit_code == 2 and "none.keras: model file not found" in missing.output
    bad = runner.invoke(cli, ["prune", "-m", str(source), "-o", str(tmp_path / "x.keras"), "-el", "nope"])
    assert bad.exit_code == 2 and "excluded_layers: no layer named nope" in bad.output


def test_tlt_multi_value_excluded_layers_spelling():
    from bpnet.cli_support import expand_multi_value_options

    assert expand_multi_value_options(["prune", "-el", "a", "b", "-pth", "0.2", "-el", "c"]) == [
        "prune",
        "-el",
        "a",
        "-el",
        "b",
        "-pth",
        "0.2",
        "-el",
        "c",
    ]


@pytest.mark.integration
def test_prune_retrain_with_load_graph_and_infer_end_to_end(tmp_path, coco_mini_records, coco_val_sample):
    from .conftest import write_train_spec

    tiny = {
        "dataloader.batch_size": 8,
        "model.stages": 2,
        "model.width_multiplier": 0.125,
        "num_epoch": 1,
        "checkpoint_n_epoch": 1,
        "validation_every_n_epoch": 0,
        "model.kernel_initializer": "xavier",
    }
    spec = write_train_spec(
        tmp_path, coco_mini_records, coco_mini_records / "dataset_spec.json", height=64, width=64, target=8, **tiny
    )
    runner = CliRunner()
    trained = runner.invoke(cli, ["train", "-e", str(spec), "-r", str(tmp_path / "unpruned")])
    assert trained.exit_code == 0, trained.output
    pruned_path = tmp_path / "pruned" / "bpnet_model.pruned-0.5.hdf5"
    pruned = runner.invoke(
        cli,
        [
            "prune",
            "-m",
            str(tmp_path / "unpruned" / "bpnet_model.keras"),
            "-o",
            str(pruned_path),
            "-pth",
            "0.5",
            "-pg",
            "2",
            "-nf",
            "2",
            "-el",
            "block_1a_conv_1",
            "block_1b_conv_1",
        ],
    )
    assert pruned.exit_code == 0, pruned.output
    model, _ = load_model(str(pruned_path))
    assert model.get_layer("block_1a_conv_1").filters == 8 and model.get_layer("block_1b_conv_1").filters == 8
    retrain_spec = write_train_spec(
        tmp_path,
        coco_mini_records,
        coco_mini_records / "dataset_spec.json",
        height=64,
        width=64,
        target=8,
        load_graph=True,
        pretrained_weights=str(pruned_path),
        **tiny,
    )
    retrained = runner.invoke(cli, ["train", "-e", str(retrain_spec), "-r", str(tmp_path / "retrain")])
    assert retrained.exit_code == 0, retrained.output
    retrained_model, info = load_model(str(tmp_path / "retrain" / "bpnet_model.keras"))
    assert retrained_model.count_params() == model.count_params() and info == load_model(str(pruned_path))[1]
    infer = tmp_path / "infer.yaml"
    infer.write_text(
        f"train_spec: {spec}\nmodel_path: {tmp_path / 'retrain' / 'bpnet_model.keras'}\n"
        "input_shape: [96, 96]\noutput_upsampling_factor: [8, 8]\n"
    )
    detected = runner.invoke(
        cli,
        [
            "inference",
            "-i",
            str(infer),
            "--input_type",
            "dir",
            "--input",
            str(coco_val_sample),
            "--results_dir",
            str(tmp_path / "inference"),
        ],
    )
    assert detected.exit_code == 0, detected.output
    assert "4 inputs" in detected.output
