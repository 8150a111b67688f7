"""TLT's optimiser and learning-rate schedules in Keras 3 (reference §2.7, §2.8, §3.10, §3.11).

* :class:`WeightedMomentumOptimizer`: TF1 momentum (``acc ← m·acc + w·g; var ← var − lr·acc``,
  Nesterov: ``var ← var − lr·(w·g + m·acc)``) with a fixed gradient weight ``w`` per variable.
* :func:`stagewise_lr_multipliers`: OpenPose's multipliers (refinement stages ×4, biases ×2).
* :class:`SoftstartAnnealingSchedule`, :class:`ExponentialDecaySchedule`: TLT's formulas.
"""

import math
import re
from typing import Dict, Mapping, Optional

import keras
from keras import ops

STAGEWISE_RULES = ((r"^stage1_", 1.0), (r"^stage\d+_", 4.0), (r".*out$", 4.0))
"""(layer-name pattern, kernel multiplier), first match wins; anything else ×1; biases twice their kernel."""


def stagewise_lr_multipliers(model: keras.Model) -> Dict[str, float]:
    """Variable path (``stage2_conv1/kernel``) → gradient multiplier for every Conv2D of ``model``."""
    multipliers = {}
    for layer in model.layers:
        if not isinstance(layer, keras.layers.Conv2D):
            continue
        kernel = next((m for pattern, m in STAGEWISE_RULES if re.match(pattern, layer.name)), 1.0)
        multipliers[layer.kernel.path] = kernel
        if layer.bias is not None:
            multipliers[layer.bias.path] = 2.0 * kernel
    return multipliers


@keras.saving.register_keras_serializable(package="bpnet")
class WeightedMomentumOptimizer(keras.optimizers.Optimizer):
    """Momentum SGD with TF1's update rule and per-variable gradient weights (``grad_weights``)."""

    def __init__(
        self,
        learning_rate=0.01,
        momentum: float = 0.9,
        nesterov: bool = False,
        grad_weights: Optional[Mapping[str, float]] = None,
        default_weight: float = 1.0,
        name: str = "WeightedMomentumOptimizer",
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.momentum = momentum
        self.nesterov = nesterov
        self.grad_weights = dict(grad_weights or {})
        self.default_weight = default_weight

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self.accumulators = [self.add_variable_from_reference(v, "accumulator") for v in var_list]
        self.weights_by_index = [self.grad_weights.get(v.path, self.default_weight) for v in var_list]

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        accumulator = self.accumulators[index]
        lr = ops.cast(learning_rate, variable.dtype)
        weighted = ops.multiply(ops.cast(gradient, variable.dtype), self.weights_by_index[index])
        self.assign(accumulator, ops.add(ops.multiply(accumulator, self.momentum), weighted))
        if self.nesterov:
            self.assign_sub(variable, ops.multiply(lr, ops.add(weighted, ops.multiply(accumulator, self.momentum))))
        else:
            self.assign_sub(variable, ops.multiply(lr, accumulator))

    def get_config(self):
        config = super().get_config()
        config.update(
            momentum=self.momentum, nesterov=self.nesterov, grad_weights=self.grad_weights, default_weight=self.default_weight
        )
        return config


@keras.saving.register_keras_serializable(package="bpnet")
class SoftstartAnnealingSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """``lr = min · (base / min)^t``: ``t`` ramps 0→1 over ``soft_start·last_step``, 1→0 after ``annealing``."""

    def __init__(self, base_learning_rate: float, min_learning_rate: float, soft_start: float, annealing: float, last_step: int):
        self.base_learning_rate = base_learning_rate
        self.min_learning_rate = min_learning_rate
        self.soft_start = soft_start
        self.annealing = annealing
        self.last_step = last_step

    def __call__(self, step):
        progress = ops.clip(ops.cast(step, "float32") / float(self.last_step), 0.0, 1.0)
        ramp_up = progress / self.soft_start if self.soft_start > 0 else ops.ones_like(progress)
        ramp_down = (1.0 - progress) / (1.0 - self.annealing) if self.annealing < 1 else ops.ones_like(progress)
        t = ops.where(progress < self.soft_start, ramp_up, ops.where(progress > self.annealing, ramp_down, 1.0))
        log_min, log_base = math.log(self.min_learning_rate), math.log(self.base_learning_rate)
        return ops.exp(log_min + t * (log_base - log_min))

    def get_config(self):
        return {
            "base_learning_rate": self.base_learning_rate,
            "min_learning_rate": self.min_learning_rate,
            "soft_start": self.soft_start,
            "annealing": self.annealing,
            "last_step": self.last_step,
        }


@keras.saving.register_keras_serializable(package="bpnet")
class ExponentialDecaySchedule(keras.optimizers.schedules.LearningRateSchedule):
    """``lr = max(learning_rate · decay_rate^(step / decay_steps), min_learning_rate)`` (floored if staircase)."""

    def __init__(
        self, learning_rate: float, decay_steps: int, decay_rate: float, staircase: bool = False, min_learning_rate: float = 0.0
    ):
        self.learning_rate = learning_rate
        self.decay_steps = decay_steps
        self.decay_rate = decay_rate
        self.staircase = staircase
        self.min_learning_rate = min_learning_rate

    def __call__(self, step):
        exponent = ops.cast(step, "float32") / float(self.decay_steps)
        if self.staircase:
            exponent = ops.floor(exponent)
        return ops.maximum(self.learning_rate * ops.power(self.decay_rate, exponent), self.min_learning_rate)

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
            "staircase": self.staircase,
            "min_learning_rate": self.min_learning_rate,
        }
