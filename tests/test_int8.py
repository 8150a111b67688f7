"""INT8 preparation and checking: cross-layer equalisation of an ONNX graph (against ONNX Runtime runs of
the original graph) and the INT8/FP32 agreement measures (against hand-worked cases and numpy)."""

import numpy as np
import pytest

from bpnet.export.agreement import correlation, keypoint_sigmas, matched_people, pose_f1, pseudo_ap
from bpnet.export.calibration import model_layout
from bpnet.export.equalize import channel_ranges, channel_scales, equalisable_pairs, equalise, spread
from bpnet.model.io import ModelInfo
from bpnet.skeleton import Skeleton

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")


def chain_model(extra_reader: bool = False):
    """x (N, 4, 8, 8) → conv A (4→6, 3×3, bias) → Relu → depthwise B (6, 3×3) → conv C (6→3, 1×1, bias).
    A's output channels span ranges 1000× apart. ``extra_reader``: the Relu output is also a graph output."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    channel_gain = np.array([0.01, 0.1, 1.0, 10.0, 3.0, 0.3], np.float32)
    weights = {
        "wa": rng.normal(size=(6, 4, 3, 3)).astype(np.float32) * channel_gain[:, None, None, None],
        "ba": (rng.normal(size=6) * channel_gain).astype(np.float32),
        "wb": rng.normal(size=(6, 1, 3, 3)).astype(np.float32),
        "wc": rng.normal(size=(3, 6, 1, 1)).astype(np.float32),
        "bc": rng.normal(size=3).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "wa", "ba"], ["a"], name="A", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["r"], name="R"),
        helper.make_node("Conv", ["r", "wb"], ["b"], name="B", group=6, pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["b", "wc", "bc"], ["y"], name="C"),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if extra_reader:
        outputs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, None))
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 8, 8])],
        outputs,
        [numpy_helper.from_array(value, name) for name, value in weights.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run(model, batch):
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["y"], {"x": batch})[0]


def batches():
    rng = np.random.default_rng(1)
    return [rng.normal(size=(2, 4, 8, 8)).astype(np.float32) for _ in range(3)]


def test_the_pairs_are_the_conv_chains_with_private_tensors():
    pairs = equalisable_pairs(chain_model().graph)
    assert [(p.producer, p.activation, p.consumer, p.tensor) for p in pairs] == [("A", "R", "B", "r"), ("B", None, "C", "b")]
    assert [p.consumer for p in equalisable_pairs(chain_model(extra_reader=True).graph)] == ["C"]


def test_hand_worked_scales():
    depthwise = channel_scales(np.array([1.0, 2.0, 4.0, 0.0]), np.ones((4, 1, 3, 3)), depthwise=True)
    np.testing.assert_allclose(depthwise, [0.5, 1.0, 2.0, 1.0])  # median of the live ranges is 2; dead keeps 1
    columns = np.zeros((1, 2, 1, 1))
    columns[0, :, 0, 0] = [1.0, 4.0]
    balanced = channel_scales(np.array([4.0, 1.0]), columns, depthwise=False)
    np.testing.assert_allclose(balanced, np.array([2.0, 0.5]) / 1.25, rtol=1e-6)  # sqrt(r / w), over its median
    assert spread(np.array([1.0, 2.0, 8.0, 0.0])) == 4.0


def test_equalisation_keeps_the_function_and_evens_the_channel_ranges():
    model, data = chain_model(), batches()
    equalised, report = equalise(model, data)
    assert report.pairs == 2
    for batch in data + [np.random.default_rng(5).normal(size=(1, 4, 8, 8)).astype(np.float32)]:
        np.testing.assert_allclose(run(equalised, batch), run(model, batch), rtol=1e-4, atol=1e-4)
    before, after = channel_ranges(model, ["r", "b"], data), channel_ranges(equalised, ["r", "b"], data)
    assert spread(before["r"]) > 10
    np.testing.assert_allclose(after["r"], np.median(before["r"]), rtol=1e-5)  # depthwise reader: all equal
    assert spread(after["b"]) < spread(before["b"])
    assert report.spread_before == pytest.approx(max(spread(before["r"]), spread(before["b"])), rel=1e-5)


def test_calibration_data_takes_the_network_layout():
    skeleton = Skeleton("two", ("a", "b"), ((0, 1),))
    data = np.arange(2 * 3 * 4 * 5 * 3, dtype=np.float32).reshape(2, 3, 4, 5, 3)
    nhwc = ModelInfo(skeleton, (1.0,) * 3, (0.0,) * 3, 8)
    nchw = ModelInfo(skeleton, (1.0,) * 3, (0.0,) * 3, 8, input_layout="NCHW")
    assert model_layout(data, nhwc) is data
    channels_first = model_layout(data, nchw)
    assert channels_first.shape == (2, 3, 3, 4, 5)
    np.testing.assert_array_equal(channels_first[1, 2, :, 3, 4], data[1, 2, 3, 4, :])


def test_correlation_is_pearson():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(4, 5, 6)), rng.normal(size=(4, 5, 6))
    assert correlation(x, x + 0.5 * y) == pytest.approx(np.corrcoef(x.ravel(), (x + 0.5 * y).ravel())[0, 1])
    assert correlation(np.ones(3), np.ones(3)) == 1.0 and correlation(np.ones(3), np.arange(3.0)) == 0.0


def person(x: float, y: float, keypoints: int = 4) -> np.ndarray:
    """A person with ``keypoints`` keypoints on a 40 × 90 pixel box at (x, y)."""
    points = np.array([[x, y, 1.0], [x + 40, y, 1.0], [x, y + 90, 1.0], [x + 40, y + 90, 1.0]])
    return points[:keypoints]


def test_hand_worked_pose_matching():
    reference = np.stack([person(0, 0), person(200, 0)])
    same_and_far = np.stack([person(2, 1), person(500, 300)])
    assert matched_people(reference, same_and_far) == 1
    # one image: 1 match of 2 and 2 → F1 0.5; a second image where both find nobody adds nothing
    empty = np.zeros((0, 4, 3))
    assert pose_f1([(reference, same_and_far), (empty, empty)]) == (0.5, 2, 2)
    assert pose_f1([(empty, empty)]) == (1.0, 0, 0)
    assert pose_f1([(reference, empty)]) == (0.0, 2, 0)
    # a person displaced by half its box is no match: OKS exp(-d² / (2 · area · 0.1²)) ≈ 0
    assert matched_people(reference[:1], person(20, 45)[None]) == 0


def test_pose_ap_by_hand():
    """One reference person, one candidate shifted by d pixels on every keypoint: its OKS is exp(-d² / (2 s² k²))
    with s² its keypoint box area and k = 2σ, and COCO's AP over the thresholds 0.50:0.95 is the share of the ten
    thresholds that OKS reaches."""
    sigmas = keypoint_sigmas(["left_hip", "right_hip", "neck"])
    assert sigmas.tolist() == [0.107, 0.107, 0.079]  # COCO's constants by name, the shoulders' for the rest
    reference = np.array([[[100.0, 100.0, 0.9], [200.0, 100.0, 0.8], [150.0, 300.0, 0.7]]])
    area = 100.0 * 200.0
    for shift in (0.0, 4.0, 9.0, 14.0, 30.0):
        candidate = reference.copy()
        candidate[..., 0] += shift
        k = 2 * sigmas
        oks = float(np.mean(np.exp(-(shift**2) / (2 * area * k**2))))
        expected = np.mean([oks >= t for t in np.linspace(0.5, 0.95, 10)])
        found = pseudo_ap([(reference, candidate, np.array([0.9]))], sigmas)
        assert found == pytest.approx(expected, abs=1e-6), (shift, oks)
    assert pseudo_ap([(reference, reference[:0], np.zeros(0))], sigmas) == 0.0  # the candidate found nobody
    assert pseudo_ap([(reference[:0], reference, np.array([0.9]))], sigmas) is None  # nobody to judge against
