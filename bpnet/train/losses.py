"""The bpnet loss (reference §3.9): masked L2 on every stage's heatmaps and PAFs.

Per stage ``s``: ``L_heat,s = ½ Σ ((pred − label) · mask · w)²`` over the batch (heatmaps include
the background channel) and the same for PAFs; the total is ``Σ_s (L_heat,s + L_paf,s) / batch``
plus the regularisation losses. ``w`` is 1, or the focal weight ``|1 − adj|^γ`` with
``adj = pred − α`` where ``label > bkg_thresh`` and ``1 − pred − β`` elsewhere.
The mask ``(B, h, w, 1)`` broadcasts over channels.
"""

from typing import Dict, List, Optional, Tuple

from keras import ops

from bpnet.specs import FocalLossParams


def masked_l2(prediction, label, mask, focal: Optional[FocalLossParams] = None):
    """``½ Σ ((prediction − label) · mask · w)²`` over all elements (a scalar)."""
    prediction = ops.cast(prediction, "float32")
    error = (prediction - label) * mask
    if focal is not None and focal.use_focal_loss:
        adjusted = ops.where(label > focal.bkg_thresh, prediction - focal.alpha, 1.0 - prediction - focal.beta)
        error = error * ops.power(ops.abs(1.0 - adjusted), focal.gamma)
    return 0.5 * ops.sum(ops.square(error))


def stage_losses(heatmaps: List, pafs: List, labels: Dict, focal: Optional[FocalLossParams] = None) -> Tuple[List, List]:
    """Per-stage (heatmap losses, PAF losses), each summed over the batch."""
    mask = labels["mask"]
    heat = [masked_l2(h, labels["heatmaps"], mask, focal) for h in heatmaps]
    paf = [masked_l2(p, labels["pafs"], mask, focal) for p in pafs]
    return heat, paf
