"""Images and video frames read within a pixel budget, and sizes bounded where they enter.

* Every image is measured from its header (Pillow reads only the header) before OpenCV decodes it: an image
  of more than :func:`max_image_pixels` pixels (default :data:`DEFAULT_MAX_IMAGE_PIXELS`, 2^26 ≈ 67 MP;
  the environment variable ``BPNET_MAX_IMAGE_PIXELS`` changes it) is refused in one line, whatever its
  file size (a 389 KB PNG can declare 20000 × 20000 pixels, 1.2 GB decoded).
* A JPEG whose compressed data ends early decodes (OpenCV fills the missing rows) but is reported as
  partial: :class:`LoadedImage.partial` says how much of the file there was.
* Network input sizes from specs, flags and model metadata are bounded by :data:`MAX_NETWORK_INPUT_SIDE`
  (:func:`check_network_input_shape`).
"""

import dataclasses
import logging
import os
import warnings
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

from bpnet.errors import BpnetError

logger = logging.getLogger(__name__)

DEFAULT_MAX_IMAGE_PIXELS = 1 << 26
"""About 67 megapixels (8192 × 8192): 200 MB decoded as BGR."""
MAX_PIXELS_VARIABLE = "BPNET_MAX_IMAGE_PIXELS"
MAX_NETWORK_INPUT_SIDE = 4096
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
"""Files taken as images when a folder is given."""
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
"""Files taken as videos (inference input detection, unlabelled distillation sources)."""
"""The largest network input side a spec, a flag or a model's metadata may ask for (TLT's recipes use 368)."""


def max_image_pixels() -> int:
    """The pixel budget of one decoded image or video frame: ``BPNET_MAX_IMAGE_PIXELS`` or the default."""
    value = os.environ.get(MAX_PIXELS_VARIABLE)
    if value is None:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        budget = int(value)
    except ValueError:
        budget = 0
    if budget <= 0:
        raise BpnetError(f"{MAX_PIXELS_VARIABLE}={value!r}: must be a positive whole number of pixels")
    return budget


def check_pixels(width: int, height: int, source: str, what: str = "image") -> None:
    """Refuse an image or frame of ``width × height`` over the pixel budget, before anything is decoded."""
    budget = max_image_pixels()
    if width * height > budget:
        raise BpnetError(
            f"{source}: the {what} is {width}x{height} = {width * height} pixels, over the limit of {budget} "
            f"(set {MAX_PIXELS_VARIABLE} to allow more)"
        )


def _pillow_image(path: str):
    """The image file opened by Pillow, which reads its header only; a one-line error for a file that is no image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path)
    except Image.DecompressionBombError:  # over twice Pillow's own limit, which is above the default budget
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise BpnetError(
            f"{path}: the image has more than {limit} pixels, over the limit of {max_image_pixels()} (and over what Pillow reads)"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        if isinstance(exc, OSError) and not os.path.isfile(path):
            raise BpnetError(f"{path}: image not found") from None
        detail = "empty file" if os.path.isfile(path) and os.path.getsize(path) == 0 else "corrupt or not an image"
        raise BpnetError(f"{path}: cannot read image ({detail})") from None


def header_size(path: str) -> Tuple[int, int]:
    """``(width, height)`` of an image file from its header alone; a one-line error for a file that is no image."""
    with _pillow_image(path) as image:
        return image.size


def _jpeg_shortfall(image, path: str) -> Optional[str]:
    """How an opened JPEG's compressed data ends early, or None when it is complete (or not a JPEG). Decoding at
    1/8 scale (DC coefficients only) still reads every entropy-coded byte, in about a millisecond for a VGA photo."""
    if image.format != "JPEG":
        return None
    width, height = image.size
    image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
    try:
        image.load()
    except OSError:
        size = os.path.getsize(path)
        return f"truncated: the file ends after {size} bytes, inside its image data (the lower part is missing)"
    return None


@dataclasses.dataclass(frozen=True)
class LoadedImage:
    """A decoded BGR uint8 image ``(H, W, 3)``, and, when the file was cut short, what was missing."""

    image: np.ndarray
    partial: Optional[str] = None


def load_image(path: str) -> LoadedImage:
    """Decode ``path`` (EXIF orientation ignored, as the annotations) within the pixel budget; a one-line error
    for a missing, corrupt or oversized file; a partial JPEG is returned with :attr:`LoadedImage.partial`."""
    if not os.path.isfile(path):
        raise BpnetError(f"{path}: image not found")
    with _pillow_image(path) as header:
        width, height = header.size
        check_pixels(width, height, path)
        partial = _jpeg_shortfall(header, path)
    image = cv2.imread(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise BpnetError(f"{path}: cannot read image (corrupt or not an image)")
    return LoadedImage(image, partial)


def read_image(path: str) -> np.ndarray:
    """:func:`load_image`'s image; a partial one is logged as a warning."""
    loaded = load_image(path)
    if loaded.partial:
        logger.warning("%s: %s", path, loaded.partial)
    return loaded.image


def check_network_input_shape(shape: Sequence[int], source: str) -> Tuple[int, int]:
    """``(height, width)`` of a network input size from a spec, flag or metadata, each side in
    ``[1, MAX_NETWORK_INPUT_SIDE]``; a one-line error naming ``source`` otherwise."""
    values = list(shape)
    if len(values) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        raise BpnetError(f"{source}: expected two whole numbers H,W, got {values}")
    if not all(1 <= v <= MAX_NETWORK_INPUT_SIDE for v in values):
        raise BpnetError(f"{source}: {values[0]}x{values[1]}: each side must be between 1 and {MAX_NETWORK_INPUT_SIDE}")
    return int(values[0]), int(values[1])
