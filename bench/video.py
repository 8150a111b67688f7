"""Video inference speed, sequential against pipelined, and tracking quality.

    python bench/video.py --model mobilenet_thin.onnx [--video ../shared/data/media/vtest.avi] [--frames 200] \
        [--cal_image_dir ../shared/data/coco_mini/train2017] [--no_int8] [--synthetic_frames 100]

Every row runs ``bpnet.infer.inference.inference`` in this one process, as ``bpnet inference --input_type
video --track --dump_visualizations`` does (decoding the video, the network, decoding people, tracking,
drawing and writing the ``.mp4``), on the first ``--frames`` frames, with the model's own inference
defaults. Rows: ONNX Runtime FP32 ``--pipeline sequential`` (one frame at a time: bpnet 0.2's path, the
baseline of every ratio) and ``--pipeline threads``, the OpenVINO FP32 IR of the same network (``to_openvino``) both
ways, and, unless ``--no_int8``, the ONNX Runtime and OpenVINO INT8 models pipelined (calibrated on
``--cal_image_dir`` at the network size, as ``bpnet export`` does). For each: frames/s, CPU utilisation
(process CPU time / wall time / cores), the ratio to the baseline, people and tracks found, and whether
the detections equal the sequential row's of the same model (``detections.json`` compared entry by entry).

Then tracking quality on a synthetic video of walking figures that cross (``bpnet synthesize --video``):
MOTA, IDF1, id switches and fragmentations, computed by ``motmetrics`` against the exact ids, for the same
network with optical flow on and off.
"""

import argparse
import json
import os
import resource
import tempfile
import time

from bpnet.infer.inference import inference
from bpnet.infer.track import TrackerSettings
from bpnet.infer.track_metrics import tracking_metrics


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(model: str, video: str, out: str, frames: int, pipelined: bool, flow: bool = True) -> dict:
    start_wall, start_cpu = time.perf_counter(), cpu_seconds()
    summary = inference(
        None,
        "video",
        video,
        out,
        model_path=model,
        dump_visualizations=True,
        progress=False,
        max_frames=frames,
        tracking=TrackerSettings(optical_flow=flow),
        pipelined=pipelined,
    )
    wall, cpu = time.perf_counter() - start_wall, cpu_seconds() - start_cpu
    with open(os.path.join(out, "detections.json"), encoding="utf-8") as handle:
        detections = json.load(handle)
    return {
        "fps": summary["inputs"] / wall,
        "cpu": cpu / wall / (os.cpu_count() or 1),
        "people": summary["people"],
        "tracks": summary["tracks"],
        "detections": detections,
    }


def models(onnx_path: str, work: str, cal_image_dir: str, int8: bool, input_hw) -> list:
    """(label, model file) of each runtime and precision: ORT FP32, OpenVINO FP32, and the INT8 models."""
    from bpnet.export.calibration import calibration_data
    from bpnet.export.openvino_export import quantize_openvino_int8, to_openvino
    from bpnet.export.quantize import quantize_int8
    from bpnet.model.io import ModelInfo, read_onnx_metadata, set_onnx_metadata

    metadata = read_onnx_metadata(onnx_path)
    xml = os.path.join(work, "model.xml")
    to_openvino(onnx_path, xml, metadata)
    rows = [("ORT FP32", onnx_path), ("OpenVINO FP32", xml)]
    if int8:
        import onnx

        calibration = calibration_data(input_hw, ModelInfo.from_dict(metadata), 16, 1, cal_image_dir)
        int8_onnx = os.path.join(work, "model.int8.onnx")
        quantize_int8(onnx_path, int8_onnx, calibration)
        proto = onnx.load(int8_onnx)
        set_onnx_metadata(proto, metadata)
        onnx.save(proto, int8_onnx)
        int8_xml = os.path.join(work, "model.int8.xml")
        quantize_openvino_int8(onnx_path, xml, int8_xml, calibration, metadata)
        rows += [("ORT INT8", int8_onnx), ("OpenVINO INT8", int8_xml)]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="An ONNX model with bpnet metadata (bpnet import_model/export).")
    parser.add_argument("--video", default="../shared/data/media/vtest.avi")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--cal_image_dir", default="../shared/data/coco_mini/train2017")
    parser.add_argument("--input_hw", default="368,496", help="INT8 calibration size: the network input of the video")
    parser.add_argument("--no_int8", action="store_true")
    parser.add_argument("--synthetic_frames", type=int, default=100, help="0: skip the tracking-quality part")
    args = parser.parse_args()
    input_hw = tuple(int(v) for v in args.input_hw.split(","))
    print(f"CPU cores: {os.cpu_count()}; {args.video}, first {args.frames} frames, tracking and rendering on\n")
    with tempfile.TemporaryDirectory() as work:
        variants = models(args.model, work, args.cal_image_dir, not args.no_int8, input_hw)
        results = {}
        for label, path in variants:
            modes = ("sequential", "pipelined") if "FP32" in label else ("pipelined",)
            for mode in modes:
                out = os.path.join(work, f"{label}-{mode}".replace(" ", "_"))
                results[(label, mode)] = run(path, args.video, out, args.frames, mode == "pipelined")
                print(f"  done: {label} {mode} {results[(label, mode)]['fps']:.2f} frames/s", flush=True)
        base = results[("ORT FP32", "sequential")]["fps"]
        print("\n| runtime | path | frames/s | × sequential ORT FP32 | CPU use | people | tracks | same as sequential |")
        print("|---|---|---:|---:|---:|---:|---:|---|")
        for (label, mode), row in results.items():
            sequential = results.get((label, "sequential"))
            same = "—" if mode == "sequential" or sequential is None else str(row["detections"] == sequential["detections"])
            print(
                f"| {label} | {mode} | {row['fps']:.2f} | {row['fps'] / base:.2f} | {row['cpu']:.0%} | "
                f"{row['people']} | {row['tracks']} | {same} |"
            )
        if args.synthetic_frames:
            from bpnet.synthesize_video import synthesize_video

            made = synthesize_video(os.path.join(work, "synthetic"), args.synthetic_frames, seed=5, num_people=4)
            with open(made.annotation_file, encoding="utf-8") as handle:
                truth = json.load(handle)
            print(f"\nTracking on the synthetic crossing video ({made.frames} frames, 4 people, 2 crossings), ORT FP32:\n")
            print("| optical flow | MOTA | IDF1 | id switches | fragmentations | misses | false positives |")
            print("|---|---:|---:|---:|---:|---:|---:|")
            for flow in (True, False):
                row = run(args.model, made.video, os.path.join(work, f"synthetic-{flow}"), made.frames, True, flow)
                metrics = tracking_metrics(truth, row["detections"])
                print(
                    f"| {'on' if flow else 'off'} | {metrics['mota']:.3f} | {metrics['idf1']:.3f} | "
                    f"{metrics['num_switches']:.0f} | {metrics['num_fragmentations']:.0f} | {metrics['num_misses']:.0f} | "
                    f"{metrics['num_false_positives']:.0f} |"
                )


if __name__ == "__main__":
    main()
