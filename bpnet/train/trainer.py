"""``bpnet train``: the training loop with checkpoints, exact resume, TensorBoard, validation, distribution.

Results directory (``-r`` or the spec's ``checkpoint_dir``)::

    experiment_spec.yaml            the resolved train spec
    status.json                     TAO-style status lines (STARTED, RUNNING per epoch, SUCCESS/FAILURE)
    checkpoints/epoch-0005/         model + optimizer state (tf.train.Checkpoint), renamed into place when complete
    model.epoch-0005.keras          the model at each checkpoint, with its skeleton and normalisation (re-created
                                    from the checkpoint on resume if a kill interrupted its saving)
    events/                         TensorBoard: total_loss, learning_rate, cmap_loss_stage{i}, paf_loss_stage{i}, val_loss
    bpnet_model.keras               the final model (``final_model_name``)

Rerunning the same command resumes from the newest checkpoint: same step, epoch, learning rate and
(because the input pipeline skips the consumed samples of its seeded stream) the same batches.
"""

import dataclasses
import logging
import math
import os
import re
import shutil
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from tqdm import tqdm

from bpnet import spec_loader
from bpnet.data.pipeline import SampleMaker, build_dataset, dataset_mappings
from bpnet.data.records import count_records
from bpnet.errors import BpnetError
from bpnet.files import current_umask, remove_stale_temporaries, temporary_prefix
from bpnet.infer.backends import KerasBackend
from bpnet.infer.evaluate import validation_ap
from bpnet.infer.predict import Predictor, PredictorSettings
from bpnet.model.build import build_model, stage_outputs
from bpnet.model.io import (
    ModelInfo,
    assign_by_name,
    keras_variable_path,
    model_extras,
    read_info,
    read_layer_weights,
    save_model,
    train_spec_info,
)
from bpnet.model.remap import remap_heads
from bpnet.skeleton import Skeleton, check_channel_counts
from bpnet.specs import AdamOptimizerSpec, TrainSpec, spec_object, spec_source
from bpnet.specs import SoftstartAnnealingSchedule as SoftstartSpec
from bpnet.status import StatusLogger, task_status
from bpnet.train import distribution
from bpnet.train.distill import Teacher, distillation_losses, load_teacher, resolve_unlabeled, unlabeled_dataset, with_unlabeled
from bpnet.train.freeze import freeze
from bpnet.train.history import TrainingHistory, stage_columns
from bpnet.train.losses import stage_losses
from bpnet.train.optim import (
    ExponentialDecaySchedule,
    SoftstartAnnealingSchedule,
    WeightedMomentumOptimizer,
    stagewise_lr_multipliers,
)
from bpnet.train.weights import load_graph_without_regularizers, load_pretrained

logger = logging.getLogger(__name__)

VALIDATION_AP_IMAGES = 200
"""Images of the test split the validation AP is measured on (the first by id): enough for a trend."""

CHECKPOINT_PATTERN = re.compile(r"^epoch-(\d{4,})$")


@dataclasses.dataclass
class TrainResult:
    results_dir: str
    final_model: str
    epochs: int
    steps: int
    epoch_losses: List[float]
    val_losses: List[float]
    resumed_from_epoch: int
    nothing_to_do: bool = False  # a rerun of a finished training (num_epoch not raised)


def finetune_checkpoint(path: Optional[str], epoch: int) -> str:
    """What ``finetuning_config`` names: a model file (``.keras``/``.h5``), a checkpoint prefix
    (``checkpoints/epoch-0005/ckpt``), a checkpoint folder (``checkpoints/epoch-0005``), or a results folder
    or its ``checkpoints/`` folder, whose checkpoint of epoch ``ckpt_epoch_num`` (0: the newest) is used."""
    field = "finetuning_config.checkpoint_path"
    if not path:
        raise BpnetError(f"finetuning_config.is_finetune_exp needs {field}")
    if os.path.isfile(path):
        return path
    if os.path.isfile(path + ".index"):
        return path
    if os.path.isfile(os.path.join(path, "ckpt.index")):
        return os.path.join(path, "ckpt")
    root = os.path.join(path, "checkpoints") if os.path.isdir(os.path.join(path, "checkpoints")) else path
    chosen = epoch or latest_checkpoint_epoch(root)
    prefix = os.path.join(root, f"epoch-{chosen:04d}", "ckpt")
    if not chosen or not os.path.isfile(prefix + ".index"):
        raise BpnetError(
            f"{path}: no checkpoint{f' of epoch {epoch}' if epoch else ''} found ({field}, finetuning_config.ckpt_epoch_num)"
        )
    return prefix


