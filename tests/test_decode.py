"""Decoder on hand-built maps, the COCO writer against pycocotools' reference stats, the oracle floor."""

import contextlib
import copy
import dataclasses
import io
import json

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from bpnet.data import targets
from bpnet.infer.coco_eval import KPI_NAMES, evaluate_keypoints
from bpnet.infer.decode import DecoderParams, decode, find_peaks, limb_candidates, match
from bpnet.infer.oracle import ORACLE_DECODER, OracleSettings, dataset_skeleton, fully_connected, run_oracle
from bpnet.infer.results import Prediction
from bpnet.skeleton import Visibility
from bpnet.specs import load_dataset_spec

from .conftest import BODY18, REPO_ROOT, SHARED_DATA

COCO_SPEC = load_dataset_spec(REPO_ROOT / "data_pose_config" / "coco_spec.json")


def network_maps(joints, shape=(46, 46), stride=8):
    """Perfect stride-``stride`` heatmaps and PAFs of ``joints`` (input pixels), as a network would output."""
    return targets.heatmaps(joints, shape, stride, 7.0), targets.pafs(joints, BODY18.limbs, shape, stride, 1.0)


def upsampled_maps(joints, shape=(46, 46), stride=8, factor=None):
    """The network maps upsampled with OpenCV by ``factor`` ((fy, fx), default the stride), as TLT decodes them."""
    heat, paf = network_maps(joints, shape, stride)
    factor_y, factor_x = factor or (stride, stride)
    size = (shape[1] * factor_x, shape[0] * factor_y)
    return cv2.resize(heat, size, interpolation=cv2.INTER_CUBIC), cv2.resize(paf, size, interpolation=cv2.INTER_CUBIC)


def person(centre_x, centre_y, tilt):
    """An upright 18-joint person (all joints visible) sheared by ``tilt`` pixels per pixel of height."""
    layout = {
        "nose": (0, -80),
        "neck": (0, -60),
        "right_shoulder": (-20, -60),
        "right_elbow": (-28, -30),
        "right_wrist": (-30, 0),
        "left_shoulder": (20, -60),
        "left_elbow": (28, -30),
        "left_wrist": (30, 0),
        "right_hip": (-12, 10),
        "right_knee": (-14, 50),
        "right_ankle": (-15, 90),
        "left_hip": (12, 10),
        "left_knee": (14, 50),
        "left_ankle": (15, 90),
        "right_eye": (-5, -85),
        "left_eye": (5, -85),
        "right_ear": (-10, -82),
        "left_ear": (10, -82),
    }
    joints = np.zeros((18, 3))
    for name, (dx, dy) in layout.items():
        joints[BODY18.index(name)] = (centre_x + dx + tilt * dy, centre_y + dy, Visibility.VISIBLE)
    return joints


def test_two_people_whose_limbs_cross_are_decoded_into_the_right_skeletons():
    people = np.stack([person(160, 190, 0.9), person(215, 190, -0.9)])  # arms and legs cross between them
    heat, paf = upsampled_maps(people)
    found = decode(heat, paf, BODY18.limbs, DecoderParams(subpixel=True))
    assert len(found) == 2
    for truth in people:
        errors = [np.abs(d[:, :2] - truth[:, :2]).max() for d in found.keypoints]
        best = found.keypoints[int(np.argmin(errors))]
        assert np.all(best[:, 2] > 0)
        np.testing.assert_allclose(best[:, :2], truth[:, :2], atol=1.5)


def test_thresholds_from_the_spec_are_honoured():
    heat, paf = upsampled_maps(person(180, 190, 0.0)[None])
    assert len(decode(heat, paf, BODY18.limbs, DecoderParams(heatmap_threshold=0.1))) == 1
    assert len(decode(heat, paf, BODY18.limbs, DecoderParams(heatmap_threshold=1.01))) == 0
    assert len(decode(heat, paf, BODY18.limbs, DecoderParams(paf_threshold=1.01))) == 0


@pytest.mark.parametrize("subpixel", [False, True])
def test_coarse_to_fine_search_finds_the_full_search_peaks(subpixel):
    people = np.stack([person(90, 110, 0.3), person(200, 120, -0.2), person(300, 250, 0.0), person(150, 260, 0.5)])
    heat, _ = upsampled_maps(people)
    full = find_peaks(heat, DecoderParams(subpixel=subpixel), 18)
    coarse = find_peaks(heat, DecoderParams(subpixel=subpixel, search_step=4), 18)
    assert sum(len(p) for p in full) >= 4 * 18
    for full_peaks, coarse_peaks in zip(full, coarse):  # the same peaks; ties of a flat top may keep one pixel of two
        distances = np.abs(full_peaks[:, None, :2] - coarse_peaks[None, :, :2]).max(-1)
        assert np.all(distances.min(axis=0) <= 1e-4), "every coarse peak is a full-search peak"
        assert np.all(distances.min(axis=1) <= 1.0), "every full-search peak is found within a pixel"
        assert len(coarse_peaks) >= 4


