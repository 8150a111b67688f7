"""tf.distribute strategies for `bpnet train` and run seeding.

* ``TF_CONFIG`` set → ``MultiWorkerMirroredStrategy`` (one process per machine, see the README).
* ``--gpus N`` → ``MirroredStrategy`` over N GPUs (one GPU: ``OneDeviceStrategy``); more GPUs than are
  visible is an error, except ``--gpus 1`` (TLT's habitual flag) on a machine without a GPU, which trains
  on the CPU with a warning.
* ``--logical_cpus N`` → the CPU split into N logical devices under ``MirroredStrategy`` (for tests
  and debugging the distributed path without GPUs).
* nothing → every visible GPU (``MirroredStrategy`` when there are several), else the CPU.
"""

import logging
import os
import random
from typing import Optional

import numpy as np

from bpnet.errors import BpnetError

logger = logging.getLogger(__name__)


def make_strategy(gpus: Optional[int], logical_cpus: int = 0):
    import tensorflow as tf

    if "TF_CONFIG" in os.environ:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if logical_cpus:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * logical_cpus)
        except RuntimeError:
            pass  # already configured in this process
        devices = [d.name for d in tf.config.list_logical_devices("CPU")][:logical_cpus]
        if len(devices) < logical_cpus:
            raise BpnetError(f"--logical_cpus {logical_cpus}: TensorFlow was already initialised with {len(devices)}")
        return tf.distribute.MirroredStrategy(devices)
    available = tf.config.list_physical_devices("GPU")
    if gpus is None:
        if len(available) > 1:
            return tf.distribute.MirroredStrategy([f"/gpu:{i}" for i in range(len(available))])
        return tf.distribute.get_strategy()
    if gpus == 1 and not available:
        logger.warning("--gpus 1: no GPU is visible to TensorFlow; training on the CPU")
        return tf.distribute.get_strategy()
    if gpus > len(available):
        raise BpnetError(
            f"--gpus {gpus}: {len(available)} GPU(s) visible to TensorFlow"
            + ("; install a CUDA build of TensorFlow or run without --gpus" if not available else "")
        )
    if gpus <= 1:
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus == 1 else "/cpu:0")
    return tf.distribute.MirroredStrategy([f"/gpu:{i}" for i in range(gpus)])


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, numpy, TensorFlow and Keras (weight initialisation); optionally make TF ops deterministic."""
    import keras
    import tensorflow as tf

    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
