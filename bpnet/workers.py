"""Worker processes that never outlive their parent.

:func:`die_with_parent` is a process-pool initializer: on Linux the kernel sends the worker SIGKILL
when the parent dies (``prctl(PR_SET_PDEATHSIG)``), even by ``kill -9``; elsewhere a daemon thread
polls the parent's id and exits the worker once it changes.
"""

import ctypes
import ctypes.util
import os
import signal
import threading
import time

_PR_SET_PDEATHSIG = 1
_POLL_SECONDS = 1.0


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(_POLL_SECONDS)
    os._exit(1)


def die_with_parent() -> None:
    """Make the calling (worker) process end when its parent ends."""
    parent = os.getppid()
    if parent <= 1:
        os._exit(1)
    libc_name = ctypes.util.find_library("c")
    armed = False
    if libc_name and hasattr(signal, "SIGKILL"):
        try:
            armed = ctypes.CDLL(libc_name, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent:
        os._exit(1)
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
