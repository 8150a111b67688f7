"""``status.json`` as TAO writes it: one JSON object per line, appended as a task progresses.

:func:`task_status` wraps a whole command: ``STARTED`` first, and a ``FAILURE`` line with the same
one-line message the CLI prints (:func:`bpnet.errors.describe_failure`) when anything escapes,
Ctrl-C included. The file is opened without following a symlink planted in its place.
"""

import contextlib
import datetime
import json
import os
from typing import Any, Dict, Iterator, Optional

from bpnet.errors import describe_failure
from bpnet.files import folder_lock


class StatusLogger:
    """Appends TAO-style status lines (``date``, ``time``, ``status``, ``verbosity``, ``message``, ``kpi``) to
    ``path``; writes nothing when ``path`` is None (a task run without a results folder)."""

    def __init__(self, path: Optional[str]):
        self.path = path

    def write(self, status: str, message: str, kpi: Optional[Dict[str, Any]] = None, verbosity: str = "INFO") -> None:
        """Append one line; ``status`` is STARTED, RUNNING, SUCCESS or FAILURE."""
        if self.path is None:
            return
        now = datetime.datetime.now()
        line: Dict[str, Any] = {
            "date": f"{now.month}/{now.day}/{now.year}",
            "time": f"{now.hour}:{now.minute}:{now.second}",
            "status": status,
            "verbosity": verbosity,
            "message": message,
        }
        if kpi is not None:
            line["kpi"] = kpi
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        with os.fdopen(os.open(self.path, flags, 0o644), "a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")


class Terminated(KeyboardInterrupt):
    """Raised in the main thread by SIGTERM (the CLI installs the handler): the run ends as on Ctrl-C, finished
    outputs kept and ``FAILURE`` in ``status.json``."""


def raise_terminated(signum: int, frame: Any) -> None:
    """A SIGTERM handler: raise :class:`Terminated` where the main thread is."""
    raise Terminated()


def failure_message(exc: BaseException) -> str:
    """What a ``FAILURE`` line says about ``exc``."""
    if isinstance(exc, Terminated):
        return "terminated (SIGTERM)"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    return describe_failure(exc) or f"{type(exc).__name__}: {exc}"


@contextlib.contextmanager
def task_status(results_dir: Optional[str], started: Optional[str]) -> Iterator[StatusLogger]:
    """Write ``STARTED`` (unless ``started`` is None) to ``results_dir/status.json``, and ``FAILURE`` if the
    block raises (then re-raise).

    The block writes its own ``SUCCESS`` line with its KPIs. No file is written without ``results_dir``. The
    folder is locked for the block (:func:`bpnet.files.folder_lock`): a second run into it is refused before
    it writes anything, the other run's ``status.json`` included.
    """
    status = StatusLogger(os.path.join(results_dir, "status.json") if results_dir else None)
    with contextlib.ExitStack() as stack:
        if results_dir:
            os.makedirs(results_dir, exist_ok=True)
            stack.enter_context(folder_lock(results_dir))
        if started:
            status.write("STARTED", started)
        try:
            yield status
        except BaseException as exc:
            with contextlib.suppress(OSError):
                status.write("FAILURE", failure_message(exc), verbosity="ERROR")
            raise
