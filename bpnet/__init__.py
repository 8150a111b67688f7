"""bpnet: bottom-up multi-person 2D pose estimation (a TLT/TAO BodyPoseNet workflow on TF2/Keras 3).

Importing bpnet turns off the telemetry of the runtimes it drives, which would otherwise write outside the
results folder (docs/robustness.md): ONNX Runtime's (``ORT_DISABLE_TELEMETRY=1`` unless the environment
already sets it; it keeps a database under ``~/.cache/Microsoft``) and OpenVINO's and NNCF's (their
``openvino_telemetry`` package, which writes ``~/intel``, is made unimportable in this process; both
runtimes then skip telemetry as they do when the package is not installed).
"""

import os
import sys

__version__ = "0.2.0"

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
if "openvino_telemetry" not in sys.modules:
    sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]
