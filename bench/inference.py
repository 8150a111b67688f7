"""Network speed on this CPU: Keras/TF FP32, ONNX Runtime FP32 and INT8, OpenVINO FP32 and INT8, for a model
and its pruned variants, or for an imported (ONNX) network.

    python bench/inference.py --model results/quickstart/model/bpnet_model.keras \
        [--pruned results/quickstart/pruned/retrained.keras ...] --cal_image_dir results/quickstart/data/val2017 \
        [--infer_spec results/quickstart/specs/infer.yaml --dataset_spec results/quickstart/data/dataset_spec.json] \
        [--height 288 --width 384] [--repeats 20] [--threads N] [--no_openvino] [--int8_keep_float REGEX] \
        [--accuracy_control MIN_POSE_AP] [--compare LABEL=FILE ...] [--json]

Every variant runs in this one process, side by side: the model as Keras (``tf.function``, the baseline
of every ratio; for an ``.onnx`` model, from ``bpnet import_model``, ONNX Runtime FP32 is the baseline),
its ONNX export in ONNX Runtime, the INT8 QDQ model ``bpnet export --data_type int8`` writes, and the
OpenVINO FP32 and INT8 IRs of ``bpnet export --target openvino`` (NNCF; with ``--accuracy_control``, also the
INT8 IR of ``--int8_accuracy_control``), all made by ``bpnet export`` itself and calibrated on the same
``--cal_batches`` images of ``--cal_image_dir`` at the benchmark size (columns ``pose AP``: the export check's
AP of the INT8 model's people against FP32's, and ``F1``, both from bpnet.export.agreement); then the same for
each ``--pruned`` model; then each ``--compare LABEL=FILE``, a model file written earlier (an ONNX file or an
OpenVINO IR, e.g. by another bpnet version), timed with the rest. Latency: median of ``--repeats`` batch-1
forward passes; throughput: images/s and CPU ms per image over ``--repeats`` batch-8 passes; beside each wall
time, the process CPU time (every thread) of the same calls. The variants take turns call by call, so a change
in the shared machine's load falls on all of them alike. Only the network is timed (no decoding). With
``--dataset_spec`` each variant's val AP is measured too, through ``bpnet evaluate`` (with ``--infer_spec``,
or the model's own inference defaults).
"""

import argparse
import json
import os
import statistics
import tempfile
import time
from typing import List, Optional

import numpy as np

from bpnet.model.io import load_model

SETTLE_S = 0.05  # seconds between two timed calls: worker threads of ONNX Runtime and OpenVINO spin a while after one


def _time_interleaved(runs: list, batch: np.ndarray, repeats: int) -> list:
    """Wall and process CPU seconds (all threads) of ``repeats`` calls of each runner, after 3 warm-up calls each.

    The runners take turns call by call, so a change in the shared machine's load falls on all of them alike
    instead of on whichever was being timed then; a pause before each call lets the previous runner's worker
    threads stop spinning, so that their CPU time is not counted against the next. Returns one ``(wall, cpu)``
    pair of lists per runner.
    """
    for run in runs:
        for _ in range(3):
            run(batch)
    timings = [([], []) for _ in runs]
    for _ in range(repeats):
        for run, (wall, cpu) in zip(runs, timings):
            time.sleep(SETTLE_S)
            start, start_cpu = time.perf_counter(), time.process_time()
            run(batch)
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    return timings


def keras_runner(model):
    import tensorflow as tf

    forward = tf.function(lambda x: model(x, training=False))
    return lambda batch: [o.numpy() for o in forward(tf.constant(batch))]


