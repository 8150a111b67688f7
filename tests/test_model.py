"""Model architecture, config round trip, metadata, loss, optimiser and schedules against the reference."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from bpnet import specs
from bpnet.model.build import build_model, stage_outputs
from bpnet.model.io import ModelInfo, load_model, read_layer_weights, save_model
from bpnet.skeleton import Skeleton
from bpnet.train.losses import masked_l2, stage_losses
from bpnet.train.optim import (
    ExponentialDecaySchedule,
    SoftstartAnnealingSchedule,
    WeightedMomentumOptimizer,
    stagewise_lr_multipliers,
)

from .conftest import BODY18

VGG = specs.BackboneAttributes(architecture="vgg", use_bias=False)


def spec(cls=specs.BpNetLiteModelSpec, **changes):
    """The configuration of the reference's model unit tests (l2 5e-4 kernels, no bias regulariser)."""
    params = dict(
        backbone_attributes=VGG,
        stages=3,
        regularization_type="l2",
        kernel_regularization_factor=5e-4,
        bias_regularization_factor=0.0,
    )
    params.update(changes)
    return cls(**params)


def count(model, cls):
    return sum(isinstance(layer, cls) for layer in model.layers)


@pytest.mark.parametrize(
    "cls, stages, convs, params",
    [
        (specs.BpNetLiteModelSpec, 3, 37, 16_777_835),
        (specs.BpNetLiteModelSpec, 6, 64, 30_015_638),
        (specs.BpNetModelSpec, 3, 50, 25_965_035),
        (specs.BpNetModelSpec, 6, 92, 52_319_510),
    ],
)
def test_counts_equal_the_reference_unit_tests(cls, stages, convs, params):
    model = build_model(spec(cls, stages=stages), BODY18)
    assert count(model, keras.layers.Conv2D) == convs
    assert model.count_params() == params
    assert count(model, keras.layers.Concatenate) == stages - 1
    assert count(model, keras.layers.MaxPooling2D) == 0


def test_tlt_layer_names_and_output_layout():
    model = build_model(spec(use_self_attention=True, width_multiplier=0.125), BODY18)
    names = {layer.name for layer in model.layers}
    for name in (
        "input_1",
        "block_1a_conv_1",
        "block_4b_conv_1",
        "block_6a_conv_1",
        "channel_reduction_conv",
        "stage1_paf_branch_out",
        "stage2_conv1",
        "stage3_paf_attention_conv",
        "heatmap_out",
        "paf_out",
    ):
        assert name in names
    outputs = model(np.zeros((1, 70, 45, 3), np.float32))
    heats, pafs = stage_outputs(outputs)
    assert [tuple(h.shape) for h in heats] == [(1, 9, 6, 19)] * 3
    assert [tuple(p.shape) for p in pafs] == [(1, 9, 6, 38)] * 3
    assert model.get_layer("heatmap_out").output.shape[-1] == 19


def test_any_skeleton_sets_the_channel_counts(tmp_path):
    five = Skeleton("five", ("a", "left_b", "right_b", "c", "d"), ((0, 1), (0, 2), (0, 3)))
    model = build_model(spec(specs.BpNetModelSpec, stages=2, width_multiplier=0.125), five)
    heats, pafs = stage_outputs(model(np.zeros((1, 32, 32, 3), np.float32)))
    assert heats[-1].shape[-1] == 6 and pafs[-1].shape[-1] == 6
    with pytest.raises(ValueError, match="heat_channels is 19"):
        build_model(spec(heat_channels=19), five)


def test_regularisers_follow_the_spec():
    model = build_model(
        spec(
            regularization_type="l1", kernel_regularization_factor=1e-3, bias_regularization_factor=2e-3, width_multiplier=0.125
        ),
        BODY18,
    )
    convolutions = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    expected = sum(
        1e-3 * np.abs(layer.kernel.numpy()).sum() + (2e-3 * np.abs(layer.bias.numpy()).sum() if layer.bias is not None else 0)
        for layer in convolutions
    )
    np.testing.assert_allclose(float(sum(model.losses)), expected, rtol=1e-4)


