"""User-facing errors, and the one place that maps expected failures to a one-line message.

The CLI prints ``Error: <message>`` on one line and exits with code 2 for every failure that
:func:`describe_failure` recognises; ``status.json`` gets the same message in its ``FAILURE`` line.
Anything else is a bug: it keeps its traceback.
"""

import errno
import re
from typing import Optional


class BpnetError(Exception):
    """An error caused by the user's input (a file, a flag, a spec), not by a bug.

    The message must name the file and, where there is one, the field at fault.
    """


class SpecError(BpnetError):
    """A spec file that cannot be loaded: bad syntax, unknown key, wrong type or value."""


_OS_HINTS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOENT: "no such file or folder",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.EISDIR: "is a folder",
    errno.ELOOP: "refusing to follow a symlink",
    errno.EEXIST: "already exists",
    errno.ENAMETOOLONG: "file name too long",
}

_TENSORFLOW_FILE_ERRORS = {
    "PermissionDeniedError",
    "NotFoundError",
    "ResourceExhaustedError",
    "DataLossError",
    "FailedPreconditionError",
    "AlreadyExistsError",
}
_FILE_SYSTEM_TEXT = {
    "No space left on device": _OS_HINTS[errno.ENOSPC],
    "Disk quota exceeded": _OS_HINTS[errno.EDQUOT],
    "Read-only file system": _OS_HINTS[errno.EROFS],
    "Permission denied": _OS_HINTS[errno.EACCES],
}


def _first_line(text: object) -> str:
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


_LOCATION_LINE = re.compile(r"^(Exception from \S+:\d+:?|Check '.*' failed at \S+:\d+:?)$")


def error_cause(text: object) -> str:
    """The lines of a runtime's error message that say what went wrong, joined on one line: OpenVINO's messages
    begin with the source locations that raised them ("Exception from src/...cpp:84:"), and their cause comes
    after."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    causes = [line for line in lines if not _LOCATION_LINE.match(line)]
    return " ".join(causes or lines[:1])


def describe_failure(exc: BaseException) -> Optional[str]:
    """The one-line message of an expected failure (bad input, file system, memory), or None for a bug."""
    if isinstance(exc, BpnetError):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in _OS_HINTS:
        where = exc.filename or ""
        detail = _OS_HINTS[exc.errno]
        return f"{where}: {detail}" if where else f"{detail} ({_first_line(exc)})"
    if isinstance(exc, MemoryError):
        return f"out of memory{': ' + _first_line(exc) if str(exc) else ''} (an input or setting asks for too much)"
    if not (type(exc).__module__ or "").startswith("tensorflow"):
        return None
    message = _first_line(getattr(exc, "message", exc))
    for text, hint in _FILE_SYSTEM_TEXT.items():
        if text in message:  # TensorFlow writes "<path>; No space left on device"
            where = message.split(";")[0].split(": ")[-1].strip() if ";" in message else ""
            return f"{where}: {hint}" if where else f"{hint} ({message})"
    return message if type(exc).__name__ in _TENSORFLOW_FILE_ERRORS else None
