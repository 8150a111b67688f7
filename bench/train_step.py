"""Training throughput (images/s) of the m1 model and of a tiny model, on synthetic batches, in one run.

    python bench/train_step.py [--steps N] [--json]

Runs bpnet's own training step (``bpnet.train.trainer.make_train_step``: forward, masked L2 loss on
every stage, regularisation, weighted momentum update) on random images and targets, so the input
pipeline is not measured (bench/data_pipeline.py does that). Rows: the shipped m1 model
(BpNetLiteModel, 3 stages, VGG19 backbone) at 256×256, batch 10; a tiny model (width 0.125,
2 stages) at 64×64, batch 4.
"""

import argparse
import json
import os
import time

import numpy as np
import tensorflow as tf

from bpnet import specs
from bpnet.model.build import build_model
from bpnet.skeleton import Skeleton
from bpnet.train.optim import SoftstartAnnealingSchedule, WeightedMomentumOptimizer, stagewise_lr_multipliers
from bpnet.train.trainer import make_train_step

CONFIGS = {
    "m1_256": dict(size=256, batch=10, stages=3, width=1.0),
    "tiny_64": dict(size=64, batch=4, stages=2, width=0.125),
}


def measure(skeleton, size, batch, stages, width, steps):
    spec = specs.BpNetLiteModelSpec(
        backbone_attributes=specs.BackboneAttributes(architecture="vgg"),
        stages=stages,
        width_multiplier=width,
        kernel_regularization_factor=5e-4,
        bias_regularization_factor=0.0,
    )
    model = build_model(spec, skeleton)
    optimizer = WeightedMomentumOptimizer(
        SoftstartAnnealingSchedule(2e-5, 8e-8, 0.05, 0.5, 10_000), 0.9, grad_weights=stagewise_lr_multipliers(model)
    )
    step = make_train_step(model, optimizer, tf.distribute.get_strategy(), batch)
    rng = np.random.default_rng(0)
    out = size // 8
    images = tf.constant(rng.uniform(-0.5, 0.5, (batch, size, size, 3)).astype(np.float32))
    labels = {
        "heatmaps": tf.constant(rng.uniform(0, 1, (batch, out, out, skeleton.num_heatmap_channels)).astype(np.float32)),
        "pafs": tf.constant(rng.uniform(-1, 1, (batch, out, out, skeleton.num_paf_channels)).astype(np.float32)),
        "mask": tf.ones((batch, out, out, 1)),
    }
    for _ in range(2):
        step(images, labels)
    start, start_cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        loss = step(images, labels)[0]
    float(loss)
    seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    return {
        "images_per_s": round(steps * batch / seconds, 2),
        "step_ms": round(1000 * seconds / steps, 1),
        "step_cpu_ms": round(1000 * cpu / steps, 1),
        "batch": batch,
        "input": f"{size}x{size}",
        "params": model.count_params(),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    skeleton = Skeleton.from_file("model_pose_config/bpnet_18joints.json")
    devices = [d.device_type for d in tf.config.list_logical_devices()]
    rows = {name: measure(skeleton, steps=args.steps, **config) for name, config in CONFIGS.items()}
    if args.json:
        print(json.dumps({"device": "GPU" if "GPU" in devices else "CPU", **rows}))
        return
    print(f"{os.cpu_count()} cores")
    print(f"{'model':<8} {'input':>8} {'batch':>6} {'params':>11} {'step ms':>9} {'step CPU ms':>12} {'images/s':>9}")
    for name, row in rows.items():
        print(
            f"{name:<8} {row['input']:>8} {row['batch']:>6} {row['params']:>11,} {row['step_ms']:>9} "
            f"{row['step_cpu_ms']:>12} {row['images_per_s']:>9}"
        )


if __name__ == "__main__":
    main()
