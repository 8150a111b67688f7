"""`bpnet evaluate`'s report folder (issue 30): per-image AP, AP by keypoint count, the worst images rendered,
checked against pycocotools run independently and by opening the HTML page."""

import contextlib
import copy
import csv
import html.parser
import io
import json

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from bpnet.infer.coco_eval import evaluate_keypoints
from bpnet.infer.evaluation_report import KEYPOINT_BUCKETS, RENDER_WIDTH, ap_by_keypoint_count, per_image_results, write_report


def load_coco(path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def perfect(annotation, score=0.9):
    return {"image_id": annotation["image_id"], "category_id": 1, "keypoints": list(annotation["keypoints"]), "score": score}


@pytest.fixture
def sample(coco_val_sample):
    coco = load_coco(coco_val_sample / "test_coco.json")
    paths = {image_id: str(coco_val_sample / coco.loadImgs(image_id)[0]["file_name"]) for image_id in sorted(coco.getImgIds())}
    people = [a for a in coco.dataset["annotations"] if a.get("num_keypoints", 0) > 0 and not a.get("iscrowd")]
    return coco, paths, people


def test_per_image_ap_is_pycocotools_on_each_image(sample):
    coco, paths, people = sample
    first, second = sorted({p["image_id"] for p in people})[:2]
    detections = [perfect(p) for p in people if p["image_id"] == first]
    shifted = [perfect(p, 0.5) for p in people if p["image_id"] == second]
    for detection in shifted:
        values = np.asarray(detection["keypoints"], float).reshape(-1, 3)
        values[:, :2] += 25.0  # far enough to lose most matches
        detection["keypoints"] = values.ravel().tolist()
    rows = {row.image_id: row for row in per_image_results(coco, detections + shifted, paths)}
    assert rows[first].ap == pytest.approx(1.0)
    expected = evaluate_keypoints(coco, shifted, [second])["AP_0.50:0.95_all"]
    assert rows[second].ap == pytest.approx(max(0.0, expected)) and rows[second].ap < 1.0
    for image_id, row in rows.items():
        assert row.people == sum(p["image_id"] == image_id for p in people)
        if image_id not in (first, second):
            assert row.ap == (0.0 if row.people else None) and row.detections == 0


def test_ap_by_keypoint_count_matches_a_ground_truth_holding_only_that_bucket(sample, tmp_path):
    coco, paths, people = sample
    for low, high in KEYPOINT_BUCKETS:
        inside = [p for p in people if low <= p["num_keypoints"] <= high]
        if not inside:
            continue
        detections = [perfect(p) for p in inside[::2]]  # half of them found exactly
        found = ap_by_keypoint_count(coco, detections, list(paths))[f"{low}-{high} keypoints"]
        only = copy.deepcopy(coco.dataset)
        only["annotations"] = [a for a in only["annotations"] if a in inside or a.get("iscrowd")]
        (tmp_path / "only.json").write_text(json.dumps(only))
        expected = evaluate_keypoints(load_coco(tmp_path / "only.json"), detections, list(paths))
        assert found == pytest.approx(max(0.0, expected["AP_0.50:0.95_all"]))
        assert 0.0 < found < 1.0


class _Tables(html.parser.HTMLParser):
    """Rows per table class and the images a page shows."""

    def __init__(self):
        super().__init__()
        self.rows, self.images, self._table = {}, [], None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "table":
            self._table = attributes.get("class")
            self.rows[self._table] = 0
        elif tag == "tr" and self._table is not None:
            self.rows[self._table] += 1
        elif tag == "img":
            self.images.append(attributes["src"])


def test_the_report_page_shows_every_image_and_the_worst_ones_drawn(sample, tmp_path):
    coco, paths, people = sample
    detections = [perfect(p) for p in people[::3]]
    stats = evaluate_keypoints(coco, detections, list(paths))
    limbs = [(a - 1, b - 1) for a, b in coco.loadCats(1)[0]["skeleton"]]
    index = write_report(str(tmp_path / "report"), coco, detections, paths, stats, limbs, 17)
    page = _Tables()
    page.feed(open(index, encoding="utf-8").read())
    assert page.rows["per-image"] == len(paths) + 1  # a header and a row per image
    assert page.rows["keypoint-counts"] == len(KEYPOINT_BUCKETS) + 1 and page.rows["sizes"] == 4
    with open(tmp_path / "report" / "per_image.csv") as handle:
        assert len(list(csv.DictReader(handle))) == len(paths)
    scored = [image_id for image_id in paths if any(p["image_id"] == image_id for p in people)]
    assert len(page.images) == len(scored)  # every image with people is among the (at most 12) worst
    green = 0
    for name in page.images:
        drawn = cv2.imread(str(tmp_path / "report" / name))
        image_id = int(name.rsplit("_", 1)[1].split(".")[0])
        original = cv2.imread(paths[image_id])
        width = min(RENDER_WIDTH, original.shape[1])
        assert drawn.shape[1] == width and abs(drawn.shape[0] - original.shape[0] * width / original.shape[1]) <= 1
        plain = cv2.resize(original, (drawn.shape[1], drawn.shape[0]), interpolation=cv2.INTER_AREA)
        assert (np.abs(drawn.astype(int) - plain).sum(axis=2) > 90).sum() > 100  # skeletons drawn on it
        green += ((drawn[..., 1] > 150) & (drawn[..., 0] < 120) & (drawn[..., 2] < 120)).sum()
    assert green > 200  # the ground truth of the people without a detection, in green
