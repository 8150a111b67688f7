"""Network speed on this CPU: Keras/TF FP32, ONNX Runtime FP32 and INT8, OpenVINO FP32 and INT8, for a model
and its pruned variants, or for an imported (ONNX) network.

    python bench/inference.py --model results/quickstart/model/bpnet_model.keras \
        [--pruned results/quickstart/pruned/retrained.keras ...] --cal_image_dir results/quickstart/data/val2017 \
        [--infer_spec results/quickstart/specs/infer.yaml --dataset_spec results/quickstart/data/dataset_spec.json] \
        [--height 288 --width 384] [--repeats 20] [--no_openvino] [--json]

Every variant runs in this one process, side by side: the model as Keras (``tf.function``, the baseline
of every ratio; for an ``.onnx`` model, from ``bpnet import_model``, ONNX Runtime FP32 is the baseline),
its ONNX export in ONNX Runtime, the INT8 QDQ model ``bpnet export --data_type int8`` writes, and the
OpenVINO FP32 and INT8 IRs of ``bpnet export --target openvino`` (NNCF), all INT8 models calibrated on the
same ``--cal_batches`` images of ``--cal_image_dir`` at the benchmark size; then the same for each
``--pruned`` model. Latency: median of ``--repeats`` batch-1 forward passes; throughput: images/s over
``--repeats`` batch-8 passes. Only the network is timed (no decoding). With ``--dataset_spec`` each
variant's val AP is measured too, through ``bpnet evaluate`` (with ``--infer_spec``, or the model's own
inference defaults).
"""

import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np

from bpnet.export.calibration import calibration_data
from bpnet.export.onnx_export import to_onnx
from bpnet.export.quantize import quantize_int8
from bpnet.model.io import load_model


def _time(run, batch: np.ndarray, repeats: int) -> list:
    for _ in range(3):
        run(batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(batch)
        times.append(time.perf_counter() - start)
    return times


def keras_runner(model):
    import tensorflow as tf

    forward = tf.function(lambda x: model(x, training=False))
    return lambda batch: [o.numpy() for o in forward(tf.constant(batch))]


def onnx_runner(path: str):
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})


def openvino_runner(path: str):
    """bpnet's OpenVINO backend (compiled for the CPU once per input shape)."""
    from bpnet.infer.backends import open_backend

    return open_backend(path).backend


def measure(run, height: int, width: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    single = rng.uniform(-0.5, 0.5, (1, height, width, 3)).astype(np.float32)
    eight = rng.uniform(-0.5, 0.5, (8, height, width, 3)).astype(np.float32)
    latency = statistics.median(_time(run, single, repeats)) * 1000
    throughput = 8 * repeats / sum(_time(run, eight, repeats))
    return {"latency_ms": latency, "throughput_img_s": throughput}


def variants(name: str, model_path: str, work: str, calibration: np.ndarray, openvino: bool):
    """(label, runner, model file for evaluate) of each runtime and precision for one model."""
    import onnx

    from bpnet.export.openvino_export import openvino_path, quantize_openvino_int8, to_openvino
    from bpnet.model.io import read_onnx_metadata

    rows = []
    if model_path.endswith(".onnx"):  # imported: no Keras model
        fp32, metadata = model_path, read_onnx_metadata(model_path)
    else:
        model, info = load_model(model_path)
        fp32 = os.path.join(work, f"{name}.onnx")
        onnx.save(to_onnx(model, info), fp32)
        metadata = metadata_of(info)
        rows.append((f"{name} Keras FP32", keras_runner(model), model_path))
    int8 = os.path.join(work, f"{name}.int8.onnx")
    quantize_int8(fp32, int8, calibration)
    with_metadata(int8, metadata)
    rows += [(f"{name} ORT FP32", onnx_runner(fp32), fp32), (f"{name} ORT INT8", onnx_runner(int8), int8)]
    if openvino:
        stem = os.path.join(work, f"{name}.onnx")
        xml, xml_int8 = openvino_path(stem), openvino_path(stem, int8=True)
        to_openvino(fp32, xml, metadata)
        quantize_openvino_int8(fp32, xml, xml_int8, calibration, metadata)
        rows += [
            (f"{name} OpenVINO FP32", openvino_runner(xml), xml),
            (f"{name} OpenVINO INT8", openvino_runner(xml_int8), xml_int8),
        ]
    return rows


def metadata_of(info):
    from bpnet.export.onnx_export import OnnxSettings, metadata

    return metadata(info, OnnxSettings())


def with_metadata(path: str, metadata) -> None:
    """Give a quantised ONNX file the metadata of the model it came from (bpnet export does the same)."""
    import onnx

    from bpnet.model.io import set_onnx_metadata

    proto = onnx.load(path)
    set_onnx_metadata(proto, metadata)
    onnx.save(proto, path)


def model_info(path: str):
    from bpnet.model.io import ModelInfo, read_onnx_metadata

    if path.endswith(".onnx"):
        return ModelInfo.from_dict(read_onnx_metadata(path))
    return load_model(path)[1]


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
    parser.add_argument("--no_openvino", action="store_true", help="skip the OpenVINO rows")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    info = model_info(args.model)
    calibration = calibration_data((args.height, args.width), info, args.cal_batches, 1, args.cal_image_dir)
    work = tempfile.mkdtemp(prefix="bench_inference_")
    rows = []
    models = [("unpruned", args.model)] + [(f"pruned{i + 1}", path) for i, path in enumerate(args.pruned)]
    for name, path in models:
        for label, run, model_file in variants(name, path, work, calibration, not args.no_openvino):
            row = {"variant": label, "model": path, **measure(run, args.height, args.width, args.repeats)}
            if args.dataset_spec:
                from bpnet.infer.evaluate import evaluate

                stats = evaluate(
                    args.infer_spec, args.dataset_spec, os.path.join(work, f"eval_{len(rows)}"), model_file, progress=False
                )
                row["ap"] = stats["AP_0.50:0.95_all"]
            rows.append(row)
    base = rows[0]
    for row in rows:
        row["latency_speedup"] = base["latency_ms"] / row["latency_ms"]
        row["throughput_ratio"] = row["throughput_img_s"] / base["throughput_img_s"]
    if args.json:
        print(json.dumps({"input": [args.height, args.width], "rows": rows}, indent=2))
        return
    print(f"network only, {args.height}x{args.width}, this CPU; ratios to {base['variant']}")
    header = f"{'variant':<24} {'b1 ms':>8} {'×':>6} {'b8 img/s':>9} {'×':>6}"
    print(header + (f" {'AP':>6}" if "ap" in base else ""))
    for row in rows:
        line = (
            f"{row['variant']:<24} {row['latency_ms']:>8.2f} {row['latency_speedup']:>6.2f} "
            f"{row['throughput_img_s']:>9.2f} {row['throughput_ratio']:>6.2f}"
        )
        print(line + (f" {row['ap']:>6.3f}" if "ap" in row else ""))


if __name__ == "__main__":
    main()
