"""Loss masks (reference §3.2): 1 where the loss counts, 0 on people the targets cannot describe.

``mask_out = (crowd AND NOT labeled) OR unlabeled`` where ``crowd`` is the union of ``iscrowd``
regions, ``labeled`` the union of people with keypoints and ``unlabeled`` the union of non-crowd
people without keypoints; the saved mask is ``NOT mask_out`` as a uint8 PNG of 0/255 (lossless,
unlike TLT's JPEG).
"""

from typing import Any, Iterable, Tuple

import numpy as np
from pycocotools import mask as mask_utils

MASK_KEEP = 255
"""Pixel value of the saved mask where the loss counts (TLT's ``mask_scale`` 255 maps it to 1)."""


def segmentation_to_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """Decode COCO polygons, uncompressed RLE or RLE into an ``(H, W)`` bool mask (pycocotools)."""
    if not segmentation:
        return np.zeros((height, width), dtype=bool)
    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return mask_utils.decode(rle).astype(bool)


def loss_mask(people: Iterable[Tuple[Any, bool, int]], height: int, width: int) -> np.ndarray:
    """The ``(H, W)`` uint8 loss mask (0 or 255) from ``(segmentation, iscrowd, num_keypoints)`` triples."""
    crowd = np.zeros((height, width), dtype=bool)
    labeled = np.zeros_like(crowd)
    unlabeled = np.zeros_like(crowd)
    for segmentation, iscrowd, num_keypoints in people:
        region = segmentation_to_mask(segmentation, height, width)
        if iscrowd:
            crowd |= region
        elif num_keypoints > 0:
            labeled |= region
        else:
            unlabeled |= region
    mask_out = (crowd & ~labeled) | unlabeled
    return np.where(mask_out, 0, MASK_KEEP).astype(np.uint8)
