"""The tf.data pipeline on records converted from real COCO images: layout, determinism, TLT records."""

import json

import numpy as np
import pytest
import tensorflow as tf

from bpnet import specs
from bpnet.data.pipeline import SampleMaker, build_dataset
from bpnet.data.records import read_records
from bpnet.errors import BpnetError

from .conftest import REPO_ROOT, write_train_spec


@pytest.fixture
def train_spec(tmp_path, coco_mini_records):
    path = write_train_spec(
        tmp_path,
        coco_mini_records,
        coco_mini_records / "dataset_spec.json",
        height=128,
        width=128,
        target=16,
        **{"dataloader.batch_size": 4},
    )
    return specs.load_train_spec(path)


def first_batches(spec, count=2, seed=None):
    return [(x.numpy(), {k: v.numpy() for k, v in y.items()}) for x, y in build_dataset(spec, seed=seed).take(count)]


def test_batches_have_the_documented_layout(train_spec):
    images, labels = first_batches(train_spec, 1)[0]
    assert images.shape == (4, 128, 128, 3) and images.dtype == np.float32
    assert labels["heatmaps"].shape == (4, 16, 16, 19) and labels["pafs"].shape == (4, 16, 16, 38)
    assert labels["mask"].shape == (4, 16, 16, 1)
    assert all(v.dtype == np.float32 for v in labels.values())
    assert -0.5 <= images.min() and images.max() <= 0.5  # image / 256 - 0.5
    assert 0 <= labels["mask"].min() and labels["mask"].max() <= 1
    heat = labels["heatmaps"]
    np.testing.assert_allclose(heat[..., 18], np.clip(1 - heat[..., :18].max(-1), 0, 1), atol=1e-6)
    assert heat[..., :18].max() > 0.5  # the main person is drawn
    norms = np.hypot(labels["pafs"][..., 0::2], labels["pafs"][..., 1::2])
    assert norms.max() <= 1 + 1e-6 and norms.max() > 0.99


def test_same_seed_same_batches_other_seed_other_batches(train_spec):
    first, again = first_batches(train_spec), first_batches(train_spec)
    for (x1, y1), (x2, y2) in zip(first, again):
        np.testing.assert_array_equal(x1, x2)
        for key in y1:
            np.testing.assert_array_equal(y1[key], y2[key])
    other = first_batches(train_spec, seed=7)
    assert not np.array_equal(first[0][0], other[0][0])


def test_validation_pass_is_one_unaugmented_epoch(train_spec, coco_mini_records):
    records = list(read_records(str(coco_mini_records / "train-fold-000-of-001")))
    batches = list(build_dataset(train_spec, training=False))
    assert sum(x.shape[0] for x, _ in batches) == len(records)
    maker = SampleMaker.from_train_spec(train_spec, augment_data=False)
    r = records[0]
    sample = maker.make(r.image_path, r.mask_path, r.dataset, (r.width, r.height), r.joints, r.scales, r.centers, 0)
    np.testing.assert_allclose(batches[0][0][0].numpy(), sample.image, atol=1e-6)


def tlt_example(record) -> bytes:
    """A tf.train.Example built field by field exactly as TLT's converter writes it (§3.1)."""

    def int64(v):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))

    def raw(v):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

    feature = {
        "frame/image_id": int64(record.image_id),
        "frame/height": int64(record.height),
        "frame/width": int64(record.width),
        "frame/image_path": raw(record.image_path.encode()),
        "frame/mask_path": raw(record.mask_path.encode()),
        "dataset": raw(b"coco"),
        "person/joints": raw(np.asarray(record.joints, np.float64).tobytes()),
        "person/scales": raw(np.asarray(record.scales, np.float64).tobytes()),
        "person/centers": raw(np.asarray(record.centers, np.float64).tobytes()),
        "person/person_idx": int64(record.person_idx),
        "person/num_other_people": int64(record.num_persons - 1),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def test_a_tlt_encoded_record_loads(train_spec, coco_mini_records, tmp_path):
    records = list(read_records(str(coco_mini_records / "train-fold-000-of-001")))[:4]
    tlt_file = tmp_path / "tlt-fold-000-of-001"
    with tf.io.TFRecordWriter(str(tlt_file)) as writer:
        for record in records:
            writer.write(tlt_example(record))
    records = [str(coco_mini_records / "train-fold-000-of-001")]
    ours = [x.numpy() for x, _ in build_dataset(train_spec, records, training=False).take(1)]
    theirs = [x.numpy() for x, _ in build_dataset(train_spec, [str(tlt_file)], training=False).take(1)]
    np.testing.assert_array_equal(ours[0], theirs[0])


def test_any_skeleton(tmp_path, coco_mini_records):
    pose = {
        "pose_config_type": "coco_17_no_neck",
        "categories": [
            {
                "id": 1,
                "name": "person",
                "keypoints": ["nose", "left_shoulder", "right_shoulder", "left_wrist", "right_wrist"],
                "skeleton": [[1, 2], [1, 3], [2, 4], [3, 5]],
            }
        ],
    }
    pose_path = tmp_path / "pose.json"
    pose_path.write_text(json.dumps(pose))
    spec = specs.load_train_spec(
        write_train_spec(
            tmp_path,
            coco_mini_records,
            coco_mini_records / "dataset_spec.json",
            height=64,
            width=96,
            target=12,
            pose_config=pose_path,
            **{"dataloader.batch_size": 2, "model.heat_channels": None, "model.paf_channels": None},
        )
    )
    images, labels = first_batches(spec, 1)[0]
    assert images.shape == (2, 64, 96, 3)
    assert labels["heatmaps"].shape == (2, 8, 12, 6) and labels["pafs"].shape == (2, 8, 12, 8)


def test_missing_record_file_is_a_clear_error(train_spec, tmp_path):
    with pytest.raises(BpnetError, match="nope-fold-000-of-001: TFRecord file not found"):
        build_dataset(train_spec, [str(tmp_path / "nope-fold-000-of-001")])


def test_shipped_dataset_spec_maps_coco_to_18_joints():
    spec = specs.load_train_spec(REPO_ROOT / "specs" / "bpnet_train_m1_coco.yaml")
    maker = SampleMaker.from_train_spec(spec)
    assert list(maker.mappings) == ["coco"] and maker.mappings["coco"].midpoints == {1: (5, 6)}


def test_dataset_inspect_writes_rendered_samples(tmp_path, coco_mini_records):
    import cv2
    from click.testing import CliRunner

    from bpnet.cli import cli

    spec = write_train_spec(tmp_path, coco_mini_records, coco_mini_records / "dataset_spec.json", height=128, width=96, target=12)
    result = CliRunner().invoke(cli, ["dataset_inspect", "-e", str(spec), "-n", "3", "-o", str(tmp_path / "inspect")])
    assert result.exit_code == 0, result.output
    pictures = sorted((tmp_path / "inspect").glob("sample_*.png"))
    assert [p.name for p in pictures] == ["sample_0000.png", "sample_0001.png", "sample_0002.png"]
    picture = cv2.imread(str(pictures[0]))
    assert picture.shape[1] == 2 * 192 + 4 and picture.shape[0] > 256  # two panels, captions and a legend
    left, right = picture[:, :192], picture[:, 196:]
    assert np.abs(left.astype(int) - right.astype(int)).mean() > 5  # the panels differ: targets drawn
    missing = CliRunner().invoke(cli, ["dataset_inspect", "-e", str(tmp_path / "none.yaml"), "-o", str(tmp_path / "x")])
    assert missing.exit_code == 2 and "none.yaml: no such spec file" in missing.stderr
