"""Safe file writing: atomic outputs, unpredictable temporaries, stale-temporary clean-up, path containment.

* Outputs appear under their final name only when complete (:func:`atomic_path`): a temporary file
  is created beside the destination with ``tempfile`` (``O_EXCL``, so a planted symlink is never
  followed) and renamed over the destination at the end, with the mode a plain ``open`` would have given it
  (``0666`` less the umask; ``mkstemp`` creates it ``0600``).
* Temporary names carry the writer's process id (``.<stem>.bpnet-tmp-<pid>-<random><ext>``), so a
  later run can remove those of dead processes (:func:`remove_stale_temporaries`).
* Paths read from data files are joined to their declared root with :func:`contained_path`, which
  refuses any that would leave it.
* A results folder is used by one run at a time (:func:`folder_lock`).
"""

import contextlib
import errno
import fcntl
import os
import re
import shutil
import tempfile
from typing import Dict, Iterator, Optional

import cv2
import numpy as np

from bpnet.errors import BpnetError

TEMPORARY_MARK = ".bpnet-tmp-"
_TEMPORARY_PATTERN = re.compile(r"^\..*" + re.escape(TEMPORARY_MARK) + r"(\d+)-")


def temporary_prefix(stem: str) -> str:
    """The name prefix of this process's temporaries for ``stem`` (see the module docstring)."""
    return f".{stem}{TEMPORARY_MARK}{os.getpid()}-"


def current_umask() -> int:
    """The process's file-creation mask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a fresh temporary path beside ``path``; rename it to ``path`` on success, delete it on failure."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    stem, extension = os.path.splitext(os.path.basename(path))
    handle, tmp = tempfile.mkstemp(prefix=temporary_prefix(stem), suffix=extension, dir=folder)
    os.close(handle)
    try:
        yield tmp
        if os.path.isfile(tmp):
            os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp made it 0600; the rename would keep that
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.remove(tmp)


LOCK_NAME = ".bpnet.lock"
_held_locks: Dict[str, int] = {}  # folder → nesting depth of this process's hold


@contextlib.contextmanager
def folder_lock(folder: str) -> Iterator[None]:
    """Hold ``folder/.bpnet.lock`` for the block: another process that asks for the same folder meanwhile gets a
    one-line error naming the owner's pid. The lock is the kernel's (``flock``), so a run killed with
    ``kill -9`` leaves no stale lock: its file is simply locked again. Re-entrant within one process; the file
    is removed on release."""
    key = os.path.realpath(folder)
    if key in _held_locks:
        _held_locks[key] += 1
        try:
            yield
        finally:
            _held_locks[key] -= 1
        return
    path = os.path.join(folder, LOCK_NAME)
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    while True:
        handle = os.open(path, flags, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(handle, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(handle)
            raise BpnetError(
                f"{folder}: in use by another bpnet run (pid {owner}); wait for it to finish or choose another results folder"
            ) from None
        try:  # a run releasing the lock unlinks the file: the one locked must still be the one named
            current = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            current = None
        if current is not None and os.path.samestat(os.fstat(handle), current):
            break
        os.close(handle)
    os.ftruncate(handle, 0)
    os.pwrite(handle, f"{os.getpid()}\n".encode(), 0)
    _held_locks[key] = 1
    try:
        yield
    finally:
        del _held_locks[key]
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(handle)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: str) -> int:
    """Delete the temporaries (files or folders) that dead bpnet processes left in ``folder``; returns how many."""
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    removed = 0
    for name in names:
        match = _TEMPORARY_PATTERN.match(name)
        if not match or _process_alive(int(match.group(1))):
            continue
        target = os.path.join(folder, name)
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.remove(target)
        removed += 1
    return removed


def contained_path(root: str, relative: str) -> Optional[str]:
    """``root/relative`` normalised, or None when ``relative`` is absolute or climbs out of ``root``.

    The test is on the names (``..`` components), so a symlinked folder inside ``root`` that the
    user made stays usable; use :func:`resolves_inside` before writing.
    """
    if not relative or os.path.isabs(relative) or "\x00" in relative:
        return None
    root = os.path.normpath(os.path.abspath(root))
    joined = os.path.normpath(os.path.join(root, relative))
    return joined if joined != root and joined.startswith(root + os.sep) else None


def resolves_inside(root: str, path: str) -> bool:
    """Whether ``path``, with every symlink resolved, lies inside ``root`` (also resolved)."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real.startswith(real_root + os.sep)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def is_gray_png(path: str, height: int, width: int) -> bool:
    """Whether ``path`` is a regular file (not a symlink) holding an 8-bit grayscale PNG of ``height × width``:
    what a bpnet loss mask of that image is (the PNG header is read, not the pixels)."""
    if os.path.islink(path) or not os.path.isfile(path):
        return False
    with open(path, "rb") as handle:
        header = handle.read(26)
    if len(header) < 26 or header[:8] != PNG_SIGNATURE or header[12:16] != b"IHDR":
        return False
    png_width, png_height = int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")
    bit_depth, colour_type = header[24], header[25]
    return (png_height, png_width, bit_depth, colour_type) == (height, width, 8, 0)


PNG_COMPRESSION = 1
"""zlib level 1: OpenCV's default encoding of our masks decodes about 4x slower, for 1/3 fewer bytes."""


def write_png(path: str, image: np.ndarray) -> None:
    """Write ``image`` (uint8 gray or BGR) as a PNG, atomically."""
    ok, encoded = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    if not ok:
        raise OSError(errno.EINVAL, "cannot encode the image as PNG", path)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(encoded.tobytes())
