"""TensorRT engines from the exported ONNX model (TensorRT ≥ 10 Python API), and running them.

TensorRT and the CUDA bindings (``cuda-python``, else ``pycuda``) are imported only when an engine is
built or run; without them, or without a GPU, the caller gets one :class:`~bpnet.errors.BpnetError` line.
The parts that need neither (the optimisation profile, the calibration batches and cache handling of
:class:`CalibrationFeeder`) are plain Python and are tested everywhere.
"""

import dataclasses
import importlib
import logging
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from bpnet.errors import BpnetError
from bpnet.files import atomic_path
from bpnet.infer.runtime import OutputLayout, RuntimeBackend
from bpnet.model.io import write_sidecar_metadata

logger = logging.getLogger(__name__)

GIB = 1 << 30


@dataclasses.dataclass(frozen=True)
class EngineSettings:
    """``--data_type``, ``-d`` (H, W), the batch flags, ``--max_workspace_size``, ``-s``."""

    data_type: str = "fp32"
    input_hw: Tuple[int, int] = (256, 256)
    static_batch_size: int = -1
    opt_batch_size: int = 1
    max_batch_size: int = 1
    calibration_batch_size: int = 1
    max_workspace_size: int = 2 * GIB
    strict_type_constraints: bool = False
    channels_last: bool = True  # the network's input layout: NHWC (bpnet, tf-pose) or NCHW
    keep_float: Optional[str] = None  # --int8_keep_float: layers whose name this matches run in FP32


def input_shape(settings: EngineSettings, batch: int) -> Tuple[int, int, int, int]:
    """The network input's shape for ``batch`` images of the deploy size, in its own layout."""
    height, width = settings.input_hw
    return (batch, height, width, 3) if settings.channels_last else (batch, 3, height, width)


def optimization_profile(settings: EngineSettings) -> Dict[str, Tuple[int, int, int, int]]:
    """``{"min"|"opt"|"max": (N, H, W, 3)}`` (``(N, 3, H, W)`` for an NCHW network) for the input (reference
    §5.2): batch 1 … opt … max(batch_size, max_batch_size), or the static batch everywhere."""
    if settings.static_batch_size > 0:
        return {key: input_shape(settings, settings.static_batch_size) for key in ("min", "opt", "max")}
    largest = max(settings.calibration_batch_size, settings.max_batch_size)
    if not 1 <= settings.opt_batch_size <= largest:
        raise BpnetError(
            f"--opt_batch_size: {settings.opt_batch_size} is not within 1..{largest} (max of --batch_size and --max_batch_size)"
        )
    return {
        "min": input_shape(settings, 1),
        "opt": input_shape(settings, settings.opt_batch_size),
        "max": input_shape(settings, largest),
    }


def float_layers(layer_names: Sequence[str], keep_float: Optional[str]) -> List[str]:
    """The layers ``--int8_keep_float`` keeps in FP32 (``re.search`` on TensorRT's layer names, which are
    the ONNX node names)."""
    if not keep_float:
        return []
    pattern = re.compile(keep_float)
    return [name for name in layer_names if pattern.search(name)]


class CalibrationFeeder:
    """What the entropy calibrator hands TensorRT: the batches in order, then None; the cache file read
    when it exists (calibration is then skipped) and written atomically after calibration."""

    def __init__(self, batches: Optional[np.ndarray], cache_file: Optional[str]):
        self.batches = batches
        self.cache_file = cache_file
        self.position = 0

    @property
    def batch_size(self) -> int:
        return 1 if self.batches is None else int(self.batches.shape[1])

    def next_batch(self) -> Optional[np.ndarray]:
        if self.batches is None or self.position >= len(self.batches):
            return None
        batch = np.ascontiguousarray(self.batches[self.position], np.float32)
        self.position += 1
        return batch

    def read_cache(self) -> Optional[bytes]:
        if self.cache_file and os.path.isfile(self.cache_file):
            logger.info("Using the calibration cache %s (delete it to recalibrate)", self.cache_file)
            with open(self.cache_file, "rb") as handle:
                return handle.read()
        return None

    def write_cache(self, cache: bytes) -> None:
        if not self.cache_file:
            return
        os.makedirs(os.path.dirname(os.path.abspath(self.cache_file)), exist_ok=True)
        with atomic_path(self.cache_file) as tmp, open(tmp, "wb") as handle:
            handle.write(bytes(cache))
        logger.info("Wrote the calibration cache %s", self.cache_file)


def _import_tensorrt():
    try:
        import tensorrt
    except ImportError:
        raise BpnetError(
            "TensorRT is not installed (pip install 'bpnet[trt]' on a machine with an NVIDIA GPU); "
            "for CPUs use --target onnxruntime"
        ) from None
    return tensorrt


