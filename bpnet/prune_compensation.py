"""What ``bpnet prune --calibration_images`` does with the images (bpnet addition; TLT has none): the calibration
batch, per-channel activation statistics (the filter ranking), mean compensation and least-squares refitting.

Mean compensation. A removed channel does not carry zero: after a convolution with a bias (batch norms folded in, as in every
imported network) and an activation, it carries a signal whose mean is often far from zero, and removing it
shifts every layer that read it. With calibration images, each ``Conv2D`` that loses input channels gets their
average contribution back in its bias::

    b'[o] = b[o] + Σ_removed c  mean(x_c) · Σ_(i,j) W[i, j, c, o]

with ``mean(x_c)`` the average of input channel ``c`` over the calibration images and all positions, measured in
the original model (exact for a channel that is constant, and for a 1×1 convolution in expectation). A convolution
without a bias that feeds a batch norm gets it through the batch norm's moving mean instead (``μ' = μ − Δ``).

Refitting (:func:`reconstruct`) then goes further for 1×1 convolutions with a bias: their weights are refitted
so that they reproduce the original's outputs from what the pruned network gives them.
"""

import logging
import os
import tempfile
from typing import Dict, List, Sequence, Set, Tuple

import numpy as np

from bpnet.images import read_image
from bpnet.model.io import ModelInfo

logger = logging.getLogger(__name__)

MAX_CALIBRATION_IMAGES = 64


def calibration_batch(
    sources: Sequence[str], info: ModelInfo, input_size: Tuple[int, int], limit: int = MAX_CALIBRATION_IMAGES
) -> np.ndarray:
    """``(N, H, W, 3)`` network inputs (the model's channel order and normalisation, letterboxed to ``input_size``)
    of at most ``limit`` images taken evenly from folders, image files and videos (every 10th frame)."""
    from bpnet.infer.predict import preprocess
    from bpnet.train.distill import unlabeled_image_files

    with tempfile.TemporaryDirectory(prefix="bpnet-calibration-") as frames:
        files = unlabeled_image_files(sources, frames, 10, "--calibration_images")
        chosen = [files[i] for i in np.linspace(0, len(files) - 1, min(limit, len(files))).round().astype(int)]
        inputs = [preprocess(read_image(path), input_size, "pad_image_input", info)[0] for path in chosen]
    logger.info("Calibrating with %d images from %s", len(inputs), ", ".join(map(os.path.basename, sources)))
    return np.stack(inputs)


