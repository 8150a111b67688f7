"""dataset_convert on real COCO data: record counts, record contents, masks, partitions, atomicity."""

import collections
import json
import math
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from bpnet.data.convert import convert_dataset, record_file_names
from bpnet.data.records import PoseRecord, count_records, read_records, write_records

from .conftest import write_dataset_spec


def expected_main_persons(annotations):
    """Main persons of one image, straight from the COCO JSON (TLT's rules with bug §8.4 fixed)."""
    accepted = []
    for index, ann in enumerate(annotations):
        labeled = sum(1 for v in ann["keypoints"][2::3] if v > 0)
        if ann["iscrowd"] or labeled < 5 or ann["area"] < 32 * 32:
            continue
        x, y, w, h = ann["bbox"]
        centre = (x + w / 2, y + h / 2)
        if all(math.dist(centre, c) >= 0.3 * scale for c, scale in accepted):
            accepted.append((centre, max(w, h)))
            yield index


def load_coco(annotation_file):
    data = json.loads(Path(annotation_file).read_text())
    per_image = collections.defaultdict(list)
    for ann in data["annotations"]:
        per_image[ann["image_id"]].append(ann)
    return data, per_image


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """coco_mini converted once with masks (2 workers); returns (spec folder, annotation file, records)."""
    from .conftest import COCO_MINI

    if not COCO_MINI.exists():
        pytest.skip(f"real data not found at {COCO_MINI}")
    folder = tmp_path_factory.mktemp("coco_mini")
    annotation_file = COCO_MINI / "annotations" / "person_keypoints_train2017.json"
    spec = write_dataset_spec(folder, COCO_MINI / "train2017", annotation_file)
    summary = convert_dataset(
        str(spec),
        str(folder / "out" / "train"),
        generate_masks=True,
        check_files=True,
        results_dir=str(folder / "results"),
        workers=2,
        progress=False,
    )
    records = list(read_records(str(folder / "out" / "train-fold-000-of-001")))
    return folder, annotation_file, summary, records


def test_record_count_equals_an_independent_count(converted):
    folder, annotation_file, summary, records = converted
    _, per_image = load_coco(annotation_file)
    expected = sum(len(list(expected_main_persons(anns))) for anns in per_image.values())
    assert expected > 50
    assert len(records) == summary.num_records == expected
    assert count_records([str(folder / "out" / "train-fold-000-of-001")]) == expected


def test_records_give_back_the_source_annotations(converted):
    _, annotation_file, _, records = converted
    data, per_image = load_coco(annotation_file)
    images = {image["id"]: image for image in data["images"]}
    seen = set()
    for record in records:
        anns = per_image[record.image_id]
        main = anns[record.person_idx]
        others = [a for i, a in enumerate(anns) if i != record.person_idx and a["num_keypoints"] > 0]
        persons = [main] + others
        assert record.num_persons == len(persons)
        np.testing.assert_array_equal(record.joints, np.array([a["keypoints"] for a in persons]).reshape(-1, 17, 3))
        centres = [(a["bbox"][0] + a["bbox"][2] / 2, a["bbox"][1] + a["bbox"][3] / 2) for a in persons]
        np.testing.assert_allclose(record.centers, centres)
        np.testing.assert_allclose(record.scales, [a["bbox"][3] for a in persons])
        image = images[record.image_id]
        assert (record.height, record.width, record.dataset) == (image["height"], image["width"], "coco")
        assert record.image_path.endswith("/train2017/" + image["file_name"]) and os.path.isfile(record.image_path)
        assert record.mask_path == os.path.join("train_mask", image["file_name"].replace(".jpg", ".png"))
        seen.add((record.image_id, record.person_idx))
    assert len(seen) == len(records)


def test_masks_equal_pycocotools_ann_to_mask_on_every_pixel(converted):
    folder, annotation_file, summary, records = converted
    coco = COCO(str(annotation_file))
    image_ids = sorted({r.image_id for r in records})
    assert summary.num_masks == len(image_ids)
    crowd_images = 0
    for image_id in image_ids:
        info = coco.loadImgs(image_id)[0]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        h, w = info["height"], info["width"]
        crowd, labeled, unlabeled = (np.zeros((h, w), bool) for _ in range(3))
        for ann in anns:
            region = coco.annToMask(ann).astype(bool)
            if ann["iscrowd"]:
                crowd |= region
            elif ann["num_keypoints"] > 0:
                labeled |= region
            else:
                unlabeled |= region
        expected = np.where((crowd & ~labeled) | unlabeled, 0, 255)
        crowd_images += crowd.any()
        mask = cv2.imread(str(folder / "train_mask" / info["file_name"].replace(".jpg", ".png")), cv2.IMREAD_UNCHANGED)
        assert mask.dtype == np.uint8 and mask.shape == (h, w)
        np.testing.assert_array_equal(mask, expected, err_msg=info["file_name"])
    assert crowd_images > 0, "the sample should exercise crowd regions"


