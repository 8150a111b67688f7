"""TFRecord schema of TLT bpnet (reference §3.1): one ``tf.train.Example`` per (image, main person).

Features (TLT's keys and encodings, so records cross between TLT and bpnet either way):

===========================  =======  ======================================================
``frame/image_id``           int64    COCO image id
``frame/height``, ``width``  int64    original image size
``frame/image_path``         bytes    image path relative to the dataset root (or absolute)
``frame/mask_path``          bytes    loss-mask path relative to the dataset root (or absolute)
``dataset``                  bytes    dataset name, a key of the train spec's ``dataset_specs``
``person/joints``            bytes    float64 ``(P, Kd, 3)`` [x, y, dataset flag], main person first
``person/scales``            bytes    float64 ``(P,)`` bbox heights
``person/centers``           bytes    float64 ``(P, 2)`` bbox centres (x, y)
``person/person_idx``        int64    index of the main person in the image's annotation list
``person/num_other_people``  int64    P - 1
===========================  =======  ======================================================

TensorFlow is imported inside the functions that need it, so conversion workers stay light.
"""

import dataclasses
from typing import Iterable, Iterator

import numpy as np

from bpnet.files import atomic_path


@dataclasses.dataclass(frozen=True)
class PoseRecord:
    """One training example: an image, its loss mask and the persons in it (main person first)."""

    image_id: int
    height: int
    width: int
    image_path: str
    mask_path: str
    dataset: str
    joints: np.ndarray  # (P, Kd, 3) float64, [x, y, dataset visibility flag]
    scales: np.ndarray  # (P,) float64, bbox heights in pixels
    centers: np.ndarray  # (P, 2) float64, bbox centres (x, y) in pixels
    person_idx: int

    @property
    def num_persons(self) -> int:
        return int(self.scales.shape[0])


INT64_FEATURES = ("frame/image_id", "frame/height", "frame/width", "person/person_idx", "person/num_other_people")
BYTES_FEATURES = ("frame/image_path", "frame/mask_path", "dataset", "person/joints", "person/scales", "person/centers")
"""The schema's feature keys by type (the table above): the one place that lists them."""


def parsing_spec(keys: Iterable[str]) -> dict:
    """``tf.io.parse_single_example`` features for ``keys`` of the schema (scalars: int64 or bytes)."""
    import tensorflow as tf

    unknown = [key for key in keys if key not in INT64_FEATURES + BYTES_FEATURES]
    if unknown:
        raise KeyError(f"not features of the bpnet TFRecord schema: {unknown}")
    return {key: tf.io.FixedLenFeature([], tf.int64 if key in INT64_FEATURES else tf.string) for key in keys}


def encode(record: PoseRecord) -> bytes:
    """Serialise a record as a ``tf.train.Example`` with TLT's feature encoding."""
    import tensorflow as tf

    def int64(value: int) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))

    def raw(value: bytes) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    features = {
        "frame/image_id": int64(record.image_id),
        "frame/height": int64(record.height),
        "frame/width": int64(record.width),
        "frame/image_path": raw(record.image_path.encode("utf-8")),
        "frame/mask_path": raw(record.mask_path.encode("utf-8")),
        "dataset": raw(record.dataset.encode("utf-8")),
        "person/joints": raw(np.ascontiguousarray(record.joints, dtype=np.float64).tobytes()),
        "person/scales": raw(np.ascontiguousarray(record.scales, dtype=np.float64).tobytes()),
        "person/centers": raw(np.ascontiguousarray(record.centers, dtype=np.float64).tobytes()),
        "person/person_idx": int64(record.person_idx),
        "person/num_other_people": int64(record.num_persons - 1),
    }
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def decode(serialized: bytes) -> PoseRecord:
    """Parse one serialised example (ours or TLT's) back into a :class:`PoseRecord`."""
    import tensorflow as tf

    feature = tf.train.Example.FromString(serialized).features.feature

    def int64(key: str) -> int:
        return int(feature[key].int64_list.value[0])

    def raw(key: str) -> bytes:
        return feature[key].bytes_list.value[0]

    scales = np.frombuffer(raw("person/scales"), dtype=np.float64).copy()
    num_persons = scales.shape[0]
    joints = np.frombuffer(raw("person/joints"), dtype=np.float64).copy()
    return PoseRecord(
        image_id=int64("frame/image_id"),
        height=int64("frame/height"),
        width=int64("frame/width"),
        image_path=raw("frame/image_path").decode("utf-8"),
        mask_path=raw("frame/mask_path").decode("utf-8"),
        dataset=raw("dataset").decode("utf-8"),
        joints=joints.reshape(num_persons, -1, 3),
        scales=scales,
        centers=np.frombuffer(raw("person/centers"), dtype=np.float64).copy().reshape(num_persons, 2),
        person_idx=int64("person/person_idx"),
    )


def read_records(path: str) -> Iterator[PoseRecord]:
    """Iterate over the records of one TFRecord file."""
    import tensorflow as tf

    for serialized in tf.data.TFRecordDataset(path):
        yield decode(serialized.numpy())


def count_records(paths: Iterable[str]) -> int:
    """Number of examples in TFRecord files (one pass over the files, no parsing)."""
    import tensorflow as tf

    return sum(1 for path in paths for _ in tf.data.TFRecordDataset(path))


def write_records(path: str, records: Iterable[PoseRecord]) -> int:
    """Write records to ``path`` through a temporary file renamed on success; returns the count."""
    import tensorflow as tf

    count = 0
    with atomic_path(path) as tmp, tf.io.TFRecordWriter(tmp) as writer:
        for record in records:
            writer.write(encode(record))
            count += 1
    return count
