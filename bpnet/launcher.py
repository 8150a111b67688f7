"""TLT's launcher flags (reference §1.0), which NVIDIA's notebooks pass to every task, and what each does here.

* ``--gpu_index I [I ...]``: ``CUDA_VISIBLE_DEVICES`` (set before TensorFlow is imported), as TLT's launcher did.
* ``--log_file PATH``: the task's output — log lines, results, errors — is also written to ``PATH`` (appended;
  TLT redirected it there, bpnet keeps the terminal too). Progress-bar redraws stay on the terminal only.
* ``-np/--num_processes N``: TLT started N Horovod processes, one per GPU. bpnet trains on several GPUs in one
  process (``MirroredStrategy``), so for ``train`` ``-np N`` means ``--gpus N``; other tasks run on one device,
  as in TLT, and refuse ``N > 1``.
* ``--gpus N``: on ``train`` the number of GPUs; other tasks take only 1 (TLT: ``MULTIGPU_SUPPORTED_TASKS``).
* ``--launch_cuda_blocking``: ``CUDA_LAUNCH_BLOCKING=1`` (debugging).
"""

import logging
import os
import sys
from typing import IO, Any, Callable, Optional, Sequence

from bpnet.errors import BpnetError

LOG_FORMAT = "%(asctime)s [bpnet] %(levelname)s %(name)s: %(message)s"
LOG_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def set_visible_gpus(indices: Sequence[int]) -> None:
    """``--gpu_index``: only these GPUs are visible to TensorFlow, ONNX Runtime and TensorRT."""
    if any(index < 0 for index in indices):
        raise BpnetError(f"--gpu_index: GPU indices are 0 or more, got {list(indices)}")
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(index) for index in indices)


def single_process(task: str, num_processes: int, gpus: int) -> None:
    """Refuse ``-np``/``--gpus`` above 1 for a task that runs on one device (every task but ``train``)."""
    if num_processes > 1 or gpus > 1:
        flag = f"-np {num_processes}" if num_processes > 1 else f"--gpus {gpus}"
        raise BpnetError(f"{flag}: {task} runs on one device (as in TLT, only train uses several GPUs)")


def training_gpus(gpus: Optional[int], num_processes: int, gpu_index: Sequence[int]) -> Optional[int]:
    """The GPU count ``train`` uses: ``--gpus``, else ``-np`` (one TLT process per GPU), else as many as
    ``--gpu_index`` names, else None (the trainer's default). Refuses counts that contradict each other."""
    if gpus is not None and num_processes > 0 and num_processes != gpus:
        raise BpnetError(f"-np {num_processes} and --gpus {gpus}: TLT ran one process per GPU; give one of them")
    count = gpus if gpus is not None else num_processes if num_processes > 0 else len(gpu_index) or None
    if gpu_index and count is not None and count > len(gpu_index):
        raise BpnetError(f"--gpus {count}: --gpu_index names only {len(gpu_index)} GPU(s) ({list(gpu_index)})")
    return count


class _Tee:
    """A text stream that writes to the terminal's stream and to the log file (not progress-bar redraws)."""

    def __init__(self, stream: IO[str], log: IO[str]):
        self._stream = stream
        self._log = log

    def write(self, text: str) -> int:
        written = self._stream.write(text)
        if "\r" not in text:
            self._log.write(text)
        return written

    def flush(self) -> None:
        self._stream.flush()
        self._log.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def tee_to_log_file(path: str) -> Callable[[], None]:
    """``--log_file``: from now on standard output, standard error and the log lines also go to ``path``
    (appended). Returns the function that ends it (restores the streams, closes the file)."""
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        log = open(path, "a", encoding="utf-8", buffering=1)
    except OSError as exc:
        raise BpnetError(f"{path}: cannot write the log file ({exc.strerror}) (--log_file)") from None
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Tee(sys.stdout, log), _Tee(sys.stderr, log)
    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, LOG_DATE_FORMAT))
    logging.getLogger().addHandler(handler)

    def stop() -> None:
        logging.getLogger().removeHandler(handler)
        sys.stdout, sys.stderr = saved
        log.close()

    return stop
