"""Pruning thresholds on one model: parameters, FLOPs, CPU latency and val AP before and after a short retrain.

    python bench/prune.py --model results/quickstart/model/bpnet_model.keras \
        --specs results/quickstart/specs [--thresholds 0.05 0.1 0.2 0.3 0.5 0.7 1.0] [--retrain_epochs 1] [--json]

``--specs`` is a quickstart's spec folder (its paths are absolute, so copies work anywhere) holding ``train.yaml``
(the retrain copies it
with ``load_graph: True``, ``pretrained_weights`` the pruned model and ``num_epoch`` the retrain
epochs), ``infer.yaml`` (input size and decoder of the evaluation) and the dataset spec named by
``--dataset_spec`` (default: ``../data/dataset_spec.json`` beside it, as the quickstart writes it).
Every row runs in this one process: the unpruned model first (the baseline of every ratio), then each
threshold with TLT's other defaults (``-eq union -pg 8 -nf 16 -n max``). FLOPs count multiply-adds
×2 of every convolution at the evaluation input size; latency is the median of ``--repeats`` batch-1
forward passes of the Keras model on this CPU.
"""

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from bpnet.infer.evaluate import evaluate
from bpnet.model.io import load_model, save_model
from bpnet.prune import PruneSettings, prune_model
from bpnet.specs import load_inference_spec
from bpnet.train.trainer import train


def conv_flops(model, height: int, width: int) -> int:
    """2 × multiply-adds of every Conv2D for one ``height × width`` input (stride-1 ``same`` or strided)."""
    import keras

    probe = keras.Model(model.inputs, [layer.output for layer in model.layers if layer.__class__.__name__ == "Conv2D"])
    shapes = [tuple(o.shape) for o in probe(np.zeros((1, height, width, 3), np.float32))]
    convs = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    total = 0
    for layer, shape in zip(convs, shapes):
        kh, kw, cin, cout = layer.kernel.shape
        total += 2 * shape[1] * shape[2] * kh * kw * cin * cout
    return int(total)


def latency_ms(model, height: int, width: int, repeats: int) -> float:
    import tensorflow as tf

    forward = tf.function(lambda x: model(x, training=False))
    image = tf.constant(np.random.default_rng(0).uniform(-0.5, 0.5, (1, height, width, 3)).astype(np.float32))
    for _ in range(3):
        forward(image)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        [o.numpy() for o in forward(image)]
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def val_ap(infer_spec: str, dataset_spec: str, model_path: str, folder: str) -> float:
    return evaluate(infer_spec, dataset_spec, folder, model_path, progress=False)["AP_0.50:0.95_all"]


def retrain(train_spec: str, pruned_path: str, epochs: int, folder: str) -> str:
    spec = yaml.safe_load(Path(train_spec).read_text())
    spec.update(
        load_graph=True,
        pretrained_weights=pruned_path,
        num_epoch=epochs,
        checkpoint_dir=folder,
        checkpoint_n_epoch=epochs,
        validation_every_n_epoch=0,
        inference_spec=None,
    )
    path = os.path.join(folder, "retrain.yaml")
    os.makedirs(folder, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(spec, sort_keys=False))
    return train(path, folder, progress=False).final_model


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--specs", required=True, help="Folder with train.yaml and infer.yaml.")
    parser.add_argument("--dataset_spec", default=None)
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0])
    parser.add_argument("--retrain_epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    specs_dir = Path(args.specs)
    train_spec, infer_spec = str(specs_dir / "train.yaml"), str(specs_dir / "infer.yaml")
    dataset_spec = args.dataset_spec or str(specs_dir.parent / "data" / "dataset_spec.json")
    height, width = load_inference_spec(infer_spec).input_shape
    model, info = load_model(args.model)
    work = tempfile.mkdtemp(prefix="bench_prune_")
    rows = [
        {
            "threshold": 0.0,
            "params": model.count_params(),
            "gflops": conv_flops(model, height, width) / 1e9,
            "latency_ms": latency_ms(model, height, width, args.repeats),
            "ap_pruned": val_ap(infer_spec, dataset_spec, args.model, os.path.join(work, "eval_unpruned")),
            "ap_retrained": None,
        }
    ]
    for threshold in args.thresholds:
        result = prune_model(model, PruneSettings(threshold=threshold))
        folder = os.path.join(work, f"pth_{threshold}")
        pruned_path = os.path.join(folder, "pruned.keras")
        os.makedirs(folder, exist_ok=True)
        save_model(result.model, pruned_path, info)
        retrained = retrain(train_spec, pruned_path, args.retrain_epochs, os.path.join(folder, "retrain"))
        rows.append(
            {
                "threshold": threshold,
                "params": result.params_after,
                "gflops": conv_flops(result.model, height, width) / 1e9,
                "latency_ms": latency_ms(result.model, height, width, args.repeats),
                "ap_pruned": val_ap(infer_spec, dataset_spec, pruned_path, os.path.join(folder, "eval")),
                "ap_retrained": val_ap(infer_spec, dataset_spec, retrained, os.path.join(folder, "eval_retrained")),
                "retrained_model": retrained,
            }
        )
    base = rows[0]
    for row in rows:
        row["params_ratio"] = row["params"] / base["params"]
        row["speedup"] = base["latency_ms"] / row["latency_ms"]
    if args.json:
        print(
            json.dumps(
                {"model": args.model, "input": [height, width], "retrain_epochs": args.retrain_epochs, "rows": rows}, indent=2
            )
        )
        return
    print(f"{args.model} at {height}x{width}; retrain {args.retrain_epochs} epoch(s) per threshold")
    print(f"{'pth':>5} {'params':>10} {'ratio':>6} {'GFLOPs':>7} {'ms':>7} {'speedup':>7} {'AP pruned':>9} {'AP retrained':>12}")
    for row in rows:
        retrained = "-" if row["ap_retrained"] is None else f"{row['ap_retrained']:.3f}"
        print(
            f"{row['threshold']:>5} {row['params']:>10,} {row['params_ratio']:>6.3f} {row['gflops']:>7.3f} "
            f"{row['latency_ms']:>7.2f} {row['speedup']:>7.2f} {row['ap_pruned']:>9.3f} {retrained:>12}"
        )


if __name__ == "__main__":
    main()
