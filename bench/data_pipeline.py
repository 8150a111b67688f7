"""Throughput of the full training input pipeline (read, decode, augment, targets, batch).

    python bench/data_pipeline.py --train_spec SPEC [--image_size 256|368] [--batches N] [--json]

Runs, in one process and on the spec's records, the pipeline with bpnet's vectorised targets and the
same pipeline with the per-person loop targets of ``bench/loop_targets.py`` (the baseline), and
reports images/s, images/s per core and the ratio. ``--image_size S`` trains at S×S → S/8×S/8.
"""

import argparse
import dataclasses
import json
import os
import time

from loop_targets import loop_heatmaps, loop_pafs

from bpnet.data.pipeline import SampleMaker, build_dataset
from bpnet.specs import load_train_spec


class LoopTargetsMaker(SampleMaker):
    """The pipeline's sample maker with the baseline targets."""

    def targets(self, joints):
        labels = self.dataloader.label_processor_config
        return (
            loop_heatmaps(joints, self.target_shape, self.stride, labels.heatmap_gaussian_sigma),
            loop_pafs(joints, self.skeleton.limbs, self.target_shape, self.stride, labels.paf_ortho_dist_thresh),
        )


def resized(spec, size):
    loader = spec.dataloader
    dims = dataclasses.replace(loader.image_config.image_dims, height=size, width=size)
    image_config = dataclasses.replace(loader.image_config, image_dims=dims)
    pose = dataclasses.replace(loader.pose_config, target_shape=(size // 8, size // 8))
    return dataclasses.replace(spec, dataloader=dataclasses.replace(loader, image_config=image_config, pose_config=pose))


def measure(spec, maker, batches):
    """``(images per wall second, process CPU ms per image)`` of the input pipeline (tf.data's threads included)."""
    iterator = iter(build_dataset(spec, maker=maker))
    for _ in range(3):
        next(iterator)
    start, start_cpu = time.perf_counter(), time.process_time()
    images = sum(next(iterator)[0].shape[0] for _ in range(batches))
    return images / (time.perf_counter() - start), 1000 * (time.process_time() - start_cpu) / images


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train_spec", required=True)
    parser.add_argument("--image_size", type=int, default=None, help="square network input (default: the spec's)")
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    spec = load_train_spec(args.train_spec)
    if args.image_size:
        spec = resized(spec, args.image_size)
    cores = len(os.sched_getaffinity(0))
    vectorised = SampleMaker.from_train_spec(spec)
    baseline = LoopTargetsMaker(spec.dataloader, vectorised.skeleton, vectorised.mappings, spec.random_seed)
    measured = {"vectorised": measure(spec, vectorised, args.batches), "loop_baseline": measure(spec, baseline, args.batches)}
    rows = {name: rate for name, (rate, _) in measured.items()}
    cpu_ms = {name: cpu for name, (_, cpu) in measured.items()}
    dims = spec.dataloader.image_config.image_dims
    result = {
        "input": f"{dims.height}x{dims.width}",
        "target": "x".join(map(str, spec.dataloader.pose_config.target_shape)),
        "batch_size": spec.dataloader.batch_size,
        "cores": cores,
        "images_per_s": round(rows["vectorised"], 1),
        "images_per_s_per_core": round(rows["vectorised"] / cores, 1),
        "baseline_images_per_s": round(rows["loop_baseline"], 1),
        "baseline_images_per_s_per_core": round(rows["loop_baseline"] / cores, 1),
        "ratio": round(rows["vectorised"] / rows["loop_baseline"], 2),
        "cpu_ms_per_image": round(cpu_ms["vectorised"], 2),
        "baseline_cpu_ms_per_image": round(cpu_ms["loop_baseline"], 2),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"input {result['input']} -> {result['target']}, batch {result['batch_size']}, {cores} cores")
    print(f"{'targets':<14} {'images/s':>9} {'per core':>9} {'CPU ms/image':>13}")
    for name, rate in rows.items():
        print(f"{name:<14} {rate:>9.1f} {rate / cores:>9.1f} {cpu_ms[name]:>13.2f}")
    print(f"ratio vectorised / loop: {result['ratio']}")


if __name__ == "__main__":
    main()
