"""Predictor geometry for every preprocessing mode and multi-scale, and the evaluate / inference commands."""

import json
import shutil

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from bpnet.cli import cli
from bpnet.data import targets
from bpnet.errors import BpnetError
from bpnet.infer.predict import PAD_VALUE, Geometry, Predictor, PredictorSettings, preprocess
from bpnet.model.io import ModelInfo
from bpnet.skeleton import Visibility

from .conftest import BODY18, REPO_ROOT, SHARED_DATA, write_train_spec

INFO = ModelInfo(BODY18, (256.0,) * 3, (0.5,) * 3, 8)
MODES = ("adjust_network_input", "pad_image_input", None)


def forward(point, geometry: Geometry):
    x, y = point
    return np.array([(x + geometry.pad_x + 0.5) * geometry.scale_x - 0.5, (y + geometry.pad_y + 0.5) * geometry.scale_y - 0.5])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", [(90, 160), (200, 120)])
def test_a_lit_pixel_lands_where_the_geometry_says(mode, size):
    image = np.zeros((*size, 3), np.uint8)
    point = (size[1] // 3, size[0] // 2)
    image[point[1], point[0]] = 255
    tensor, geometry = preprocess(image, (256, 192), mode, INFO)
    on_grid = tuple(-(-side // INFO.stride) * INFO.stride for side in (geometry.input_size[1], geometry.input_size[0]))
    assert tensor.shape[:2] == on_grid  # padded bottom/right to the stride
    pad_value = PAD_VALUE / 256.0 - 0.5
    np.testing.assert_allclose(tensor[geometry.input_size[1] :], pad_value)
    np.testing.assert_allclose(tensor[:, geometry.input_size[0] :], pad_value)
    brightness = tensor.sum(axis=-1)
    y, x = np.unravel_index(np.argmax(brightness), brightness.shape)
    assert np.all(np.abs(np.array([x, y]) - forward(point, geometry)) <= 1.0)
    np.testing.assert_allclose(geometry.to_original(forward(point, geometry)), point, atol=1e-9)
    if mode == "pad_image_input":
        assert geometry.input_size == (192, 256)


def same_padding_shift(size: int, stride_two_layers: int = 3) -> int:
    """Input pixels by which a stack of stride-2 3×3 ``same`` convolutions moves its output grid when ``size``
    is off the stride grid: an odd size at level k pads one pixel before instead of after, moving the
    window centres by 2^k input pixels (TensorFlow's padding rule). 0 for multiples of 2^layers."""
    shift = 0
    for level in range(stride_two_layers):
        shift += (size % 2) << level
        size = -(-size // 2)
    return shift


class PerfectBackend:
    """Returns the training targets of known people as network outputs, as a trained VGG-style network would:
    aligned on inputs whose size is a multiple of the stride (what it was trained on), its grid moved by
    :func:`same_padding_shift` on other sizes."""

    def __init__(self, image, joints, mode, input_shape, scales):
        self.joints = joints
        self.geometries = {}
        for scale in scales:
            shape = tuple(int(round(s * scale)) for s in input_shape)
            tensor, geometry = preprocess(image, shape, mode, INFO)
            self.geometries[tensor.shape[:2]] = geometry

    def __call__(self, batch):
        geometry = self.geometries[batch.shape[1:3]]
        joints = self.joints.copy()
        joints[..., :2] = np.stack(
            [
                (joints[..., 0] + geometry.pad_x + 0.5) * geometry.scale_x - 0.5 + same_padding_shift(batch.shape[2]),
                (joints[..., 1] + geometry.pad_y + 0.5) * geometry.scale_y - 0.5 + same_padding_shift(batch.shape[1]),
            ],
            -1,
        )
        shape = (-(-batch.shape[1] // 8), -(-batch.shape[2] // 8))
        heat = targets.heatmaps(joints, shape, 8, 7.0)
        paf = targets.pafs(joints, BODY18.limbs, shape, 8, 1.0)
        return heat[None], paf[None]


def standing_person(x, y, height):
    offsets = np.array(
        [
            [0, -0.45],
            [0, -0.35],
            [-0.12, -0.35],
            [-0.16, -0.15],
            [-0.18, 0.05],
            [0.12, -0.35],
            [0.16, -0.15],
            [0.18, 0.05],
            [-0.07, 0.05],
            [-0.08, 0.27],
            [-0.09, 0.5],
            [0.07, 0.05],
            [0.08, 0.27],
            [0.09, 0.5],
            [-0.03, -0.48],
            [0.03, -0.48],
            [-0.06, -0.46],
            [0.06, -0.46],
        ]
    )
    joints = np.zeros((18, 3))
    joints[:, :2] = np.array([x, y]) + offsets * height
    joints[:, 2] = Visibility.VISIBLE
    return joints


def test_same_padding_shift_by_hand():
    assert [same_padding_shift(s) for s in (256, 248, 255, 427, 9)] == [0, 0, 1, 5, 7]  # 427 → 214 → 107: 1 + 4


@pytest.mark.parametrize("upsampling_mode", ["local", "full"])
@pytest.mark.parametrize(
    "mode, scales, width",
    [(m, (1.0,), w) for m in MODES for w in (600, 500)] + [("adjust_network_input", (0.75, 1.0, 1.25), 500)],
)
def test_predictor_maps_keypoints_back_to_the_original_image(mode, scales, width, upsampling_mode):
    """Input widths on the stride grid (adjust_network_input: 600 → 512) and off it (500 → 427, padded to 432):
    every keypoint within one input pixel, because the input is padded to the stride. Without the padding
    the off-grid widths miss by up to 5 input pixels (the grid shift of ``same`` padding). Local upsampling
    around the peaks and full upsampling alike (multi-scale always upsamples in full)."""
    image = np.zeros((300, width, 3), np.uint8)
    joints = np.stack([standing_person(150, 150, 220), standing_person(350, 160, 200)])
    backend = PerfectBackend(image, joints, mode, (256, 256), scales)
    predictor = Predictor(
        backend,
        INFO,
        PredictorSettings(input_shape=(256, 256), keep_aspect_ratio_mode=mode, scales=scales, upsampling_mode=upsampling_mode),
    )
    prediction = predictor.predict_one(image)
    assert len(prediction) == 2
    geometry = next(iter(backend.geometries.values()))
    for truth in joints:
        person = min(prediction.keypoints, key=lambda p: np.abs(p[:2, :2] - truth[:2, :2]).sum())
        found = person[:, 2] > 0
        assert found.sum() >= 16
        errors = np.abs((person[found, :2] - truth[found, :2]) * (geometry.scale_x, geometry.scale_y))
        assert errors.max() <= 1.0, errors.max()  # in input pixels


def test_evaluate_writes_tlt_outputs(tiny_model, coco_val_sample, tmp_path):
    folder, infer = tiny_model
    dataset = json.loads((REPO_ROOT / "data_pose_config" / "coco_spec.json").read_text())
    dataset["root_directory_path"] = str(tmp_path)
    dataset["test_data"] = {
        "images_root_dir_path": str(coco_val_sample),
        "mask_root_dir_path": "m",
        "annotation_root_dir_path": str(coco_val_sample / "test_coco.json"),
    }
    (tmp_path / "coco.json").write_text(json.dumps(dataset))
    result = CliRunner().invoke(
        cli, ["evaluate", "-i", str(infer), "-d", str(tmp_path / "coco.json"), "--results_dir", str(tmp_path / "eval")]
    )
    assert result.exit_code == 0, result.output
    assert "AP_0.50:0.95_all" in result.stdout
    status = json.loads((tmp_path / "eval" / "status.json").read_text().splitlines()[-1])
    assert status["status"] == "SUCCESS" and len(status["kpi"]) == 10 and "AR_0.50:0.95_large" in status["kpi"]
    rows = (tmp_path / "eval" / "results.csv").read_text().splitlines()
    assert rows[0] == "metric,IoU,area,maxDets,score" and len(rows) == 11  # TLT's columns
    assert rows[1].startswith("AP,0.50:0.95,all,20,") and rows[4].startswith("AP,0.50:0.95,medium,20,")
    assert rows[7].startswith("AR,0.5,all,20,")
    assert result.stdout.count("AP_0.50:0.95_all") == 1  # the table is printed once
    detections = json.loads((tmp_path / "eval" / "detections.json").read_text())
    assert len(detections["images"]) == 4 and detections["categories"][0]["num_joints"] == 18
    coco_rows = json.loads((tmp_path / "eval" / "detections_coco_format.json").read_text())
    image_ids = {entry["image_id"] for entry in detections["images"]}
    assert len(coco_rows) == sum(len(entry["keypoints"]) for entry in detections["images"])  # one row per person
    for row in coco_rows:  # pycocotools' result format, 17 COCO keypoints each
        assert row["image_id"] in image_ids and row["category_id"] == 1 and len(row["keypoints"]) == 51
        assert isinstance(row["score"], float)


def test_inference_on_a_folder_with_a_corrupt_image_and_on_a_video(tiny_model, tmp_path, caplog):
    folder, infer = tiny_model
    media = SHARED_DATA / "media"
    if not media.exists():
        pytest.skip(f"media not found at {media}")
    images = tmp_path / "images"
    images.mkdir()
    for name in ("messi5.jpg", "astronaut.png"):
        shutil.copy(media / name, images / name)
    (images / "broken.jpg").write_bytes(b"not an image")
    result = CliRunner().invoke(
        cli,
        [
            "inference",
            "-i",
            str(infer),
            "--input_type",
            "dir",
            "--input",
            str(images),
            "--results_dir",
            str(tmp_path / "out"),
            "--dump_visualizations",
            "--pipeline",
            "threads",  # the unreadable image passes through the reader thread
        ],
    )
    assert result.exit_code == 0, result.output
    assert "2 inputs" in result.stdout and "1 skipped" in result.stdout and "broken.jpg: cannot read image" in caplog.text
    # sorted: astronaut.png (0), broken.jpg (1, skipped), messi5.jpg (2); renderings named like their inputs
    assert sorted(p.name for p in (tmp_path / "out" / "images_annotated").iterdir()) == ["astronaut.png", "messi5.png"]
    detections = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert [entry["viz_id"] for entry in detections["images"]] == [0, 2]
    assert detections["inference_spec"]["model_path"] == str(folder / "run" / "bpnet_model.keras")
    numbered = CliRunner().invoke(
        cli,
        [
            "inference",
            "-i",
            str(infer),
            "--input_type",
            "dir",
            "--input",
            str(images),
            "--results_dir",
            str(tmp_path / "numbered"),
            "--dump_visualizations",
            "--numbered_outputs",
        ],
    )
    assert numbered.exit_code == 0, numbered.output
    assert sorted(p.name for p in (tmp_path / "numbered" / "images_annotated").iterdir()) == ["0.png", "2.png"]
    video = CliRunner().invoke(
        cli,
        [
            "inference",
            "-i",
            str(infer),
            "--input_type",
            "video",
            "--input",
            str(media / "demo.mp4"),
            "--results_dir",
            str(tmp_path / "video"),
            "--dump_visualizations",
        ],
    )
    assert video.exit_code == 0, video.output
    capture = cv2.VideoCapture(str(tmp_path / "video" / "images_annotated" / "demo.mp4"))
    assert capture.isOpened() and int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    assert [e["frame"] for e in json.loads((tmp_path / "video" / "detections.json").read_text())["images"]] == [0, 1, 2, 3, 4]
    short = CliRunner().invoke(
        cli,
        [
            "inference",
            "-i",
            str(infer),
            "--input_type",
            "video",
            "--input",
            str(media / "demo.mp4"),
            "--results_dir",
            str(tmp_path / "short"),
            "--max_frames",
            "2",
        ],
    )
    assert short.exit_code == 0, short.output
    assert [e["frame"] for e in json.loads((tmp_path / "short" / "detections.json").read_text())["images"]] == [0, 1]
    strided = CliRunner().invoke(
        cli,
        ["inference", "-i", str(infer), "--input_type", "video", "--input", str(media / "demo.mp4")]
        + ["--results_dir", str(tmp_path / "strided"), "--stride_frames", "2", "--dump_visualizations"],
    )
    assert strided.exit_code == 0, strided.output
    entries = json.loads((tmp_path / "strided" / "detections.json").read_text())["images"]
    assert [e["frame"] for e in entries] == [0, 2, 4]  # the video's own frame indices
    full = {e["frame"]: e for e in json.loads((tmp_path / "video" / "detections.json").read_text())["images"]}
    assert all(e["keypoints"] == full[e["frame"]]["keypoints"] for e in entries)  # the same frames were decoded
    capture = cv2.VideoCapture(str(tmp_path / "strided" / "images_annotated" / "demo.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 3


def test_tracked_video_pipelined_and_sequential_give_the_same_detections(tiny_model, tmp_path):
    """``bpnet synthesize --video``, then ``inference --track`` with ``--pipeline threads`` and ``sequential``:
    the same detections and ids, a track id per person, and the rendered video."""
    folder, infer = tiny_model
    made = CliRunner().invoke(cli, ["synthesize", "--video", "-o", str(tmp_path / "synthetic"), "--num_images", "8"])
    assert made.exit_code == 0, made.output
    video = tmp_path / "synthetic" / "video_val.avi"
    truth = json.loads((tmp_path / "synthetic" / "annotations" / "person_keypoints_video_val.json").read_text())
    assert [image["frame_index"] for image in truth["images"]] == list(range(8))
    assert {a["track_id"] for a in truth["annotations"]} == {1, 2, 3, 4}
    outputs = {}
    for mode in ("pipelined", "sequential"):
        args = ["inference", "-i", str(infer), "--input_type", "video", "--input", str(video), "--track"]
        args += ["--results_dir", str(tmp_path / mode), "--dump_visualizations"]
        args += ["--pipeline", "sequential" if mode == "sequential" else "threads"]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        assert "tracks" in result.stdout
        outputs[mode] = json.loads((tmp_path / mode / "detections.json").read_text())["images"]
    assert outputs["pipelined"] == outputs["sequential"]
    assert [e["frame"] for e in outputs["pipelined"]] == list(range(8))
    assert all(len(e["track_ids"]) == len(e["scores"]) for e in outputs["pipelined"])
    capture = cv2.VideoCapture(str(tmp_path / "pipelined" / "images_annotated" / "video_val.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 8
    detected = CliRunner().invoke(  # no --input_type: a video file is detected as one, and --track works
        cli, ["inference", "-i", str(infer), "--input", str(video), "--track", "--results_dir", str(tmp_path / "detected")]
    )
    assert detected.exit_code == 0, detected.output
    assert json.loads((tmp_path / "detected" / "detections.json").read_text())["images"] == outputs["sequential"]
    refused = CliRunner().invoke(
        cli,
        ["inference", "-i", str(infer), "--input_type", "image", "--input", str(video), "--track"]
        + ["--results_dir", str(tmp_path / "image")],
    )
    assert refused.exit_code == 2 and "--track" in refused.stderr and "--input_type video" in refused.stderr
    status = json.loads((tmp_path / "image" / "status.json").read_text().splitlines()[-1])
    assert status["status"] == "FAILURE"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--input_type", "dir", "--input", "{empty}"], "no images"),
        (["--input_type", "video", "--input", "{missing}.avi"], "cannot open the video"),
        (["--input", "{empty}"], "no images"),  # detected as a folder
        (["--input", "{missing}.mp4"], "cannot open the video: file not found"),
        (["--input", "{missing}.jpg"], "input image not found"),
        (["--input", "{missing}*.jpg"], "no file matches the pattern"),
        (["--input", "{missing}.mp4", "--input", "{missing}.avi"], "one video at a time"),
    ],
)
def test_inference_bad_inputs(tiny_model, tmp_path, args, message, monkeypatch):
    import bpnet.infer.inference

    folder, infer = tiny_model
    (tmp_path / "empty").mkdir()
    args = [a.format(empty=tmp_path / "empty", missing=tmp_path / "missing") for a in args]

    def no_model(*_args, **_kwargs):
        raise AssertionError("the model was loaded before the inputs were checked")

    monkeypatch.setattr(bpnet.infer.inference, "load_predictor", no_model)
    result = CliRunner().invoke(cli, ["inference", "-i", str(infer), *args, "--results_dir", str(tmp_path / "out")])
    assert result.exit_code == 2 and message in result.stderr, result.output


def test_a_model_whose_outputs_do_not_fit_the_skeleton(tiny_model, tmp_path):
    folder, infer = tiny_model
    from bpnet.model.io import load_model

    model, _ = load_model(str(folder / "run" / "bpnet_model.keras"))
    model.save(str(tmp_path / "no_metadata.keras"))  # a model without bpnet.json: the train spec decides
    category = {"id": 1, "name": "p", "keypoints": ["a", "b", "c"], "skeleton": [[1, 2]]}
    pose = {"pose_config_type": "five", "categories": [category]}
    (tmp_path / "pose.json").write_text(json.dumps(pose))
    spec = write_train_spec(
        tmp_path,
        folder,
        folder / "dataset_spec.json",
        pose_config=tmp_path / "pose.json",
        **{"model.heat_channels": None, "model.paf_channels": None},
    )
    (tmp_path / "infer.yaml").write_text(f"train_spec: {spec}\nmodel_path: {tmp_path / 'no_metadata.keras'}\n")
    result = CliRunner().invoke(
        cli,
        [
            "inference",
            "-i",
            str(tmp_path / "infer.yaml"),
            "--input",
            str(REPO_ROOT / "README.md"),
            "--results_dir",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 2 and "do not fit" not in result.stderr and "needs 4 and 2" in result.stderr


def test_flip_test_and_subpixel_refinement_reach_the_predictor(tiny_model, tmp_path):
    from bpnet.infer.predict import load_predictor

    folder, infer = tiny_model
    extra = tmp_path / "infer_flip.yaml"
    extra.write_text(infer.read_text() + "flip_test: True\nsubpixel_refinement: True\n")
    plain, _ = load_predictor(str(infer))
    flipped, _ = load_predictor(str(extra))
    assert flipped.settings.flip_test and flipped.settings.decoder.subpixel
    assert not plain.settings.flip_test and not plain.settings.decoder.subpixel
    image = cv2.imread(str(next((SHARED_DATA / "coco_mini" / "train2017").glob("*.jpg"))))
    plain_heat = plain.upsampled_maps(image)[0]
    flipped_heat = flipped.upsampled_maps(image)[0]
    assert plain_heat.shape == flipped_heat.shape and not np.allclose(plain_heat, flipped_heat, atol=1e-6)


def test_predict_takes_a_path_a_folder_an_array_a_batch_or_a_list(tmp_path):
    from bpnet.infer.predict import image_inputs

    images = [np.full((8, 10, 3), value, np.uint8) for value in (10, 20)]
    for name, image in zip(("b.png", "a.jpg"), images):
        cv2.imwrite(str(tmp_path / name), image)
    (tmp_path / "notes.txt").write_text("not an image")
    folder = [str(tmp_path / "a.jpg"), str(tmp_path / "b.png")]
    assert image_inputs(tmp_path) == folder == image_inputs(str(tmp_path))
    assert image_inputs(str(tmp_path / "b.png")) == [str(tmp_path / "b.png")]
    assert image_inputs([tmp_path / "b.png", str(tmp_path / "a.jpg")]) == [str(tmp_path / "b.png"), str(tmp_path / "a.jpg")]
    single = image_inputs(images[0])
    assert len(single) == 1 and single[0] is images[0]
    batch = image_inputs(np.stack(images))
    assert len(batch) == 2 and np.array_equal(batch[1], images[1])
    mixed = image_inputs([images[0], str(tmp_path / "a.jpg")])
    assert mixed[1] == str(tmp_path / "a.jpg") and mixed[0] is images[0]
    with pytest.raises(BpnetError, match="expected an \\(H, W, 3\\) image"):
        image_inputs(np.zeros((8, 10)))
    (tmp_path / "empty").mkdir()
    with pytest.raises(BpnetError, match="empty: no images"):
        image_inputs(tmp_path / "empty")


def test_a_single_path_predicts_like_a_list_of_it(tiny_model, coco_val_sample):
    from bpnet.infer.predict import load_predictor

    _, infer = tiny_model
    predictor, _ = load_predictor(str(infer))
    path = str(sorted(coco_val_sample.glob("*.jpg"))[0])
    (alone,), (listed,) = predictor.predict(path), predictor.predict([path])
    assert alone.source == listed.source == path
    np.testing.assert_array_equal(alone.keypoints, listed.keypoints)
    np.testing.assert_array_equal(alone.scores, listed.scores)


def test_several_inputs_and_a_quoted_glob_are_all_predicted(tiny_model, coco_val_sample, tmp_path):
    folder, infer = tiny_model
    photos = sorted(coco_val_sample.glob("*.jpg"))
    (tmp_path / "more").mkdir()
    for photo in photos[2:]:
        shutil.copy(photo, tmp_path / "more" / photo.name)
    args = ["inference", "-i", str(infer), "--input", str(photos[0]), "--input", str(tmp_path / "more")]
    args += ["--input", str(coco_val_sample / "*0785.jpg"), "--results_dir", str(tmp_path / "out")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    entries = json.loads((tmp_path / "out" / "detections.json").read_text())["images"]
    expected = [str(photos[0])] + [str(tmp_path / "more" / p.name) for p in photos[2:]] + [str(photos[0])]
    assert [e["full_image_path"] for e in entries] == expected


def test_detections_carry_keypoint_scores_and_boxes_with_missing_joints_marked():
    from bpnet.infer.results import Prediction

    from .conftest import BODY18

    keypoints = np.zeros((2, BODY18.num_keypoints, 3))
    keypoints[0, 0] = (10.0, 20.0, 0.9)
    keypoints[0, 3] = (40.0, 5.0, 0.5)
    keypoints[0, 7] = (25.0, 60.0, 0.7)
    keypoints[1, 2] = (0.0, 0.0, 0.3)  # a real keypoint at the corner
    entry = Prediction(keypoints, np.array([0.8, 0.2]), BODY18).to_json()
    assert entry["keypoints"][0][1] == [0.0, 0.0] and entry["keypoints"][1][2] == [0.0, 0.0]  # TLT's, unchanged
    assert entry["scores"] == [0.8, 0.2]
    assert entry["keypoint_scores"][0][:4] == [0.9, None, None, 0.5] and entry["keypoint_scores"][1][2] == 0.3
    assert entry["keypoint_scores"][1][1] is None
    assert entry["boxes"] == [[10.0, 5.0, 30.0, 55.0], [0.0, 0.0, 0.0, 0.0]]
    assert Prediction(np.zeros((1, BODY18.num_keypoints, 3)), np.array([0.1]), BODY18).to_json()["boxes"] == [None]


def test_labels_of_a_crowd_do_not_overlap_and_stay_in_the_image():
    from bpnet.infer.render import place_labels

    rng = np.random.default_rng(3)
    anchors = [(int(x), int(y)) for x, y in rng.normal((200, 120), 6, (14, 2))]  # 14 heads within a few pixels
    sizes = [(int(w), 18) for w in rng.integers(40, 70, 14)]
    boxes = place_labels(anchors, sizes, (240, 400))
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        assert 0 <= x0 and x1 < 400 and 0 <= y0 and y1 < 240
        assert (x1 - x0, y1 - y0) == sizes[i]
        for a0, b0, a1, b1 in boxes[:i]:
            assert x1 < a0 or a1 < x0 or y1 < b0 or b1 < y0, (i, boxes[i], (a0, b0, a1, b1))
    lone = place_labels([(50, 60)], [(30, 10)], (240, 400))
    assert lone == [(50, 50, 80, 60)]  # no neighbour: exactly at its anchor
