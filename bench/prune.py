"""Pruning on one model: parameters, FLOPs, CPU latency and val AP before and after a short retrain; or, for a
real network, its unpruned / pruned / retrained variants side by side in the deployed runtimes.

    python bench/prune.py --model results/quickstart/model/bpnet_model.keras \
        --specs results/quickstart/specs [--thresholds 0.05 0.1 0.2 0.3 0.5 0.7 1.0] [--retrain_epochs 1] [--json]

    python bench/prune.py --variants unpruned=thin.keras pruned=thin_pruned.keras retrained=a.keras \
        retrained+teacher=b.keras --dataset_spec heldout_spec.json --cal_image_dir CAL_DIR \
        [--height 368 --width 368] [--repeats 20] [--json]

``--variants`` (the first is the baseline of every ratio): each model's parameters and MACs
(:func:`bpnet.prune.count_macs`), its ``bpnet export`` ONNX (FP32, ONNX Runtime) and OpenVINO INT8 IR (NNCF,
calibrated on ``--cal_batches`` images of ``--cal_image_dir`` at the benchmark size), batch-1 wall and process CPU
time per image of each on one thread (median over 5 interleaved rounds of the median of ``--repeats`` calls on 8 of
the calibration images, in the model's input convention), and each one's AP through ``bpnet evaluate`` with the
model's own inference defaults on ``--dataset_spec``.

The threshold mode:

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
from typing import List

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


def runtime_rows(variants: List[str], args) -> List[dict]:
    """One row per ``label=model`` of ``variants`` (see the module docstring)."""
    from bpnet.export.pipeline import ExportRequest, export
    from bpnet.prune import count_macs
    from bpnet.prune_compensation import calibration_batch

    work = tempfile.mkdtemp(prefix="bench_prune_runtimes_")
    size = (args.height, args.width)
    dims = f"{args.height},{args.width},3"
    rows, runners = [], []
    for variant in variants:
        label, _, path = variant.partition("=")
        model, info = load_model(path)
        fp32 = export(ExportRequest(path, os.path.join(work, f"{label}.onnx"), target="onnxruntime", input_dims=dims))
        int8 = export(
            ExportRequest(
                path,
                os.path.join(work, "openvino", f"{label}.onnx"),
                target="openvino",
                data_type="int8",
                input_dims=dims,
                cal_image_dir=args.cal_image_dir,
                cal_data_file=os.path.join(work, f"{label}_calibration.npy"),
                batches=args.cal_batches,
                min_int8_pose_ap=0.0,
            )
        )
        row = {"variant": label, "model": path, "params": model.count_params(), "macs": count_macs(model, size)}
        images = calibration_batch([args.cal_image_dir], info, size, limit=8)
        for runtime, file, runner in (
            ("ort_fp32", fp32.onnx_file, single_thread_onnx),
            ("ov_int8", int8.int8_openvino_file, single_thread_openvino),
        ):
            stats = evaluate(None, args.dataset_spec, os.path.join(work, f"eval_{label}_{runtime}"), str(file), progress=False)
            row[f"{runtime}_ap"] = stats["AP_0.50:0.95_all"]
            runners.append((row, runtime, runner(str(file)), images))
        rows.append(row)
    timings: dict = {}
    for _ in range(ROUNDS):  # interleaved, so that a slow spell of a shared machine is spread over every variant
        for row, runtime, run, images in runners:
            wall, cpu = per_image_ms(run, images, args.repeats)
            timings.setdefault((row["variant"], runtime), []).append((wall, cpu))
    for row, runtime, _, _ in runners:
        measured = timings[(row["variant"], runtime)]
        row[f"{runtime}_ms"] = statistics.median(w for w, _ in measured)
        row[f"{runtime}_cpu_ms"] = statistics.median(c for _, c in measured)
    base = rows[0]
    for row in rows:
        row["macs_ratio"] = row["macs"] / base["macs"]
        row["ort_fp32_cpu_ratio"] = row["ort_fp32_cpu_ms"] / base["ort_fp32_cpu_ms"]
        row["ov_int8_cpu_ratio"] = row["ov_int8_cpu_ms"] / base["ort_fp32_cpu_ms"]
        row["ap_ratio"] = row["ort_fp32_ap"] / base["ort_fp32_ap"] if base["ort_fp32_ap"] else float("nan")
    return rows


ROUNDS = 5


def single_thread_onnx(path: str):
    """An ONNX Runtime CPU session on one thread: its CPU time is the work done (several threads spin-wait,
    which process CPU time counts)."""
    from inference import onnx_runner

    return onnx_runner(path, threads=1)


def single_thread_openvino(path: str):
    """An OpenVINO CPU compilation on one thread (see :func:`single_thread_onnx`)."""
    import openvino

    compiled = openvino.Core().compile_model(path, "CPU", {"INFERENCE_NUM_THREADS": 1})
    request = compiled.create_infer_request()
    return lambda batch: request.infer([batch])


def per_image_ms(run, images: np.ndarray, repeats: int) -> tuple:
    """Median wall and process CPU milliseconds of a batch-1 call, over ``repeats`` calls cycling through real
    ``images`` (``(N, H, W, 3)`` in the model's own input convention: random inputs on a network that expects
    0..255 make tiny activations, whose subnormal floats slow some runtimes down)."""
    for image in images[:3]:
        run(image[None])
    wall, cpu = [], []
    for index in range(repeats):
        image = images[index % len(images)][None]
        start, start_cpu = time.perf_counter(), time.process_time()
        run(image)
        wall.append(1000 * (time.perf_counter() - start))
        cpu.append(1000 * (time.process_time() - start_cpu))
    return statistics.median(wall), statistics.median(cpu)


def print_runtime_rows(rows: List[dict], args) -> None:
    print(
        f"network only, batch 1, {args.height}x{args.width}, one thread per runtime ({os.cpu_count()} cores here); "
        f"ms: wall, CPU ms: process CPU time per image; ratios to {rows[0]['variant']} in ONNX Runtime FP32"
    )
    print(
        f"{'variant':<20} {'params':>10} {'GMACs':>6} {'×':>5} {'FP32 AP':>7} {'×':>5} {'ms':>7} {'CPU ms':>7} {'×':>5} "
        f"{'INT8 AP':>7} {'ms':>7} {'CPU ms':>7} {'×':>5}"
    )
    for r in rows:
        print(
            f"{r['variant']:<20} {r['params']:>10,} {r['macs'] / 1e9:>6.3f} {r['macs_ratio']:>5.2f} {r['ort_fp32_ap']:>7.3f} "
            f"{r['ap_ratio']:>5.2f} {r['ort_fp32_ms']:>7.1f} {r['ort_fp32_cpu_ms']:>7.1f} {r['ort_fp32_cpu_ratio']:>5.2f} "
            f"{r['ov_int8_ap']:>7.3f} {r['ov_int8_ms']:>7.1f} {r['ov_int8_cpu_ms']:>7.1f} {r['ov_int8_cpu_ratio']:>5.2f}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=None, help="label=model ..., the first the baseline")
    parser.add_argument("--dataset_spec", default=None)
    parser.add_argument("--cal_image_dir", default=None)
    parser.add_argument("--cal_batches", type=int, default=32)
    parser.add_argument("--height", type=int, default=368)
    parser.add_argument("--width", type=int, default=368)
    parser.add_argument("--model")
    parser.add_argument("--specs", help="Folder with train.yaml and infer.yaml.")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0])
    parser.add_argument("--retrain_epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.variants:
        if not (args.dataset_spec and args.cal_image_dir):
            parser.error("--variants needs --dataset_spec and --cal_image_dir")
        rows = runtime_rows(args.variants, args)
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            print_runtime_rows(rows, args)
        return
    if not (args.model and args.specs):
        parser.error("give --variants, or --model and --specs")
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
