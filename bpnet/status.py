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


def failure_message(exc: BaseException) -> str:
    """What a ``FAILURE`` line says about ``exc``."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    return describe_failure(exc) or f"{type(exc).__name__}: {exc}"


@contextlib.contextmanager
def task_status(results_dir: Optional[str], started: Optional[str]) -> Iterator[StatusLogger]:
    """Write ``STARTED`` (unless ``started`` is None) to ``results_dir/status.json``, and ``FAILURE`` if the
    block raises (then re-raise).

    The block writes its own ``SUCCESS`` line with its KPIs. No file is written without ``results_dir``.
    """
    status = StatusLogger(os.path.join(results_dir, "status.json") if results_dir else None)
    if started:
        status.write("STARTED", started)
    try:
        yield status
    except BaseException as exc:
        with contextlib.suppress(OSError):
            status.write("FAILURE", failure_message(exc), verbosity="ERROR")
        raise