def latest_checkpoint_epoch(checkpoint_root: str) -> int:
    """The newest complete checkpoint's epoch (0 if none)."""
    if not os.path.isdir(checkpoint_root):
        return 0
    epochs = [int(m.group(1)) for m in map(CHECKPOINT_PATTERN.match, os.listdir(checkpoint_root)) if m]
    return max(epochs, default=0)


def make_train_step(
    model,
    optimizer,
    strategy,
    global_batch: int,
    focal=None,
    use_amp: bool = False,
    teacher: Optional[Teacher] = None,
    unlabeled_global_batch: int = 0,
):
    """A ``tf.function`` running one distributed step; returns (loss, heat losses, PAF losses, distillation loss)
    summed over replicas.

    Each replica divides its summed stage losses by the *global* labelled batch, its distillation loss (with a
    ``teacher``; :mod:`bpnet.train.distill`) by the global batch of labelled plus unlabelled images, and its
    regularisation by the replica count, so the summed gradients equal one device's on the whole batch.
    """
    import tensorflow as tf

    replicas = float(strategy.num_replicas_in_sync)
    distilled_batch = float(global_batch + unlabeled_global_batch)

    def replica_step(images, labels):
        with tf.GradientTape() as tape:
            heats, pafs = stage_outputs(model(images, training=True))
            heat_losses, paf_losses = stage_losses(heats, pafs, labels, focal)
            data_loss = (tf.add_n(heat_losses) + tf.add_n(paf_losses)) / float(global_batch)
            distillation = 0.0
            if teacher is not None:
                teacher_heats, teacher_pafs = teacher.targets(images, len(heats))
                distillation = teacher.weight * tf.add_n(distillation_losses(heats, pafs, teacher_heats, teacher_pafs))
                distillation = distillation / distilled_batch
            regularization = tf.add_n(model.losses) / replicas if model.losses else 0.0
            loss = data_loss + distillation + regularization
            scaled = optimizer.scale_loss(loss) if use_amp else loss
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return (
            loss,
            tf.stack(heat_losses) / float(global_batch),
            tf.stack(paf_losses) / float(global_batch),
            tf.convert_to_tensor(distillation, tf.float32),
        )

    @tf.function
    def train_step(images, labels):
        results = strategy.run(replica_step, args=(images, labels))
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, r, axis=None) for r in results]

    return train_step


