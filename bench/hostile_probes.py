"""Issue 31's hostile-input probes, run against the CLI as a user would, one process per probe; prints a table.

Each probe's peak resident memory is that process's own (``getrusage`` of a wrapper whose only child it is).

    python bench/hostile_probes.py --model mobilenet_thin.onnx [--work /tmp/probes]

``--model``: an imported ONNX model (``bpnet import_model -m graph_opt.pb -o mobilenet_thin.onnx``).
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("BPNET_SHARED_DATA", REPO.parent / "shared" / "data")) / "media"

WRAPPER = textwrap.dedent(
    """
    import resource, subprocess, sys
    done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
    sys.stdout.write(done.stdout + done.stderr)
    print("PEAK_KB", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    sys.exit(done.returncode)
    """
)


def bpnet(*args, env=None):
    """``(exit code, output, peak MB)`` of one ``bpnet`` command."""
    command = [sys.executable, "-c", WRAPPER, sys.executable, "-m", "bpnet", *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})})
    output, peak = done.stdout.rsplit("PEAK_KB", 1)
    return done.returncode, output, int(peak) / 1024


def said(output: str) -> str:
    """The line a user reads: the Error line, else the last warning, else the last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip() and "it/s]" not in line and "img/s]" not in line]
    for prefix in ("Error: ", "WARNING", "warning"):
        found = [line for line in lines if prefix in line]
        if found:
            return found[-1][:160]
    return lines[-1][:160] if lines else ""


