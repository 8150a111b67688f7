"""The decoding oracle on real annotations: GT → targets → decoder → pycocotools (bpnet.oracle).

    python bench/oracle.py --annotations JSON [--images DIR] [--input_size 368] [--json]

Prints the ten COCO keypoint stats (one JSON line with --json) and the decoder settings used.
``--images`` is accepted for symmetry with evaluation; the oracle needs only image sizes.
"""

import argparse
import contextlib
import dataclasses
import io
import json
import time

from pycocotools.coco import COCO

from bpnet.oracle import OracleSettings, dataset_skeleton, run_oracle
from bpnet.skeleton import Skeleton
from bpnet.specs import load_dataset_spec


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotations", required=True)
    parser.add_argument("--images", default=None)
    parser.add_argument("--input_size", type=int, default=368)
    parser.add_argument("--pose_config", default=None,
                        help="model skeleton (default: the dataset's own, e.g. COCO's 17 keypoints and 19 limbs)")
    parser.add_argument("--dataset_spec", default="data_pose_config/coco_spec.json")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(args.annotations)
    dataset = load_dataset_spec(args.dataset_spec)
    category = dataset.category
    settings = OracleSettings(input_size=args.input_size)
    start = time.perf_counter()
    skeleton = Skeleton.from_file(args.pose_config) if args.pose_config else dataset_skeleton(category)
    stats = run_oracle(coco, category, dataset.visibility_flags, skeleton, settings)
    seconds = time.perf_counter() - start
    if args.json:
        print(json.dumps({"stats": stats, "images": len(coco.getImgIds()), "seconds": round(seconds, 2),
                          "skeleton": skeleton.name,
                          "decoder": dataclasses.asdict(settings.decoder), "input_size": args.input_size}))
        return
    for name, value in stats.items():
        print(f"{name:<22} {value:.4f}")
    print(f"decoder: {dataclasses.asdict(settings.decoder)}")


if __name__ == "__main__":
    main()