class _Cuda:
    """Device memory and copies through cuda-python, else pycuda."""

    def __init__(self):
        try:
            from cuda.bindings import runtime  # cuda-python ≥ 12.6
        except ImportError:
            try:
                from cuda import cudart as runtime
            except ImportError:
                runtime = None
        self.runtime = runtime
        if runtime is None:
            try:
                importlib.import_module("pycuda.autoinit")  # creates the CUDA context
                import pycuda.driver as driver
            except ImportError:
                raise BpnetError("neither cuda-python nor pycuda is installed (pip install cuda-python)") from None
            except Exception as exc:  # pycuda raises its own errors without a GPU
                raise BpnetError(f"no usable NVIDIA GPU: {exc}") from None
            self.driver = driver

    def _check(self, result):
        error, *values = result if isinstance(result, tuple) else (result,)
        if int(error) != 0:
            raise BpnetError(f"CUDA error {error} (is there an NVIDIA GPU and driver?)")
        return values[0] if values else None

    def malloc(self, nbytes: int) -> int:
        if self.runtime is not None:
            return int(self._check(self.runtime.cudaMalloc(nbytes)))
        return self.driver.mem_alloc(nbytes)

    def to_device(self, pointer, array: np.ndarray) -> None:
        if self.runtime is not None:
            kind = self.runtime.cudaMemcpyKind.cudaMemcpyHostToDevice
            self._check(self.runtime.cudaMemcpy(pointer, array.ctypes.data, array.nbytes, kind))
        else:
            self.driver.memcpy_htod(pointer, array)

    def to_host(self, array: np.ndarray, pointer) -> None:
        if self.runtime is not None:
            kind = self.runtime.cudaMemcpyKind.cudaMemcpyDeviceToHost
            self._check(self.runtime.cudaMemcpy(array.ctypes.data, pointer, array.nbytes, kind))
        else:
            self.driver.memcpy_dtoh(array, pointer)

    def synchronize(self) -> None:
        if self.runtime is not None:
            self._check(self.runtime.cudaDeviceSynchronize())
        else:
            self.driver.Context.synchronize()


def _entropy_calibrator(trt, feeder: CalibrationFeeder, cuda: _Cuda):
    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            super().__init__()
            self.device = None

        def get_batch_size(self):
            return feeder.batch_size

        def get_batch(self, names):
            batch = feeder.next_batch()
            if batch is None:
                return None
            if self.device is None:
                self.device = cuda.malloc(batch.nbytes)
            cuda.to_device(self.device, batch)
            return [int(self.device)]

        def read_calibration_cache(self):
            return feeder.read_cache()

        def write_calibration_cache(self, cache):
            feeder.write_cache(cache)

    return EntropyCalibrator()


def build_engine(onnx_path: str, settings: EngineSettings, feeder: Optional[CalibrationFeeder] = None) -> bytes:
    """The serialised engine of an ONNX model; INT8 needs ``feeder`` (batches or an existing cache)."""
    trt = _import_tensorrt()
    cuda = _Cuda() if settings.data_type == "int8" else None
    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(onnx_path):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BpnetError(f"{onnx_path}: TensorRT cannot parse the ONNX model: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.max_workspace_size)
    shapes = optimization_profile(settings)
    profile = builder.create_optimization_profile()
    profile.set_shape(network.get_input(0).name, shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(profile)
    if settings.data_type in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if settings.data_type == "int8":
        if feeder is None or cuda is None:
            raise BpnetError("--data_type int8 needs calibration data (--cal_image_dir, --cal_data_file or --cal_cache_file)")
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = _entropy_calibrator(trt, feeder, cuda)
        calibration = builder.create_optimization_profile()
        shape = input_shape(settings, feeder.batch_size)
        calibration.set_shape(network.get_input(0).name, shape, shape, shape)
        config.set_calibration_profile(calibration)
    if settings.strict_type_constraints:
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    if settings.data_type == "int8" and settings.keep_float:
        layers = {network.get_layer(i).name: network.get_layer(i) for i in range(network.num_layers)}
        for name in float_layers(list(layers), settings.keep_float):
            layers[name].precision = trt.float32
        if not settings.strict_type_constraints:
            config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BpnetError(f"{onnx_path}: TensorRT could not build a {settings.data_type} engine (see its log above)")
    return bytes(serialized)


def save_engine(engine: bytes, engine_path: str, metadata: Dict[str, object]) -> None:
    """Write a serialised engine and its bpnet metadata beside it (``<engine>.json``), atomically."""
    os.makedirs(os.path.dirname(os.path.abspath(engine_path)), exist_ok=True)
    with atomic_path(engine_path) as tmp, open(tmp, "wb") as handle:
        handle.write(engine)
    write_sidecar_metadata(engine_path, metadata)


class TensorRTBackend(RuntimeBackend):
    """Runs a serialised engine on the GPU; its outputs rearranged by an :class:`OutputLayout` as the ONNX
    Runtime and OpenVINO backends do."""

    def __init__(self, engine_path: str, layout: OutputLayout, channels_last: bool = True):
        trt = _import_tensorrt()
        self.cuda = _Cuda()
        with open(engine_path, "rb") as handle:
            self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(handle.read())
        if self.engine is None:
            raise BpnetError(f"{engine_path}: TensorRT cannot load this engine (built by another TensorRT version or GPU?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_name = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        axis = -1 if channels_last else 1
        channels = {
            name: int(self.engine.get_tensor_shape(name)[axis])
            for name in names
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT
        }
        self.buffers: Dict[str, Tuple[int, int]] = {}
        super().__init__(engine_path, layout, channels, channels_last)

    def _buffer(self, name: str, nbytes: int) -> int:
        pointer, size = self.buffers.get(name, (None, 0))
        if pointer is None or size < nbytes:
            pointer = self.cuda.malloc(nbytes)
            self.buffers[name] = (pointer, nbytes)
        return int(pointer)

    def _run(self, names: Sequence[str], batch: np.ndarray) -> Dict[str, np.ndarray]:
        batch = np.ascontiguousarray(batch, np.float32)
        self.context.set_input_shape(self.input_name, batch.shape)
        pointer = self._buffer(self.input_name, batch.nbytes)
        self.cuda.to_device(pointer, batch)
        self.context.set_tensor_address(self.input_name, pointer)
        outputs = {}
        for name in names:
            array = np.empty(tuple(self.context.get_tensor_shape(name)), np.float32)
            outputs[name] = array
            self.context.set_tensor_address(name, self._buffer(name, array.nbytes))
        if not self.context.execute_async_v3(0):
            raise BpnetError("TensorRT failed to run the engine")
        self.cuda.synchronize()
        for name, array in outputs.items():
            self.cuda.to_host(array, self.buffers[name][0])
        return outputs