class Trainer:
    """Builds everything from a resolved train spec and runs (or resumes) training."""

    def __init__(
        self,
        spec: TrainSpec,
        results_dir: str,
        strategy,
        use_amp: bool = False,
        progress: bool = True,
        spec_source: str = "train spec",
    ):
        import tensorflow as tf

        self.tf = tf
        self.spec = spec
        self.results_dir = results_dir
        self.strategy = strategy
        self.use_amp = use_amp
        self.progress = progress
        self.replicas = strategy.num_replicas_in_sync
        self.skeleton = Skeleton.from_file(spec.dataloader.pose_config.pose_config_path)
        try:
            check_channel_counts(self.skeleton, spec.model.heat_channels, spec.model.paf_channels)
        except ValueError as exc:
            raise BpnetError(f"{spec_source}: model.{exc}") from None
        self.info = train_spec_info(spec, self.skeleton)
        self.extras: Dict[str, Any] = {}
        self.dataloader = spec.dataloader
        self.pretrained_info = self._follow_the_pretrained_graph() if spec.load_graph else None
        self.mappings = dataset_mappings(spec.dataloader, self.skeleton)  # read once, for every pass
        self.global_batch = spec.dataloader.batch_size * self.replicas
        train_files = spec.dataloader.dataset_config.train_record_files
        for path in train_files:
            if not os.path.isfile(path):
                raise BpnetError(f"{path}: TFRecord file not found (dataset_config.train_records_path)")
        self.num_records = count_records(train_files)
        self.steps_per_epoch = self.num_records // self.global_batch
        if self.steps_per_epoch == 0:
            raise BpnetError(
                f"{train_files[0]}: {self.num_records} records are fewer than one global batch "
                f"({self.global_batch}); lower dataloader.batch_size"
            )
        self.total_steps = spec.num_epoch * self.steps_per_epoch
        self.unlabeled_files = resolve_unlabeled(spec.distillation, results_dir)
        unlabeled_batch = 0
        if spec.distillation is not None and self.unlabeled_files:
            unlabeled_batch = spec.distillation.unlabeled_batch_size or spec.dataloader.batch_size
        self.unlabeled_global_batch = unlabeled_batch * self.replicas
        self.checkpoint_root = os.path.join(results_dir, "checkpoints")
        self.status = StatusLogger(os.path.join(results_dir, "status.json"))

    # ------------------------------------------------------------------ construction

    def _follow_the_pretrained_graph(self) -> Optional[ModelInfo]:
        """With ``load_graph``, a model that carries bpnet metadata (an imported network, a bpnet model) sets what
        the dataloader feeds it: its normalisation and channel order, which its weights expect, in place of the
        spec's; its stride must be the spec's. Returns that metadata (None for a model without it)."""
        path = self.spec.pretrained_weights
        if not path or not os.path.isfile(path):
            return None
        loaded = read_info(path)
        if loaded is None:
            return None
        if loaded.stride != self.dataloader.stride:
            raise BpnetError(
                f"{path}: the model's output stride is {loaded.stride} but the spec's image_dims and target_shape "
                f"make {self.dataloader.stride} (dataloader.pose_config.target_shape)"
            )
        norm = self.dataloader.normalization_params
        if (tuple(norm.image_scale), tuple(norm.image_offset)) != (loaded.image_scale, loaded.image_offset) or (
            loaded.channel_order != "RGB"
        ):
            logger.info(
                "%s: the dataloader feeds the model as it expects: %s, x / %s - %s (the spec's normalization_params "
                "are replaced)",
                path,
                loaded.channel_order,
                list(loaded.image_scale),
                list(loaded.image_offset),
            )
        self.dataloader = dataclasses.replace(
            self.dataloader,
            normalization_params=dataclasses.replace(norm, image_scale=loaded.image_scale, image_offset=loaded.image_offset),
        )
        self.info = dataclasses.replace(loaded, skeleton=self.skeleton, input_layout="NHWC")
        self.extras = model_extras(path)
        return loaded

    def learning_rate_schedule(self):
        schedule = self.spec.optimizer.learning_rate_schedule
        if isinstance(schedule, SoftstartSpec):
            return SoftstartAnnealingSchedule(
                schedule.base_learning_rate, schedule.min_learning_rate, schedule.soft_start, schedule.annealing, self.total_steps
            )
        decay_steps = schedule.decay_steps or max(1, int(round(schedule.decay_epochs * self.steps_per_epoch)))
        return ExponentialDecaySchedule(
            schedule.learning_rate, decay_steps, schedule.decay_rate, schedule.staircase, schedule.min_learning_rate
        )

    def build_model(self):
        model = self._model()
        freeze(model, self.spec.model.freeze_blocks, self.spec.model.freeze_bn)
        return model

    def _model(self):
        spec = self.spec
        if spec.load_graph:
            if not spec.pretrained_weights:
                raise BpnetError("load_graph: True needs pretrained_weights (the model to load)")
            model, _ = load_graph_without_regularizers(spec.pretrained_weights, sync_batch_norm=self.replicas > 1)
            source = self.pretrained_info.skeleton if self.pretrained_info is not None else self.skeleton
            if (source.keypoints, source.limbs) != (self.skeleton.keypoints, self.skeleton.limbs):
                model, mapping = remap_heads(model, source, self.skeleton, spec.random_seed)
                logger.info("Heads rebuilt for the skeleton %s: %s", self.skeleton.name, mapping.line())
            return model
        return build_model(spec.model, self.skeleton, sync_batch_norm=self.replicas > 1)

    def build_optimizer(self, model):
        spec = self.spec.optimizer
        if isinstance(spec, AdamOptimizerSpec):
            import keras

            optimizer = keras.optimizers.Adam(self.learning_rate_schedule(), spec.beta_1, spec.beta_2, spec.epsilon)
            return keras.optimizers.LossScaleOptimizer(optimizer) if self.use_amp else optimizer
        weights = stagewise_lr_multipliers(model) if self.spec.use_stagewise_lr_multipliers else {}
        weights.update({keras_variable_path(k): v for k, v in (spec.grad_weights_dict or {}).items()})
        optimizer = WeightedMomentumOptimizer(
            self.learning_rate_schedule(), spec.momentum, spec.use_nesterov, weights, spec.weight_default_value
        )
        if self.use_amp:
            import keras

            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        return optimizer

    # ------------------------------------------------------------------ steps

    def _train_step_fn(self, model, optimizer, teacher: Optional[Teacher]):
        return make_train_step(
            model,
            optimizer,
            self.strategy,
            self.global_batch,
            self.spec.loss.focal_loss_params,
            self.use_amp,
            teacher,
            self.unlabeled_global_batch,
        )

    def _training_dataset(self, step: int):
        """Labelled batches from ``step`` on, each followed by its unlabelled batch when distilling with unlabelled images."""
        dataset = build_dataset(
            self.spec, batch_size=self.global_batch, skip=step * self.global_batch, maker=self._sample_maker(training=True)
        )
        if not self.unlabeled_files:
            return dataset
        unlabeled = unlabeled_dataset(
            self._sample_maker(training=True),
            self.unlabeled_files,
            self.unlabeled_global_batch,
            self.spec.random_seed,
            skip=step * self.unlabeled_global_batch,
        )
        return with_unlabeled(dataset, unlabeled)

    def _sample_maker(self, training: bool) -> SampleMaker:
        """The record → sample step of the spec's pipeline, with the skeleton and dataset mappings read once."""
        return SampleMaker(
            self.dataloader, self.skeleton, self.mappings, self.spec.random_seed, training, self.info.channel_order
        )

    def validation_loss(self, model) -> Optional[float]:
        """Mean data loss per image over the validation records (None if there are none)."""
        files = [f for f in self.spec.dataloader.dataset_config.val_record_files if os.path.isfile(f)]
        if not files:
            return None
        total, images = 0.0, 0
        batches = iter(build_dataset(self.spec, files, training=False, maker=self._sample_maker(training=False)))
        while (batch := next_batch(batches, default=None)) is not None:
            batch_images, labels = batch
            heats, pafs = stage_outputs(model(batch_images, training=False))
            heat_losses, paf_losses = stage_losses(heats, pafs, labels, self.spec.loss.focal_loss_params)
            total += float(sum(heat_losses) + sum(paf_losses))
            images += int(batch_images.shape[0])
        return total / max(images, 1)

    # ------------------------------------------------------------------ checkpoints

    @property
    def final_model_path(self) -> str:
        return os.path.join(self.results_dir, f"{self.spec.final_model_name}.keras")

    def epoch_model_path(self, epoch: int) -> str:
        return os.path.join(self.results_dir, f"model.epoch-{epoch:04d}.keras")

    def save_checkpoint(self, checkpoint, model, epoch: int) -> None:
        final = os.path.join(self.checkpoint_root, f"epoch-{epoch:04d}")
        tmp = tempfile.mkdtemp(prefix=temporary_prefix(f"epoch-{epoch:04d}"), dir=self.checkpoint_root)
        try:
            checkpoint.write(os.path.join(tmp, "ckpt"))
            os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp made it 0700
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        save_model(model, self.epoch_model_path(epoch), self.info, self.extras)
        kept = sorted(int(m.group(1)) for m in map(CHECKPOINT_PATTERN.match, os.listdir(self.checkpoint_root)) if m)
        for old in kept[: -self.spec.max_ckpt_to_keep]:
            shutil.rmtree(os.path.join(self.checkpoint_root, f"epoch-{old:04d}"), ignore_errors=True)

    # ------------------------------------------------------------------ run

    def run(self) -> TrainResult:
        """Train from the newest checkpoint (writing ``STARTED``, and ``FAILURE`` if anything escapes)."""
        start_epoch = latest_checkpoint_epoch(self.checkpoint_root)
        final = self.final_model_path
        if start_epoch >= self.spec.num_epoch and os.path.isfile(final):
            message = f"already trained to epoch {start_epoch}; nothing to do (raise num_epoch to train further)"
            logger.info("%s: %s", self.results_dir, message)
            self.status.write("SUCCESS", message.capitalize() + ".", kpi={"epochs": start_epoch})
            return TrainResult(
                self.results_dir, final, start_epoch, start_epoch * self.steps_per_epoch, [], [], start_epoch, nothing_to_do=True
            )
        started = f"Starting bpnet train ({'resuming after epoch %d' % start_epoch if start_epoch else 'new run'})."
        with task_status(self.results_dir, started):
            return self._run(start_epoch)

    def _run(self, start_epoch: int) -> TrainResult:
        tf, spec = self.tf, self.spec
        os.makedirs(self.checkpoint_root, exist_ok=True)
        for folder in (self.results_dir, self.checkpoint_root):
            remove_stale_temporaries(folder)
        resolved = dataclasses.replace(spec, checkpoint_dir=self.results_dir)
        spec_loader.dump_yaml(resolved, os.path.join(self.results_dir, "experiment_spec.yaml"))
        with self.strategy.scope():
            model = self.build_model()
            optimizer = self.build_optimizer(model)
            optimizer.build(model.trainable_variables)
            teacher = load_teacher(spec.distillation, self.info, self.skeleton) if spec.distillation else None
        # steps taken (the optimizer's own counter skips the steps that mixed precision's loss scaling drops)
        self.step_counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=self.step_counter)
        if start_epoch:
            checkpoint.read(os.path.join(self.checkpoint_root, f"epoch-{start_epoch:04d}", "ckpt")).expect_partial()
            logger.info("Resumed from epoch %d (step %d)", start_epoch, int(self.step_counter.numpy()))
            if not os.path.isfile(self.epoch_model_path(start_epoch)):
                save_model(model, self.epoch_model_path(start_epoch), self.info, self.extras)
                logger.info("Re-created %s from its checkpoint", self.epoch_model_path(start_epoch))
        else:
            self._initial_weights(model, checkpoint)
        step = start_epoch * self.steps_per_epoch
        if int(self.step_counter.numpy()) != step:
            raise BpnetError(
                f"{self.checkpoint_root}: checkpoint step {int(self.step_counter.numpy())} does not "
                f"match epoch {start_epoch} x {self.steps_per_epoch} steps; was the batch size or "
                "the number of GPUs changed? Resume with the same settings."
            )
        iterator = iter(self.strategy.experimental_distribute_dataset(self._training_dataset(step)))
        train_step = self._train_step_fn(model, optimizer, teacher)
        writer = tf.summary.create_file_writer(os.path.join(self.results_dir, "events"))
        epoch_losses, val_losses = [], []
        history = TrainingHistory(self.results_dir, len(model.outputs) // 2, start_epoch)
        try:
            for epoch in range(start_epoch + 1, spec.num_epoch + 1):
                loss, summary = self._run_epoch(epoch, iterator, train_step, optimizer, writer, checkpoint)
                epoch_losses.append(loss)
                if spec.validation_every_n_epoch and epoch % spec.validation_every_n_epoch == 0:
                    val, ap = self.validation_loss(model), self.validation_ap(model)
                    summary.update(validation_loss=val, validation_AP=ap)
                    if val is not None:
                        val_losses.append(val)
                        with writer.as_default():
                            tf.summary.scalar("val_loss", val, step=int(self.step_counter.numpy()))
                        logger.info("epoch %d: validation loss %.5f per image", epoch, val)
                    if ap is not None:
                        with writer.as_default():
                            tf.summary.scalar("val_AP", ap, step=int(self.step_counter.numpy()))
                        logger.info("epoch %d: validation AP %.4f", epoch, ap)
                # the epoch's row is written before its checkpoint: a run killed in between resumes from the
                # previous checkpoint and drops this row, so no row is ever lost or repeated
                history.add({**summary, "epoch": epoch, "step": int(self.step_counter.numpy())})
                if epoch % spec.checkpoint_n_epoch == 0 or epoch == spec.num_epoch:
                    self.save_checkpoint(checkpoint, model, epoch)
                self.status.write(
                    "RUNNING", f"Epoch {epoch}/{spec.num_epoch} done.", kpi={"epoch": epoch, "loss": epoch_losses[-1]}
                )
        finally:
            del iterator  # stop the input pipeline's threads before the interpreter exits
            writer.close()
        final = self.final_model_path
        save_model(model, final, self.info, self.extras)
        self.status.write(
            "SUCCESS",
            "Training finished successfully.",
            kpi={"epochs": spec.num_epoch, "final_loss": epoch_losses[-1] if epoch_losses else None},
        )
        return TrainResult(
            self.results_dir, final, spec.num_epoch, int(self.step_counter.numpy()), epoch_losses, val_losses, start_epoch
        )

    def _initial_weights(self, model, checkpoint) -> None:
        spec = self.spec
        if spec.finetuning_config.is_finetune_exp:
            path = finetune_checkpoint(spec.finetuning_config.checkpoint_path, spec.finetuning_config.ckpt_epoch_num)
            if path.endswith((".keras", ".h5", ".hdf5")):
                loaded, skipped = assign_by_name(model, read_layer_weights(path))
                if skipped or not loaded:
                    raise BpnetError(
                        f"{path}: does not fit this model ({len(loaded)} layers loaded, shapes differ in "
                        f"{', '.join(skipped[:3]) or 'none'}) (finetuning_config.checkpoint_path)"
                    )
            else:
                self.tf.train.Checkpoint(model=model).read(path).expect_partial()
            logger.info("Fine-tuning from %s: its weights, a new optimizer and schedule from step 0", path)
        elif spec.pretrained_weights and not spec.load_graph:
            load_pretrained(model, spec.pretrained_weights, spec.model.backbone_attributes.use_bias)

    def _run_epoch(self, epoch, iterator, train_step, optimizer, writer, checkpoint) -> Tuple[float, Dict[str, Optional[float]]]:
        """Train one epoch: ``(mean loss, the :mod:`bpnet.train.history` columns it knows: mean losses per stage,
        the last learning rate)``."""
        tf, spec = self.tf, self.spec
        bar = tqdm(total=self.steps_per_epoch, desc=f"epoch {epoch}/{spec.num_epoch}", unit="step", disable=not self.progress)
        losses, started, last_log = [], time.perf_counter(), time.perf_counter()
        stage_sums, distillation_sum, lr = None, 0.0, None
        try:
            for _ in range(self.steps_per_epoch):
                images, labels = next_batch(iterator)
                lr = float(optimizer.learning_rate.numpy()) if hasattr(optimizer.learning_rate, "numpy") else None
                loss, heat, paf, distillation = (v.numpy() for v in train_step(images, labels))
                step = int(self.step_counter.assign_add(1).numpy())
                if not math.isfinite(float(loss)):
                    last = latest_checkpoint_epoch(self.checkpoint_root)
                    message = (
                        f"loss became {float(loss)} at step {step} (epoch {epoch}); stopped. The last good "
                        f"checkpoint is epoch {last} in {self.checkpoint_root}"
                        if last
                        else f"loss became {float(loss)} at step {step} (epoch {epoch}); stopped before any checkpoint"
                    )
                    raise BpnetError(message + "; try a lower learning rate")
                losses.append(float(loss))
                per_stage = np.concatenate([np.ravel(heat), np.ravel(paf)]).astype(np.float64)
                stage_sums = per_stage if stage_sums is None else stage_sums + per_stage
                distillation_sum += float(distillation)
                if step % spec.summary_every_n_steps == 0:
                    with writer.as_default():
                        tf.summary.scalar("total_loss", loss, step=step)
                        if lr is not None:
                            tf.summary.scalar("learning_rate", lr, step=step)
                        if spec.distillation is not None:
                            tf.summary.scalar("distillation_loss", distillation, step=step)
                        for i, (h, p) in enumerate(zip(heat, paf)):
                            tf.summary.scalar(f"cmap_loss_stage{i + 1}", h, step=step)
                            tf.summary.scalar(f"paf_loss_stage{i + 1}", p, step=step)
                elapsed = time.perf_counter() - started
                bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{len(losses) * self.global_batch / elapsed:.1f}")
                bar.update(1)
                if time.perf_counter() - last_log >= spec.log_every_n_secs:
                    logger.info("epoch %d step %d loss %.5f", epoch, step, float(loss))
                    last_log = time.perf_counter()
        finally:
            bar.close()
        mean_loss = float(np.mean(losses))
        summary: Dict[str, Optional[float]] = {"loss": mean_loss, "learning_rate": lr}
        if stage_sums is not None:
            summary.update(zip(stage_columns(len(stage_sums) // 2), (stage_sums / len(losses)).tolist()))
        if spec.distillation is not None:
            summary["distillation_loss"] = distillation_sum / len(losses)
        return mean_loss, summary

    def validation_ap(self, model) -> Optional[float]:
        """COCO keypoint AP of ``model`` (its last stage, at the training input size) on the first
        :data:`VALIDATION_AP_IMAGES` images of the first dataset spec's test split; None without one."""
        dims = self.spec.dataloader.image_config.image_dims
        settings = PredictorSettings(input_shape=(dims.height, dims.width))
        predictor = Predictor(KerasBackend(model), self.info, settings)
        for dataset_spec in self.spec.dataloader.dataset_config.dataset_specs.values():
            if os.path.isfile(dataset_spec):
                ap = validation_ap(predictor, dataset_spec, VALIDATION_AP_IMAGES)
                if ap is not None:
                    return ap
        return None


_PIPELINE_INPUT_ERROR = re.compile(r"(?:FileNotFoundError|KeyError|ValueError): (.+?)(?:\n|$)")


def next_batch(iterator, default=StopIteration):
    """``next(iterator)`` of an input pipeline, with a record's unreadable image or mask (raised inside
    ``tf.numpy_function``) turned into a :class:`BpnetError` naming the file; ``default`` at the end."""
    import tensorflow as tf

    try:
        return next(iterator)
    except StopIteration:
        if default is StopIteration:
            raise
        return default
    except tf.errors.OpError as exc:
        match = _PIPELINE_INPUT_ERROR.search(exc.message or "")
        if match is None:
            raise
        raise BpnetError(match.group(1).strip().strip("'\"")) from None


def train(
    spec: Union[TrainSpec, str],
    results_dir: Optional[str] = None,
    gpus: Optional[int] = None,
    use_amp: bool = False,
    logical_cpus: int = 0,
    progress: bool = True,
    deterministic: bool = False,
    overrides: Sequence[str] = (),
) -> TrainResult:
    """Train (or resume) from a train spec (object or file; ``overrides`` are ``key.path=value`` settings for
    a file); ``results_dir`` overrides the spec's ``checkpoint_dir``."""
    spec_path = spec_source(spec)
    spec = spec_object(TrainSpec, spec, overrides)
    results_dir = results_dir or spec.checkpoint_dir
    if not results_dir:
        raise BpnetError(f"{spec_path}: no results folder: pass -r/--results_dir or set checkpoint_dir")
    results_dir = os.path.abspath(results_dir)
    try:
        os.makedirs(results_dir, exist_ok=True)
    except OSError as exc:
        raise BpnetError(f"{results_dir}: cannot create results folder: {exc.strerror or exc}") from None
    with task_status(results_dir, None):
        strategy = distribution.make_strategy(gpus, logical_cpus)
        if use_amp:
            import keras

            keras.mixed_precision.set_global_policy("mixed_float16")
        distribution.seed_everything(spec.random_seed, deterministic)
        trainer = Trainer(spec, results_dir, strategy, use_amp, progress, spec_source=spec_path)
    return trainer.run()
