"""Pipelined prediction (bpnet.infer.stream): input order kept, the same results as one at a time, a
failure in any stage raised in the caller, and no thread left behind after an error or an early stop."""

import threading

import numpy as np
import pytest

from bpnet.errors import BpnetError
from bpnet.infer.oracle import ORACLE_DECODER, dataset_skeleton
from bpnet.infer.predict import Predictor, PredictorSettings
from bpnet.infer.stream import QUEUE_DEPTH, predict_stream
from bpnet.model.io import ModelInfo
from bpnet.resources import resource_path
from bpnet.specs import load_dataset_spec

SKELETON = dataset_skeleton(load_dataset_spec(str(resource_path("data_pose_config", "coco_spec.json"))).category)


class BlobBackend:
    """Heatmaps with one peak per keypoint channel where the image is brightest, so each image's people depend
    on the image; raises on the ``fail_at``-th call."""

    def __init__(self, fail_at=None):
        self.calls = 0
        self.fail_at = fail_at

    def __call__(self, batch):
        self.calls += 1
        if self.calls == self.fail_at:
            raise BpnetError("network failed on purpose")
        height, width = batch.shape[1] // 8, batch.shape[2] // 8
        heat = np.zeros((1, height, width, SKELETON.num_heatmap_channels), np.float32)
        y, x = np.unravel_index(np.argmax(batch[0, ::8, ::8, 0]), (height, width))
        heat[0, y, x, :-1] = 1.0
        return heat, np.zeros((1, height, width, SKELETON.num_paf_channels), np.float32)


def predictor(backend):
    info = ModelInfo(SKELETON, (1.0,) * 3, (0.0,) * 3, 8)
    return Predictor(backend, info, PredictorSettings(input_shape=(64, 64), keep_aspect_ratio_mode=None, decoder=ORACLE_DECODER))


def images(count):
    rng = np.random.default_rng(0)
    for index in range(count):
        yield f"image{index}", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)


def test_order_and_results_match_one_at_a_time():
    pipelined = list(predict_stream(predictor(BlobBackend()), images(12), pipelined=True))
    sequential = list(predict_stream(predictor(BlobBackend()), images(12), pipelined=False))
    assert [key for key, _, _ in pipelined] == [f"image{i}" for i in range(12)]
    for (_, _, a), (_, _, b) in zip(pipelined, sequential):
        np.testing.assert_array_equal(a.keypoints, b.keypoints)
    assert len({tuple(p.keypoints[0, 0, :2]) for _, _, p in pipelined if len(p)}) > 1  # the images differ


def test_unreadable_images_pass_through():
    items = [("a", None), ("b", np.zeros((64, 64, 3), np.uint8))]
    results = list(predict_stream(predictor(BlobBackend()), items))
    assert [(key, prediction is None) for key, _, prediction in results] == [("a", True), ("b", False)]


def test_a_failing_stage_raises_in_the_caller_and_stops_every_thread():
    before = threading.active_count()
    with pytest.raises(BpnetError, match="on purpose"):
        list(predict_stream(predictor(BlobBackend(fail_at=3)), images(50)))
    assert threading.active_count() == before

    def broken_reader():
        yield from images(2)
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        list(predict_stream(predictor(BlobBackend()), broken_reader()))
    assert threading.active_count() == before


def test_stopping_early_joins_the_threads_and_reads_only_a_few_ahead():
    before = threading.active_count()
    read = []

    def counted():
        for item in images(100):
            read.append(item[0])
            yield item

    results = predict_stream(predictor(BlobBackend()), counted())
    next(results)
    results.close()
    assert threading.active_count() == before
    assert len(read) <= 1 + 4 * (QUEUE_DEPTH + 1)