def onnx_runner(path: str, threads: Optional[int] = None):
    """An ONNX Runtime CPU session; ``threads``: intra- and inter-op threads (default: ONNX Runtime's)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = options.inter_op_num_threads = threads
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})


def openvino_runner(path: str, threads: Optional[int] = None):
    """bpnet's OpenVINO backend (compiled for the CPU once per input shape); ``threads``: OpenVINO's inference
    threads (default: OpenVINO's)."""
    from bpnet.infer.backends import open_backend

    backend = open_backend(path).backend
    if threads is not None:
        backend.core.set_property("CPU", {"INFERENCE_NUM_THREADS": threads})
    return backend


def compared(specs: List[str], threads: Optional[int]) -> list:
    """(label, runner, model file, no agreement) for each ``LABEL=FILE`` of ``--compare``: ``.xml`` runs in
    OpenVINO, anything else in ONNX Runtime."""
    rows = []
    for spec in specs:
        label, separator, path = spec.partition("=")
        if not separator or not os.path.isfile(path):
            raise SystemExit(f"--compare {spec}: expected LABEL=FILE with an existing ONNX file or OpenVINO IR")
        runner = openvino_runner(path, threads) if path.endswith(".xml") else onnx_runner(path, threads)
        rows.append((label, runner, path, None))
    return rows


def measure(runs: list, height: int, width: int, repeats: int) -> list:
    """Per runner: batch-1 latency (median wall ms, median process CPU ms) and batch-8 throughput (images per wall
    second, CPU ms per image), every runner timed in turns with the others (:func:`_time_interleaved`)."""
    rng = np.random.default_rng(0)
    single = rng.uniform(-0.5, 0.5, (1, height, width, 3)).astype(np.float32)
    eight = rng.uniform(-0.5, 0.5, (8, height, width, 3)).astype(np.float32)
    return [
        {
            "latency_ms": statistics.median(wall) * 1000,
            "cpu_ms": statistics.median(cpu) * 1000,
            "throughput_img_s": 8 * repeats / sum(wall8),
            "throughput_cpu_ms": 1000 * sum(cpu8) / (8 * repeats),
        }
        for (wall, cpu), (wall8, cpu8) in zip(_time_interleaved(runs, single, repeats), _time_interleaved(runs, eight, repeats))
    ]


def variants(name: str, model_path: str, work: str, args) -> list:
    """(label, runner, model file for evaluate, INT8 agreement) of each runtime and precision for one model,
    the files written by ``bpnet export`` itself (equalisation, ``--int8_keep_float``, the agreement check
    reported but not enforced)."""
    from bpnet.export.pipeline import ExportRequest, export

    common = dict(
        data_type="int8",
        input_dims=f"{args.height},{args.width},3",
        cal_image_dir=args.cal_image_dir,
        cal_data_file=os.path.join(work, "calibration.npy"),
        batches=args.cal_batches,
        batch_size=1,
        int8_keep_float=args.int8_keep_float,
        min_int8_pose_ap=0.0,
    )
    rows = []
    if not model_path.endswith(".onnx"):  # imported models have no Keras form
        rows.append((f"{name} Keras FP32", keras_runner(load_model(model_path)[0]), model_path, None))
    ort = export(ExportRequest(model_path, os.path.join(work, f"{name}.onnx"), target="onnxruntime", **common))
    rows += [
        (f"{name} ORT FP32", onnx_runner(str(ort.onnx_file), args.threads), ort.onnx_file, None),
        (f"{name} ORT INT8", onnx_runner(str(ort.int8_onnx_file), args.threads), ort.int8_onnx_file, ort.int8_agreement),
    ]
    if not args.no_openvino:
        ov = export(ExportRequest(model_path, os.path.join(work, "openvino", f"{name}.onnx"), target="openvino", **common))
        rows += [
            (f"{name} OpenVINO FP32", openvino_runner(str(ov.openvino_file), args.threads), ov.openvino_file, None),
            (
                f"{name} OpenVINO INT8",
                openvino_runner(str(ov.int8_openvino_file), args.threads),
                ov.int8_openvino_file,
                ov.int8_agreement,
            ),
        ]
        if args.accuracy_control is not None:
            controlled = dict(common, min_int8_pose_ap=args.accuracy_control, int8_accuracy_control=True)
            ac = export(ExportRequest(model_path, os.path.join(work, "control", f"{name}.onnx"), target="openvino", **controlled))
            label = f"{name} OV INT8 ctl {args.accuracy_control:g}"
            runner = openvino_runner(str(ac.int8_openvino_file), args.threads)
            rows.append((label, runner, ac.int8_openvino_file, ac.int8_agreement))
    return rows


def _figure(value: Optional[float], width: int) -> str:
    """``value`` to 3 decimals right-aligned in ``width``, blank when absent."""
    return f"{value:>{width}.3f}" if value is not None else " " * width


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--pruned", nargs="*", default=[])
    parser.add_argument("--cal_image_dir", required=True)
    parser.add_argument("--cal_batches", type=int, default=32)
    parser.add_argument("--infer_spec", default=None)
    parser.add_argument("--dataset_spec", default=None)
    parser.add_argument("--height", type=int, default=288)
    parser.add_argument("--width", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument(
        "--threads", type=int, default=None, help="inference threads of every runtime (default: each runtime's own)"
    )
    parser.add_argument("--no_openvino", action="store_true", help="skip the OpenVINO rows")
    parser.add_argument("--int8_keep_float", default=None, help="as bpnet export's (default: the model's recommendation)")
    parser.add_argument(
        "--accuracy_control",
        type=float,
        default=None,
        metavar="MIN_POSE_AP",
        help="also an OpenVINO INT8 row exported with --int8_accuracy_control --min_int8_pose_ap MIN_POSE_AP",
    )
    parser.add_argument(
        "--compare",
        nargs="*",
        default=[],
        metavar="LABEL=FILE",
        help="also time (and evaluate) these model files, written earlier, e.g. by another bpnet version",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads is not None:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    work = tempfile.mkdtemp(prefix="bench_inference_")
    models = [("unpruned", args.model)] + [(f"pruned{i + 1}", path) for i, path in enumerate(args.pruned)]
    built = [variant for name, path in models for variant in variants(name, path, work, args)]
    built += compared(args.compare, args.threads)
    timings = measure([run for _, run, _, _ in built], args.height, args.width, args.repeats)
    rows = []
    for (label, _, model_file, agreement), timing in zip(built, timings):
        row = {"variant": label, "model": str(model_file), **timing}
        if agreement is not None:
            row["int8_pose_ap"] = agreement.pose_ap
            row["int8_pose_f1"] = agreement.poses
        if args.dataset_spec:
            from bpnet.infer.evaluate import evaluate

            stats = evaluate(
                args.infer_spec, args.dataset_spec, os.path.join(work, f"eval_{len(rows)}"), str(model_file), progress=False
            )
            row["ap"] = stats["AP_0.50:0.95_all"]
        rows.append(row)
    base = rows[0]
    for row in rows:
        row["latency_speedup"] = base["latency_ms"] / row["latency_ms"]
        row["cpu_ratio"] = base["cpu_ms"] / row["cpu_ms"]
        row["throughput_ratio"] = row["throughput_img_s"] / base["throughput_img_s"]
        row["throughput_cpu_ratio"] = base["throughput_cpu_ms"] / row["throughput_cpu_ms"]
    if args.json:
        print(json.dumps({"input": [args.height, args.width], "threads": args.threads, "rows": rows}, indent=2))
        return
    threads = "each runtime's default threads" if args.threads is None else f"{args.threads} inference thread(s)"
    print(f"network only, {args.height}x{args.width}, {os.cpu_count()} cores, {threads}; ratios to {base['variant']}")
    header = (
        f"{'variant':<24} {'b1 ms':>8} {'×':>6} {'b1 CPU ms':>9} {'×':>6} {'b8 img/s':>9} {'×':>6} "
        f"{'b8 CPU ms/img':>13} {'×':>6} {'pose AP':>7} {'F1':>5}"
    )
    print(header + (f" {'AP':>6}" if "ap" in base else ""))
    for row in rows:
        check = f"{_figure(row.get('int8_pose_ap'), 7)} {_figure(row.get('int8_pose_f1'), 5)}"
        line = (
            f"{row['variant']:<24} {row['latency_ms']:>8.2f} {row['latency_speedup']:>6.2f} "
            f"{row['cpu_ms']:>9.2f} {row['cpu_ratio']:>6.2f} "
            f"{row['throughput_img_s']:>9.2f} {row['throughput_ratio']:>6.2f} "
            f"{row['throughput_cpu_ms']:>13.2f} {row['throughput_cpu_ratio']:>6.2f} {check}"
        )
        print(line + (f" {row['ap']:>6.3f}" if "ap" in row else ""))


if __name__ == "__main__":
    main()
