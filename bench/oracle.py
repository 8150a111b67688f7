"""The decoding oracle on real annotations: GT → targets → decoder → pycocotools (bpnet.infer.oracle).

    python bench/oracle.py --annotations JSON [--images DIR] [--input_size 368]
                           [--skeleton fully_connected|dataset|POSE_CONFIG] [--merge_distance D]
                           [--upsampling_mode local|full] [--json]

Prints the ten COCO keypoint stats (one JSON line with --json) and the decoder settings used.
``--images`` is accepted for symmetry with evaluation; the oracle needs only image sizes.
"""

import argparse
import contextlib
import dataclasses
import io
import json
import os
import time

from pycocotools.coco import COCO

from bpnet.infer.oracle import ORACLE_DECODER, OracleSettings, dataset_skeleton, fully_connected, run_oracle
from bpnet.skeleton import Skeleton
from bpnet.specs import load_dataset_spec


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotations", required=True)
    parser.add_argument("--images", default=None)
    parser.add_argument("--input_size", type=int, default=368)
    parser.add_argument(
        "--skeleton",
        default="fully_connected",
        help="model skeleton: 'fully_connected' (the dataset's keypoints, a limb between every pair), "
        "'dataset' (its own limbs, COCO: 19) or a pose config JSON (e.g. bpnet_18joints.json)",
    )
    parser.add_argument("--merge_distance", type=float, default=0.0, help="decoder merge_distance (0: off)")
    parser.add_argument(
        "--upsampling_mode",
        choices=["local", "full"],
        default="local",
        help="decode the stride-8 maps with local upsampling around the peaks, or upsample them in full",
    )
    parser.add_argument("--dataset_spec", default="data_pose_config/coco_spec.json")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(args.annotations)
    dataset = load_dataset_spec(args.dataset_spec)
    category = dataset.category
    settings = OracleSettings(
        input_size=args.input_size,
        upsampling_mode=args.upsampling_mode,
        decoder=dataclasses.replace(ORACLE_DECODER, merge_distance=args.merge_distance),
    )
    start, start_cpu = time.perf_counter(), time.process_time()
    if args.skeleton in ("fully_connected", "dataset"):
        skeleton = dataset_skeleton(category)
        skeleton = fully_connected(skeleton) if args.skeleton == "fully_connected" else skeleton
    else:
        skeleton = Skeleton.from_file(args.skeleton)
    stats = run_oracle(coco, category, dataset.visibility_flags, skeleton, settings)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
    if args.json:
        print(
            json.dumps(
                {
                    "stats": stats,
                    "images": len(coco.getImgIds()),
                    "seconds": round(seconds, 2),
                    "cpu_seconds": round(cpu_seconds, 2),
                    "skeleton": skeleton.name,
                    "decoder": dataclasses.asdict(settings.decoder),
                    "input_size": args.input_size,
                    "upsampling_mode": args.upsampling_mode,
                }
            )
        )
        return
    for name, value in stats.items():
        print(f"{name:<22} {value:.4f}")
    print(f"decoder: {dataclasses.asdict(settings.decoder)}")
    print(f"{len(coco.getImgIds())} images in {seconds:.2f} s wall, {cpu_seconds:.2f} s process CPU ({os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
