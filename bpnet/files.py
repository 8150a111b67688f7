"""Atomic file writing: outputs appear under their final name only when complete."""

import contextlib
import os
from typing import Iterator

import cv2
import numpy as np


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success, delete it on failure."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    stem, extension = os.path.splitext(os.path.basename(path))
    tmp = os.path.join(folder, f".{stem}.tmp-{os.getpid()}{extension}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


PNG_COMPRESSION = 1
"""zlib level 1: OpenCV's default encoding of our masks decodes about 4x slower, for 1/3 fewer bytes."""


def write_png(path: str, image: np.ndarray) -> None:
    """Write ``image`` (uint8 gray or BGR) as a PNG, atomically."""
    ok, encoded = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    if not ok:
        raise OSError(f"cannot encode {path} as PNG")
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(encoded.tobytes())