def test_coarse_search_decodes_the_crossing_people():
    people = np.stack([person(160, 190, 0.9), person(215, 190, -0.9)])
    heat, paf = upsampled_maps(people)
    found = decode(heat, paf, BODY18.limbs, DecoderParams(search_step=4))
    assert len(found) == 2 and np.all(found.keypoints[..., 2] > 0)


CROWD = [(90, 110, 0.3), (200, 120, -0.2), (300, 250, 0.0), (150, 260, 0.5), (330, 95, 0.1)]


@pytest.mark.parametrize("subpixel", [False, True])
@pytest.mark.parametrize("factor", [(8, 8), (4, 8), (2, 2)])
def test_local_upsampling_finds_the_peaks_of_the_upsampled_maps(subpixel, factor):
    """Peaks searched on network-resolution maps with local upsampling are the full search's peaks on the maps
    OpenCV upsampled in full: same pixels, same scores (OpenCV's bicubic values), same sub-pixel offsets.
    Two exceptions: of a flat top's tied pixels either may be kept, and within the smoothing radius of the
    border (where the full search's filter reflects the map) sub-pixel offsets may differ a little."""
    people = np.stack([person(x, y, tilt) for x, y, tilt in CROWD])
    heat, _ = network_maps(people)
    full_heat, _ = upsampled_maps(people, factor=factor)
    params = DecoderParams(subpixel=subpixel)
    full = find_peaks(full_heat, params, 18)
    local = find_peaks(heat, params, 18, upsampling=factor)
    assert sum(len(p) for p in full) >= 5 * 18
    height, width = full_heat.shape[:2]
    for full_peaks, local_peaks in zip(full, local):
        assert abs(len(full_peaks) - len(local_peaks)) <= 1
        for mine, others in ((local_peaks, full_peaks), (full_peaks, local_peaks)):
            distances = np.abs(mine[:, None, :2] - others[None, :, :2]).max(-1)
            nearest = others[distances.argmin(axis=1)]
            np.testing.assert_allclose(nearest[:, 2], mine[:, 2], atol=1e-4)
            assert np.all(distances.min(axis=1) <= 1.0), "every peak has a counterpart within a pixel"
            near_border = (mine[:, 0] < 4) | (mine[:, 0] > width - 5) | (mine[:, 1] < 4) | (mine[:, 1] > height - 5)
            exact = distances.min(axis=1) <= np.where(near_border, 0.1, 1e-4)
            assert exact.sum() >= len(mine) - 1, "all but a tied pixel are the same peaks"


def test_local_upsampling_decodes_the_same_people_as_full_upsampling():
    people = np.stack([person(160, 190, 0.9), person(215, 190, -0.9)] + [person(x, y, t) for x, y, t in CROWD[:3]])
    heat, paf = network_maps(people)
    full_heat, full_paf = upsampled_maps(people)
    full = decode(full_heat, full_paf, BODY18.limbs, DecoderParams(subpixel=True))
    local = decode(heat, paf, BODY18.limbs, DecoderParams(subpixel=True), upsampling=(8, 8))
    assert len(local) == len(full) == 5 and np.all(local.keypoints[..., 2] > 0)
    np.testing.assert_allclose(local.keypoints, full.keypoints, atol=1e-4)
    for truth in people:
        errors = [np.abs(found[:, :2] - truth[:, :2]).max() for found in local.keypoints]
        assert min(errors) <= 1.5


def test_local_upsampling_samples_the_network_pafs_bilinearly():
    """A PAF whose x component grows linearly along x: bilinear sampling is exact there, so the limb score is
    the mean of the ramp at the sample points (worked out with np.interp), border replicated."""
    width, factor = 12, 8
    ramp = 0.1 * np.arange(width)
    pafs = np.zeros((6, width, 2))
    pafs[..., 0] = ramp
    start_x, end_x, y = 4.0, 90.0, 20.0  # upsampled pixels; 90 lies beyond the last cell centre (91.5 - 8 ...)
    starts, ends = np.array([[start_x, y, 1.0]]), np.array([[end_x, y, 1.0]])
    (candidates,) = limb_candidates([starts, ends], pafs, [(0, 1)], DecoderParams(), 48, upsampling=(factor, factor))
    samples_x = np.linspace(start_x, end_x, DecoderParams().line_integral_samples)
    values = np.interp((samples_x + 0.5) / factor - 0.5, np.arange(width), ramp)
    expected = values[values > DecoderParams().paf_threshold].mean()
    assert candidates[0, 2] == pytest.approx(expected, abs=1e-6)


