"""Initial weights for training: pretrained files by layer name, ImageNet VGG19, pruned graphs (§2.1, §3.12)."""

import logging
import os
from typing import Dict, List

import numpy as np

from bpnet.errors import BpnetError
from bpnet.model.io import assign_by_name, load_model, read_layer_weights

logger = logging.getLogger(__name__)

VGG19_NOTOP_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
VGG19_NOTOP_URL = "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/" + VGG19_NOTOP_FILE
VGG19_TO_BPNET = {
    f"block{block}_conv{i + 1}": f"block_{block}{'abcd'[i]}_conv_1"
    for block, count in ((1, 2), (2, 2), (3, 4), (4, 2))
    for i in range(count)
}
"""Keras VGG19 layer → bpnet backbone layer (VGG19 conv1_1 … conv4_2)."""


def _is_vgg19(weights: Dict[str, List[np.ndarray]]) -> bool:
    return "block1_conv1" in weights and "block_1a_conv_1" not in weights


def _vgg19_file() -> str:
    """The Keras VGG19 no-top weights: from the Keras cache, else downloaded; one clear error offline."""
    import keras

    cached = os.path.join(os.path.expanduser(os.environ.get("KERAS_HOME", "~/.keras")), "models", VGG19_NOTOP_FILE)
    if os.path.isfile(cached):
        return cached
    try:
        return keras.utils.get_file(VGG19_NOTOP_FILE, VGG19_NOTOP_URL, cache_subdir="models")
    except Exception as exc:  # urllib/HTTP errors differ by platform
        raise BpnetError(
            f"pretrained_weights: imagenet: cannot download {VGG19_NOTOP_FILE} ({str(exc).splitlines()[0]}); "
            f"offline, download it elsewhere and set pretrained_weights to its path"
        ) from None


def map_vgg19(weights: Dict[str, List[np.ndarray]], use_bias: bool) -> Dict[str, List[np.ndarray]]:
    """Keras VGG19 weights renamed onto the backbone; biases dropped when the backbone has none."""
    return {
        ours: weights[theirs] if use_bias else weights[theirs][:1] for theirs, ours in VGG19_TO_BPNET.items() if theirs in weights
    }


def load_pretrained(model, source: str, backbone_use_bias: bool) -> None:
    """Load ``source`` (``imagenet``, a VGG19 ``.h5``, or a bpnet/TLT model) by layer name; log what loaded."""
    path = _vgg19_file() if source == "imagenet" else source
    weights = read_layer_weights(path)
    if _is_vgg19(weights):
        weights = map_vgg19(weights, backbone_use_bias)
    loaded, skipped = assign_by_name(model, weights)
    if not loaded:
        raise BpnetError(f"{path}: pretrained_weights has no layer whose name and shapes match the model")
    logger.info(
        "Pretrained weights %s: %d layers loaded, %d skipped for shape mismatch%s",
        path,
        len(loaded),
        len(skipped),
        f" ({', '.join(skipped)})" if skipped else "",
    )


def load_graph_without_regularizers(path: str, sync_batch_norm: bool = False):
    """A whole (for example pruned) model, its regularisers removed (TLT's ``load_graph: True``).

    ``sync_batch_norm`` sets every batch norm's ``synchronized`` flag (multi-device training).
    """
    import keras

    model, info = load_model(path)
    config = model.get_config()
    for layer in config["layers"]:
        for key in ("kernel_regularizer", "bias_regularizer"):
            if key in layer["config"]:
                layer["config"][key] = None
        if layer["class_name"] == "BatchNormalization":
            layer["config"]["synchronized"] = sync_batch_norm
    stripped = keras.Model.from_config(config)
    stripped.set_weights(model.get_weights())
    logger.info("Loaded the whole graph of %s (regularisers removed)", path)
    return stripped, info
