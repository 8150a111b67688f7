"""Bicubic resizing of multi-channel maps (OpenCV resizes at most 128 channels per call)."""

from typing import Tuple

import cv2
import numpy as np

_MAX_CHANNELS = 128


def resize_maps(maps: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """``maps (H, W, C)`` → ``(height, width, C)`` for ``size = (width, height)``, bicubic, any ``C``."""
    width, height = size
    chunks = []
    for first in range(0, maps.shape[-1], _MAX_CHANNELS):
        chunk = cv2.resize(
            np.ascontiguousarray(maps[..., first : first + _MAX_CHANNELS]), (width, height), interpolation=cv2.INTER_CUBIC
        )
        chunks.append(chunk.reshape(height, width, -1))
    return np.concatenate(chunks, axis=-1) if len(chunks) > 1 else chunks[0]