def channel_statistics(model, names: Sequence[str], batch: np.ndarray) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """Layer name → ``(mean, std)``, each ``(channels,)``, of the layer's output over ``batch`` (all images and
    positions)."""
    import keras

    names = sorted(set(names))
    probe = keras.Model(model.inputs[0], [model.get_layer(name).output for name in names])
    sums = [np.zeros(model.get_layer(name).output.shape[-1]) for name in names]
    squares = [np.zeros_like(total) for total in sums]
    for image in batch:
        outputs = probe(image[None], training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        for total, square, output in zip(sums, squares, outputs):
            values = np.asarray(output, np.float64).reshape(-1, output.shape[-1])
            total += values.mean(axis=0)
            square += np.square(values).mean(axis=0)
    statistics = {}
    for name, total, square in zip(names, sums, squares):
        mean = total / len(batch)
        statistics[name] = (mean, np.sqrt(np.maximum(square / len(batch) - np.square(mean), 0.0)))
    return statistics


def compensate(
    original,
    pruned,
    kept_filters: Dict[str, np.ndarray],
    removed_inputs: Dict[str, np.ndarray],
    next_norm: Dict[str, str],
    means: Dict[str, np.ndarray],
) -> int:
    """Fold the mean of each convolution's removed input channels into its bias (or the following batch norm's
    moving mean); returns how many convolutions were compensated."""
    done = 0
    for name, removed in removed_inputs.items():
        kernel = np.asarray(original.get_layer(name).kernel, np.float64)
        delta = np.einsum("c,ijco->o", means[name][removed], kernel[:, :, removed, :])[kept_filters[name]]
        layer = pruned.get_layer(name)
        if layer.use_bias:
            weights = layer.get_weights()
            weights[1] = (weights[1] + delta).astype(weights[1].dtype)
            layer.set_weights(weights)
        elif name in next_norm:
            norm = pruned.get_layer(next_norm[name])
            gamma, beta, moving_mean, moving_variance = norm.get_weights()
            norm.set_weights([gamma, beta, (moving_mean - delta).astype(moving_mean.dtype), moving_variance])
        else:
            logger.debug("%s: no bias or batch norm to compensate in", name)
            continue
        done += 1
    return done


RIDGE = 1e-2
"""Ridge of the reconstruction, relative to each kept input's variance (so it does not depend on the inputs'
scales): the fit is pulled towards the pruned layer's own (sliced) weights, which keeps it well-conditioned and
close to what the network learned."""


def reconstructable(layer) -> bool:
    """A 1×1, stride-1, ungrouped ``Conv2D`` with a bias: its output is linear in each pixel's input channels."""
    return (
        type(layer).__name__ == "Conv2D"
        and tuple(layer.kernel_size) == (1, 1)
        and tuple(layer.strides) == (1, 1)
        and getattr(layer, "groups", 1) == 1
        and bool(layer.use_bias)
    )


def reconstruct(
    original,
    pruned,
    order: Sequence[str],
    inputs: Dict[str, List[str]],
    refit: Set[str],
    kept_filters: Dict[str, np.ndarray],
    batch: np.ndarray,
) -> Dict[str, float]:
    """Refit the weights of the pruned 1×1 convolutions named in ``refit`` so that, fed what the pruned model gives
    them, they reproduce the original model's outputs (their kept filters) on ``batch`` (``(N, H, W, 3)`` model
    inputs), in the least-squares sense with ridge :data:`RIDGE`: one linear regression per convolution over every
    image and position::

        [W'; b'] = argmin Σ_pixels ‖x'ᵀ W' + b' − (xᵀ W + b)[kept filters]‖² + λ Σ_c var(x'_c) ‖W'_c − W_c‖²

    Sequential: both models run layer by layer (``order``, each layer reading ``inputs[layer]``) over the whole
    batch, and a convolution is refitted just before the pruned model applies it, so that it sees the refitted
    earlier layers, and later layers see it. Costs one forward pass of each model; holds the activations still
    needed by a later layer. Returns convolution → relative error ``‖ŷ − y‖ / ‖y − ȳ‖`` of its fit."""
    import tensorflow as tf

    remaining = {name: 0 for name in order}
    for name in order:
        for source in inputs[name]:
            remaining[source] += 1
    wanted: Dict[str, object] = {}
    given: Dict[str, object] = {}
    errors = {}
    for name in order:
        sources = inputs[name]
        if not sources:
            wanted[name] = given[name] = tf.constant(batch, tf.float32)
            continue
        target = _apply(original.get_layer(name), [wanted[s] for s in sources])
        if name in refit:
            errors[name] = _refit(pruned.get_layer(name), given[sources[0]], target, kept_filters[name])
        wanted[name] = target
        given[name] = _apply(pruned.get_layer(name), [given[s] for s in sources])
        for source in sources:
            remaining[source] -= 1
            if remaining[source] == 0:
                del wanted[source], given[source]
    return errors


def _apply(layer, arguments: list):
    return layer(arguments if len(arguments) > 1 else arguments[0], training=False)


def _refit(layer, given, target, kept: np.ndarray) -> float:
    """Least-squares fit of a 1×1 convolution from ``given`` (pruned inputs) to ``target[..., kept]``, on centred
    data (the bias takes the means), its kernel pulled towards the layer's current one; the fit's relative error."""
    x = np.asarray(given, np.float32).reshape(-1, given.shape[-1])
    y = np.asarray(target, np.float32).reshape(-1, target.shape[-1])[:, kept]
    x_mean, y_mean = x.mean(axis=0, dtype=np.float64), y.mean(axis=0, dtype=np.float64)
    x_centred, y_centred = x - x_mean.astype(np.float32), y - y_mean.astype(np.float32)
    covariance = (x_centred.T @ x_centred).astype(np.float64)
    cross = (x_centred.T @ y_centred).astype(np.float64)
    old_kernel, old_bias = layer.get_weights()
    ridge = np.diag(RIDGE * np.maximum(np.diag(covariance), 1e-12 * max(float(np.max(np.diag(covariance))), 1e-30)))
    start = old_kernel.reshape(covariance.shape[0], -1).astype(np.float64)
    kernel = np.linalg.solve(covariance + ridge, cross + ridge @ start)
    bias = y_mean - x_mean @ kernel
    layer.set_weights([kernel.reshape(old_kernel.shape).astype(old_kernel.dtype), bias.astype(old_bias.dtype)])
    residual = y_centred - x_centred @ kernel.astype(np.float32)
    return float(np.sqrt(np.sum(np.square(residual)) / max(float(np.sum(np.square(y_centred))), 1e-12)))
