"""The synthetic dataset: deterministic, exact annotations, valid COCO, usable by dataset_convert."""

import contextlib
import hashlib
import io
import json

import numpy as np
import pytest
from click.testing import CliRunner
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from bpnet.cli import cli
from bpnet.synthesize import COCO_KEYPOINTS, MAX_HIDDEN_KEYPOINTS, annotate, render_scene, synthesize


def _digests(folder):
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    synthesize(str(tmp_path / "a"), 6, seed=3)
    synthesize(str(tmp_path / "b"), 6, seed=3)
    synthesize(str(tmp_path / "c"), 6, seed=4)
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    assert _digests(tmp_path / "a") != _digests(tmp_path / "c")


@pytest.mark.parametrize("index", range(12))
def test_keypoints_lie_on_their_figure_and_occlusion_is_exact(index):
    scene = render_scene(np.random.default_rng([7, index]))
    height, width = scene.image.shape[:2]
    annotations = [a for a in annotate(scene) if not a["iscrowd"]]
    figures = [f for f in scene.figures if f.visible.sum() >= 20]
    assert len(annotations) == len(figures)
    for depth, (figure, annotation) in enumerate(zip(figures, annotations)):
        keypoints = np.array(annotation["keypoints"], dtype=np.float64).reshape(17, 3)
        in_front = [f.silhouette for f in figures[depth + 1 :]]
        for (x, y, v), true_xy in zip(keypoints, figure.keypoints):
            inside = 0 <= true_xy[0] <= width - 1 and 0 <= true_xy[1] <= height - 1
            if not figure.labeled or not inside:
                assert v == 0 and x == 0 and y == 0
                continue
            row, col = int(round(y)), int(round(x))
            assert figure.silhouette[row, col], "every keypoint lies on its figure's drawn pixels"
            covered = any(s[row, col] for s in in_front)
            assert v == (1 if covered else 2), "visible = on top; occluded = another figure in front"
        assert annotation["num_keypoints"] == int((keypoints[:, 2] > 0).sum())
        polygons = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(annotation["segmentation"], height, width)))
        assert annotation["area"] == float(polygons.sum())
        overlap = (polygons.astype(bool) & figure.visible).sum() / (polygons.astype(bool) | figure.visible).sum()
        assert overlap > (0.6 if figure.visible.sum() > 300 else 0.3), "the polygons outline the visible pixels"


def test_the_dataset_loads_in_pycocotools_with_crowds_and_unlabeled_people(tmp_path):
    result = CliRunner().invoke(cli, ["synthesize", "-o", str(tmp_path), "--num_images", "40", "--seed", "0"])
    assert result.exit_code == 0, result.output
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(tmp_path / "annotations" / "person_keypoints_train2017.json"))
    annotations = coco.loadAnns(coco.getAnnIds())
    assert coco.loadCats(1)[0]["keypoints"] == list(COCO_KEYPOINTS)
    assert any(a["iscrowd"] for a in annotations), "some crowd regions (RLE)"
    assert any(not a["iscrowd"] and a["num_keypoints"] == 0 for a in annotations), "some people without keypoints"
    flags = {v for a in annotations for v in a["keypoints"][2::3]}
    assert flags == {0, 1, 2}
    for annotation in annotations:
        assert coco.annToMask(annotation).sum() == annotation["area"]
    per_image = [len(coco.getAnnIds(imgIds=i, iscrowd=False)) for i in coco.getImgIds()]
    assert min(per_image) >= 1 and max(per_image) <= 6
    assert json.loads((tmp_path / "annotations" / "person_keypoints_train2017.json").read_text())["images"]


def test_figures_occlude_each_other_but_each_keeps_three_quarters_of_its_keypoints_in_view():
    hidden, people_per_image = [], []
    for index in range(40):
        scene = render_scene(np.random.default_rng([11, index]))
        people = [a for a in annotate(scene) if not a["iscrowd"]]
        people_per_image.append(len(people))
        for annotation in people:
            flags = np.array(annotation["keypoints"][2::3])
            if (flags > 0).any():
                hidden.append(float(np.mean(flags[flags > 0] == 1)))
    assert max(hidden) <= MAX_HIDDEN_KEYPOINTS
    assert np.mean(np.array(hidden) > 0) > 0.2, "occlusion is common"
    assert max(people_per_image) >= 5, "crowded images still happen"