def test_status_json_and_no_temporary_files(converted):
    folder, _, summary, _ = converted
    lines = [json.loads(line) for line in (folder / "results" / "status.json").read_text().splitlines()]
    assert [line["status"] for line in lines] == ["STARTED", "SUCCESS"]
    assert lines[-1]["kpi"]["records"] == summary.num_records
    leftovers = [p for p in folder.rglob("*") if ".tmp-" in p.name]
    assert leftovers == []


def test_summary_counts_skipped_images_by_reason(converted):
    _, annotation_file, summary, _ = converted
    data, per_image = load_coco(annotation_file)
    without_people = sum(1 for image in data["images"] if image["id"] not in per_image)
    without_main = sum(1 for anns in per_image.values() if not list(expected_main_persons(anns)))
    assert summary.skipped_images == {"without person annotations": without_people, "without a main person": without_main}
    assert summary.num_images == len(data["images"])


def test_partitions_and_shards_hold_every_record_once(converted, tmp_path):
    folder, _, _, records = converted
    spec = folder / "dataset_spec.json"
    convert_dataset(str(spec), str(tmp_path / "train"), num_partitions=2, num_shards=3, workers=1, progress=False)
    names = record_file_names(str(tmp_path / "train"), 2, 3)
    assert Path(names[1][2]).name == "train-fold-001-of-002-shard-00002-of-00003"
    keys = [(r.image_id, r.person_idx) for fold in names for name in fold for r in read_records(name)]
    assert sorted(keys) == sorted((r.image_id, r.person_idx) for r in records)


def test_one_worker_and_two_workers_write_the_same_masks(converted, tmp_path):
    folder, annotation_file, _, _ = converted
    from .conftest import COCO_MINI

    spec = write_dataset_spec(tmp_path, COCO_MINI / "train2017", annotation_file)
    convert_dataset(str(spec), str(tmp_path / "train"), generate_masks=True, workers=1, progress=False)
    for mask in (folder / "train_mask").iterdir():
        assert (tmp_path / "train_mask" / mask.name).read_bytes() == mask.read_bytes()


def test_coco_val_sample_test_mode(tmp_path, coco_val_sample):
    annotation_file = coco_val_sample / "test_coco.json"
    spec = write_dataset_spec(tmp_path, coco_val_sample, annotation_file, mode="test")
    summary = convert_dataset(
        str(spec), str(tmp_path / "val"), mode="test", generate_masks=True, check_files=True, workers=1, progress=False
    )
    _, per_image = load_coco(annotation_file)
    assert summary.num_records == sum(len(list(expected_main_persons(a))) for a in per_image.values()) > 0
    assert len(list((tmp_path / "test_mask").iterdir())) == summary.num_masks


def test_interrupted_record_writing_leaves_no_file(tmp_path):
    record = PoseRecord(1, 10, 10, "a.jpg", "a.png", "coco", np.zeros((1, 17, 3)), np.ones(1), np.ones((1, 2)), 0)

    def records():
        yield record
        raise KeyboardInterrupt

    path = tmp_path / "train-fold-000-of-001"
    with pytest.raises(KeyboardInterrupt):
        write_records(str(path), records())
    assert list(tmp_path.iterdir()) == []


def test_a_split_without_a_mask_folder_evaluates_but_does_not_convert(tmp_path, coco_val_sample):
    """The mask folder is for training data: evaluate's spec needs none, dataset_convert names the field."""
    from click.testing import CliRunner

    from bpnet.cli import cli
    from bpnet.infer.evaluate import _evaluation_inputs

    from .conftest import assert_one_line_error

    spec_path = write_dataset_spec(tmp_path, coco_val_sample, coco_val_sample / "test_coco.json", mode="test")
    spec = json.loads(spec_path.read_text())
    del spec["test_data"]["mask_root_dir_path"]
    spec_path.write_text(json.dumps(spec))
    dataset, annotation_file, images = _evaluation_inputs(str(spec_path))
    assert dataset.test_data.mask_root_dir_path is None and images == str(coco_val_sample)
    result = CliRunner().invoke(cli, ["dataset_convert", "-d", str(spec_path), "-m", "test", "-o", str(tmp_path / "val")])
    assert_one_line_error(result, str(spec_path), "test_data.mask_root_dir_path: not set")


def test_evaluate_short_form_checks_its_arguments(tmp_path, coco_val_sample):
    from click.testing import CliRunner

    from bpnet.cli import cli

    from .conftest import assert_one_line_error

    runner = CliRunner()
    annotations = str(coco_val_sample / "test_coco.json")
    assert_one_line_error(runner.invoke(cli, ["evaluate", "-m", "x.onnx", "--annotations", annotations]), "--images DIR")
    both = runner.invoke(cli, ["evaluate", "-m", "x.onnx", "-d", "s.json", "--annotations", annotations, "--images", "."])
    assert_one_line_error(both, "or -d/--dataset_spec")
    plain = tmp_path / "instances.json"
    plain.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "person"}]}))
    no_keypoints = runner.invoke(cli, ["evaluate", "-m", "x.onnx", "--annotations", str(plain), "--images", str(tmp_path)])
    assert_one_line_error(no_keypoints, str(plain), "no category lists keypoints")