def test_empty_maps_and_peaks_at_the_border_decode_without_error():
    heat, paf = network_maps(np.zeros((0, 18, 3)))
    assert len(decode(heat, paf, BODY18.limbs, upsampling=(8, 8))) == 0
    corner = np.stack([person(20, 80, 0.0)])
    corner[0, :, 0] -= 25  # the right side of the person only: keypoints left of the image are not labeled
    corner[0, corner[0, :, 0] < 0, 2] = Visibility.NOT_LABELED
    heat, paf = network_maps(corner)
    found = decode(heat, paf, BODY18.limbs, DecoderParams(min_parts=1), upsampling=(8, 8))
    assert len(found) >= 1 and found.keypoints[..., 0].min() >= 0


def test_the_accurate_person_score_ranks_by_mean_confidence_and_found_keypoints():
    """found_mean_sqrt: the mean score of the found keypoints × sqrt(found / K), worked out by hand."""
    full = person(120, 190, 0.0)
    partial = person(280, 190, 0.0)
    partial[BODY18.index("left_knee") : BODY18.index("left_ankle") + 1, 2] = Visibility.NOT_LABELED
    heat, paf = network_maps(np.stack([full, partial]))
    params = DecoderParams(person_score="found_mean_sqrt")
    found = decode(heat, paf, BODY18.limbs, params, upsampling=(8, 8))
    assert len(found) == 2
    for keypoints, score in zip(found.keypoints, found.scores):
        present = keypoints[:, 2] > 0
        assert score == pytest.approx(keypoints[present, 2].mean() * np.sqrt(present.sum() / 18))
    assert (found.keypoints[0, :, 2] > 0).sum() == 18, "the complete person ranks first"


def test_greedy_and_optimal_matching():
    # [a, b, score]: greedy takes (0, 0) first and strands the rest; optimal finds the best total
    candidates = np.array([[0, 0, 0.9], [0, 1, 0.8], [1, 0, 0.85]])
    assert match(candidates, "greedy")[:, :2].tolist() == [[0, 0]]
    assert sorted(match(candidates, "optimal")[:, :2].tolist()) == [[0, 1], [1, 0]]


def test_line_integral_prefers_the_true_limb():
    pafs = np.zeros((50, 50, 2))
    pafs[10, 5:40, 0] = 1.0  # a horizontal limb from (5, 10) to (39, 10)
    starts = np.array([[5.0, 10.0, 1.0]])
    ends = np.array([[39.0, 10.0, 1.0], [39.0, 30.0, 1.0]])
    (candidates,) = limb_candidates([starts, ends], pafs, [(0, 1)], DecoderParams(), 50)
    assert candidates[:, :2].tolist() == [[0, 0]] and candidates[0, 2] == pytest.approx(1.0, abs=1e-3)


def test_maps_that_do_not_fit_the_skeleton_are_refused():
    with pytest.raises(ValueError, match="do not match the skeleton"):
        decode(np.zeros((8, 8, 19)), np.zeros((8, 8, 36)), BODY18.limbs)


def test_coco_writer_reproduces_the_reference_stats():
    folder = SHARED_DATA / "coco_eval_reference"
    if not folder.exists():
        pytest.skip(f"reference data not found at {folder}")
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(folder / "gt_dataset.json"))
    coco17 = dataset_skeleton(COCO_SPEC.category)
    detections = []
    for entry in json.loads((folder / "dt_dataset.json").read_text()):
        keypoints = np.array(entry["keypoints"], dtype=np.float64).reshape(1, 17, 3)
        prediction = Prediction(keypoints, np.array([entry["score"]]), coco17)
        detections += prediction.to_coco(entry["image_id"], COCO_SPEC.category.keypoints)
    written = copy.deepcopy(detections)
    stats = evaluate_keypoints(coco, detections)
    expected = json.loads((folder / "expected_stats.json").read_text())["pycocotools_keypoints_stats"]
    assert [stats[name] for name in KPI_NAMES] == expected
    assert detections == written  # what evaluate writes to detections_coco_format.json is not loadRes' mutation


@pytest.mark.integration
def test_oracle_on_real_coco_annotations(coco_mini):
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(coco_mini / "annotations" / "person_keypoints_train2017.json"))
    coco17 = dataset_skeleton(COCO_SPEC.category)
    stats = run_oracle(coco, COCO_SPEC.category, COCO_SPEC.visibility_flags, fully_connected(coco17), OracleSettings())
    assert stats["AP_0.50:0.95_all"] >= 0.95 and stats["AP_0.5"] >= 0.97
    merging = OracleSettings(decoder=dataclasses.replace(ORACLE_DECODER, merge_distance=1.0))
    stats = run_oracle(coco, COCO_SPEC.category, COCO_SPEC.visibility_flags, coco17, merging)
    assert stats["AP_0.50:0.95_all"] >= 0.90 and stats["AP_0.5"] >= 0.95