def test_config_round_trip_and_saved_metadata(tmp_path):
    model = build_model(spec(use_self_attention=True, width_multiplier=0.125), BODY18)
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    x = np.random.default_rng(0).normal(size=(1, 32, 40, 3)).astype(np.float32)
    for a, b in zip(model(x), clone(x)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    info = ModelInfo(BODY18, (256.0,) * 3, (0.5,) * 3, 8)
    for name in ("m.keras", "m.hdf5"):
        save_model(model, str(tmp_path / name), info)
        loaded, loaded_info = load_model(str(tmp_path / name))
        assert loaded_info == dataclasses.replace(info, input_alignment=8)  # recorded from the graph on saving
        assert model(x)[-1].shape[1:3] == (32 // 8, 40 // 8)  # the VGG backbone's only down-sampling is 8
        np.testing.assert_allclose(loaded(x)[-1], model(x)[-1], atol=1e-6)
        assert set(read_layer_weights(str(tmp_path / name))) >= {"stage2_conv1", "block_1a_bn_1"}


def test_masked_l2_and_stage_losses_by_hand():
    pred = np.array([[[[1.0, 2.0]]], [[[0.0, 1.0]]]], np.float32)  # (B=2, 1, 1, 2)
    label = np.array([[[[0.0, 0.0]]], [[[0.0, 0.0]]]], np.float32)
    mask = np.array([[[[1.0]]], [[[0.5]]]], np.float32)
    assert float(masked_l2(pred, label, mask)) == pytest.approx(0.5 * (1 + 4 + 0 + 0.25))
    focal = specs.FocalLossParams(use_focal_loss=True, alpha=0.1, beta=0.02, bkg_thresh=0.01, gamma=1.0)
    weight = np.abs(1 - (1 - pred - 0.02))  # all labels are background
    expected = 0.5 * float((((pred - label) * mask * weight) ** 2).sum())
    assert float(masked_l2(pred, label, mask, focal)) == pytest.approx(expected, rel=1e-6)
    labels = {"heatmaps": label, "pafs": label, "mask": mask}
    heat, paf = stage_losses([pred, pred * 0], [pred, pred], labels)
    assert [float(v) for v in heat] == pytest.approx([2.625, 0.0]) and [float(v) for v in paf] == pytest.approx([2.625] * 2)


def test_softstart_annealing_reproduces_the_reference():
    schedule = SoftstartAnnealingSchedule(1.0, 0.1, 0.05, 0.5, 1000)
    got = [float(schedule(step)) for step in (1, 200, 400, 600, 800, 999)]
    np.testing.assert_allclose(got, [0.10471285, 1.0, 1.0, 0.63095725, 0.25118864, 0.100461565], atol=1e-6)


def test_exponential_decay_reproduces_the_reference():
    """The reference test reads the rate after `step` increments, i.e. at global step `step − 1`."""
    schedule = ExponentialDecaySchedule(1.0, decay_steps=25, decay_rate=0.1)
    got = [float(schedule(step - 1)) for step in (26, 51, 71, 101)]
    np.testing.assert_allclose(got, [0.1, 0.01, 0.00158489, 0.0001], rtol=1e-5)
    floor = ExponentialDecaySchedule(1.0, 25, 0.1, staircase=True, min_learning_rate=0.005)
    assert [float(floor(s)) for s in (24, 25, 60)] == pytest.approx([1.0, 0.1, 0.01 if 0.01 > 0.005 else 0.005])


def test_stagewise_multipliers_scale_stage_two_updates_by_exactly_four():
    model = build_model(spec(stages=2, width_multiplier=0.125, kernel_initializer="xavier"), BODY18)
    multipliers = stagewise_lr_multipliers(model)
    assert multipliers["stage2_conv1/kernel"] == 4 and multipliers["stage2_conv1/bias"] == 8
    assert multipliers["stage1_conv1/kernel"] == 1 and multipliers["stage1_conv1/bias"] == 2
    assert multipliers["block_1a_conv_1/kernel"] == 1 and multipliers["paf_out/kernel"] == 4
    x = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype(np.float32)
    with tf.GradientTape() as tape:
        loss = sum(tf.reduce_sum(tf.square(o)) for o in model(x, training=False))
    grads = tape.gradient(loss, model.trainable_variables)
    applied = {}  # the momentum accumulator after one step holds exactly the (weighted) gradient
    for name, weights in (("plain", {}), ("stagewise", multipliers)):
        clone = keras.Model.from_config(model.get_config())
        clone.set_weights(model.get_weights())
        optimizer = WeightedMomentumOptimizer(0.01, momentum=0.9, grad_weights=weights)
        optimizer.apply_gradients(zip(grads, clone.trainable_variables))
        applied[name] = {v.path: a.numpy() for v, a in zip(clone.trainable_variables, optimizer.accumulators)}
    for path, factor in (("stage2_conv1/kernel", 4.0), ("stage2_conv1/bias", 8.0), ("stage1_conv2/kernel", 1.0)):
        assert np.abs(applied["plain"][path]).max() > 0
        np.testing.assert_array_equal(applied["stagewise"][path], factor * applied["plain"][path])


def test_momentum_follows_tf1():
    variable = keras.Variable(np.array([1.0], np.float32))
    optimizer = WeightedMomentumOptimizer(0.1, momentum=0.5, nesterov=False)
    grad = tf.constant([1.0])
    values = []
    for _ in range(3):
        optimizer.apply_gradients([(grad, variable)])
        values.append(float(variable.numpy()[0]))
    # acc: 1, 1.5, 1.75; var: 1 - 0.1, - 0.15, - 0.175
    np.testing.assert_allclose(values, [0.9, 0.75, 0.575], rtol=1e-6)
    nesterov = keras.Variable(np.array([1.0], np.float32))
    optimizer = WeightedMomentumOptimizer(0.1, momentum=0.5, nesterov=True)
    optimizer.apply_gradients([(grad, nesterov)])
    np.testing.assert_allclose(float(nesterov.numpy()[0]), 1 - 0.1 * (1 + 0.5 * 1), rtol=1e-6)


def test_random_normal_heads_do_not_start_as_copies_of_each_other():
    spec = specs.BpNetLiteModelSpec(
        backbone_attributes=specs.BackboneAttributes(architecture="vgg"),
        stages=2,
        width_multiplier=0.125,
        kernel_initializer="random_normal",
    )
    model = build_model(spec, BODY18)
    paf, cmap = model.get_layer("stage2_paf_conv6").kernel.numpy(), model.get_layer("stage2_cmap_conv6").kernel.numpy()
    assert paf.shape == cmap.shape and not np.array_equal(paf, cmap)
    assert abs(float(paf.std()) - 0.01) < 0.002