def status_of(folder: Path) -> str:
    path = folder / "status.json"
    if not path.exists():
        return "-"
    line = json.loads(path.read_text().splitlines()[-1])
    return line["status"] + (f" {line['kpi']}" if "kpi" in line and "inputs_partial" in line["kpi"] else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="an imported ONNX model (mobilenet_thin)")
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args()
    model = os.path.abspath(args.model)
    work = Path(args.work or tempfile.mkdtemp(prefix="bpnet-probes-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []

    def probe(name, *command, results=None, env=None):
        code, output, peak = bpnet(*command, env=env)
        rows.append((name, code, f"{peak:.0f}", status_of(results) if results else "-", said(output)[:200]))

    cv2.imwrite(str(work / "wide.png"), np.full((2, 3000, 3), 90, np.uint8))
    cv2.imwrite(str(work / "narrow.png"), np.full((2, 200, 3), 90, np.uint8))
    cv2.imwrite(str(work / "huge.png"), np.zeros((20000, 20000), np.uint8))
    for name in ("wide.png", "narrow.png", "huge.png"):
        size = (work / name).stat().st_size
        out = work / f"r_{name}"
        probe(
            f"inference on {name} ({size} B)", "inference", "-m", model, "--input", work / name, "--results_dir", out, results=out
        )

    out = work / "r_set"
    probe(
        "--set input_shape=[99999999999999999999999,8]",
        "inference", "-m", model, "--input", MEDIA / "messi5.jpg", "--results_dir", out,
        "--set", "input_shape=[99999999999999999999999,8]", results=out,
    )  # fmt: skip
    out = work / "r_stage"
    probe(
        "--set output_stage_to_use=99",
        "inference", "-m", model, "--input", MEDIA / "messi5.jpg", "--results_dir", out,
        "--set", "output_stage_to_use=99", results=out,
    )  # fmt: skip
    probe(
        "import_model --input_shape 100000,100000",
        "import_model",
        "-m",
        model,
        "-o",
        work / "big.onnx",
        "--input_shape",
        "100000,100000",
    )

    import onnx

    from bpnet.model.io import read_onnx_metadata, set_onnx_metadata

    proto = onnx.load(model)
    metadata = read_onnx_metadata(model)
    metadata["inference_defaults"]["input_shape"] = [200000, 200000]
    set_onnx_metadata(proto, metadata)
    onnx.save(proto, str(work / "poisoned.onnx"))
    out = work / "r_poisoned"
    probe("metadata input_shape 200000²", "inference", "-m", work / "poisoned.onnx", "--input", MEDIA / "messi5.jpg",
          "--results_dir", out, results=out)  # fmt: skip

    (work / "garbage.jpg").write_bytes(b"\xff\xd8 garbage")
    (work / "imported").mkdir(exist_ok=True)
    probe(
        "import_model --check_image garbage.jpg",
        "import_model", "-m", model, "-o", work / "imported" / "m.onnx", "--preset", "tf_pose",
        "--check_image", work / "garbage.jpg",
    )  # fmt: skip
    left = sorted(p.name for p in (work / "imported").iterdir())
    rows[-1] = (*rows[-1][:4], f"{rows[-1][4]} / files left in the output folder: {left}")

    data = (MEDIA / "messi5.jpg").read_bytes()
    (work / "cut").mkdir(exist_ok=True)
    (work / "cut" / "cut.jpg").write_bytes(data[: len(data) // 2])
    out = work / "r_cut_jpg"
    probe(
        "truncated JPEG (50 %)", "inference", "-m", model, "--input", work / "cut" / "cut.jpg", "--results_dir", out, results=out
    )

    video = (MEDIA / "demo.mp4").read_bytes()
    frames = [cv2.resize(cv2.imread(str(MEDIA / "messi5.jpg")), (320, 200))] * 26
    writer = cv2.VideoWriter(str(work / "whole.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (320, 200))
    for index, frame in enumerate(frames):
        writer.write(np.roll(frame, index * 5, axis=1))
    writer.release()
    avi = (work / "whole.avi").read_bytes()
    (work / "cut.avi").write_bytes(avi[: len(avi) // 2])
    (work / "cut.mp4").write_bytes(video[: len(video) // 2])
    for name in ("cut.avi", "cut.mp4"):
        out = work / f"r_{name}"
        probe(f"video cut at 50 % ({name})", "inference", "-m", model, "--input_type", "video", "--input", work / name,
              "--results_dir", out, results=out)  # fmt: skip

    np.save(work / "nan.npy", np.full((1, 1, 368, 368, 3), np.nan, np.float32))
    out = work / "r_nan"
    probe("export --cal_data_file all-NaN", "export", "-m", model, "-o", work / "exp" / "m.onnx", "--data_type", "int8",
          "--cal_data_file", work / "nan.npy", "--batches", "1", "--batch_size", "1",
          "--results_dir", out, results=out)  # fmt: skip

    (work / "ir").mkdir(exist_ok=True)
    (work / "ir" / "m.xml").write_text(
        '<?xml version="1.0"?><net name="x" version="11"><layers>'
        '<layer id="0" name="c" type="Const" version="opset1"><data element_type="f32" shape="1" offset="0" size="4"/>'
        '<output><port id="0" precision="FP32"><dim>1</dim></port></output></layer>'
        '<layer id="1" name="out" type="Result" version="opset1"><input><port id="0"><dim>1</dim></port></input></layer>'
        '</layers><edges><edge from-layer="0" from-port="0" to-layer="1" to-port="0"/></edges></net>'
    )
    (work / "ir" / "m.xml.json").write_text(json.dumps(read_onnx_metadata(model)))
    probe("OpenVINO IR without its .bin", "inference", "-m", work / "ir" / "m.xml", "--input", MEDIA / "messi5.jpg",
          "--results_dir", work / "r_ir")  # fmt: skip
    (work / "empty.pb").write_bytes(b"")
    (work / "bad.pb").write_bytes(os.urandom(2000))
    for name in ("empty.pb", "bad.pb"):
        probe(f"import_model {name}", "import_model", "-m", work / name, "-o", work / f"{name}.onnx")
    (work / "spec.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe binary")
    probe(
        "binary YAML spec",
        "inference",
        "-i",
        work / "spec.yaml",
        "--input",
        MEDIA / "messi5.jpg",
        "--results_dir",
        work / "r_spec",
    )

    home = work / "home"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir()
    probe("ONNX Runtime run, HOME empty", "inference", "-m", model, "--input", MEDIA / "messi5.jpg",
          "--results_dir", work / "r_h1", env={"HOME": str(home)})  # fmt: skip
    probe("OpenVINO export + run, HOME empty", "export", "-m", model, "-o", work / "ov" / "m.xml", "--target", "openvino",
          env={"HOME": str(home)})  # fmt: skip
    probe("", "inference", "-m", work / "ov" / "m.xml", "--input", MEDIA / "messi5.jpg", "--results_dir", work / "r_h2",
          env={"HOME": str(home)})  # fmt: skip
    rows.pop()
    written = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    rows.append(("files under HOME after the two runs above", "", "", "", str(written)))

    print(f"| probe | exit | peak MB | status.json | what the user reads |  (cores: {os.cpu_count()})")
    print("|---|---:|---:|---|---|")
    for row in rows:
        print("| " + " | ".join(str(v).replace("|", "/") for v in row) + " |")
    print(f"\nprobe process CPU time in total: {resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime:.1f} s user")


if __name__ == "__main__":
    main()
