"""Throughput of `bpnet dataset_convert` with masks, on 1 worker and on N workers, side by side.

    python bench/dataset_convert.py --dataset_spec SPEC [--mode train] [--workers N] [--repeat K] [--json]

The dataset is read where the spec says; masks and records go to a temporary folder (the spec is
copied with its split paths made absolute and its mask folder moved there), so read-only data works.
``--repeat K`` lists every image K times (new image ids) to amortise process start-up on small sets.
Prints a table, or with ``--json`` one JSON line with ``images_per_s`` for 1 and N workers and the ratio.
"""

import argparse
import json
import os
import sys
import tempfile
import time

from bpnet.data.convert import convert_dataset
from bpnet.specs import load_dataset_spec


def _workload(spec_path: str, mode: str, repeat: int, folder: str) -> str:
    spec = load_dataset_spec(spec_path)
    split_name = "train_data" if mode == "train" else "test_data"
    split = spec.split(mode)
    with open(spec.resolve(split.annotation_root_dir_path), encoding="utf-8") as handle:
        coco = json.load(handle)
    images, annotations = [], []
    id_stride = max(image["id"] for image in coco["images"]) + 1
    for copy in range(repeat):
        images += [dict(image, id=image["id"] + copy * id_stride) for image in coco["images"]]
        annotations += [dict(a, image_id=a["image_id"] + copy * id_stride) for a in coco["annotations"]]
    annotation_file = os.path.join(folder, "annotations.json")
    with open(annotation_file, "w", encoding="utf-8") as handle:
        json.dump(dict(coco, images=images, annotations=annotations), handle)
    with open(spec_path, encoding="utf-8") as handle:
        raw = json.load(handle)
    raw["root_directory_path"] = folder
    raw[split_name] = {
        "images_root_dir_path": spec.resolve(split.images_root_dir_path),
        "mask_root_dir_path": "masks",
        "annotation_root_dir_path": annotation_file,
    }
    bench_spec = os.path.join(folder, "spec.json")
    with open(bench_spec, "w", encoding="utf-8") as handle:
        json.dump(raw, handle)
    return bench_spec


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished worker processes (user + system)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def _measure(spec: str, mode: str, workers: int, folder: str) -> dict:
    start, start_cpu = time.perf_counter(), _cpu_seconds()
    summary = convert_dataset(
        spec, os.path.join(folder, f"out-{workers}", "records"), mode=mode, generate_masks=True, workers=workers, progress=False
    )
    seconds, cpu = time.perf_counter() - start, _cpu_seconds() - start_cpu
    return {
        "workers": workers,
        "seconds": round(seconds, 3),
        "images": summary.num_images,
        "masks": summary.num_masks,
        "images_per_s": round(summary.num_images / seconds, 1),
        "cpu_ms_per_image": round(1000 * cpu / max(summary.num_images, 1), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_spec", required=True)
    parser.add_argument("--mode", default="train")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import tensorflow  # noqa: F401  imported before timing (not at module level: workers re-import this file)

    with tempfile.TemporaryDirectory() as folder:
        spec = _workload(args.dataset_spec, args.mode, args.repeat, folder)
        single = _measure(spec, args.mode, 1, folder)
        multi = _measure(spec, args.mode, args.workers, folder)
    ratio = round(multi["images_per_s"] / single["images_per_s"], 2)
    if args.json:
        print(
            json.dumps(
                {
                    "images": single["images"],
                    "masks": single["masks"],
                    "images_per_s": {"1": single["images_per_s"], str(args.workers): multi["images_per_s"]},
                    "ratio": ratio,
                    "cpu_ms_per_image": {"1": single["cpu_ms_per_image"], str(args.workers): multi["cpu_ms_per_image"]},
                    "cpu_count": os.cpu_count(),
                }
            )
        )
        return
    print(f"{os.cpu_count()} cores")
    print(f"{'workers':>8} {'images':>7} {'masks':>6} {'seconds':>8} {'images/s':>9} {'CPU ms/image':>13}")
    for row in (single, multi):
        print(
            f"{row['workers']:>8} {row['images']:>7} {row['masks']:>6} {row['seconds']:>8} {row['images_per_s']:>9} "
            f"{row['cpu_ms_per_image']:>13}"
        )
    print(f"ratio {args.workers} workers / 1 worker: {ratio}")


if __name__ == "__main__":
    sys.exit(main())
