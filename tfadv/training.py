"""Shared pieces of every recipe: building, compiling, fitting with the run's callbacks."""

import os

import keras

from tfadv import data as data_lib
from tfadv import export, models

DONE_WEIGHTS = "done.weights.h5"


def model_options(config, **overrides) -> models.ModelOptions:
    fields = dict(
        activation=config.activation,
        noise=config.noise,
        noise_stddev=config.noise_stddev,
        noise_at_inference=config.noise_at_inference,
        temperature=config.temperature,
        seed=config.seed,
    )
    fields.update(overrides)
    return models.ModelOptions(**fields)


def build_model(ctx, **option_overrides):
    """Builds the configured architecture for the run's data (call under the strategy scope)."""
    return models.build(
        ctx.config.model,
        input_shape=ctx.data.input_shape,
        num_classes=ctx.data.num_classes,
        options=model_options(ctx.config, **option_overrides),
    )


def cosine_learning_rate(base_rate: float, epochs: int):
    """epoch -> learning rate falling from base_rate along a half cosine, one value per epoch.

    Epoch e (0-based) trains at base_rate * (1 + cos(pi * e / epochs)) / 2: the full rate
    first, never 0. Per epoch rather than per step, so it holds whatever a recipe feeds
    `fit` in an epoch (clean data, or clean data plus adversarial copies).
    """
    import math

    def rate(epoch, current=None):
        return float(base_rate * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs)))

    return rate


def make_optimizer(ctx):
    return keras.optimizers.Adam(ctx.config.learning_rate)


def learning_rate_callbacks(config) -> list:
    """The schedule named by --lr_schedule, as callbacks for fit."""
    if config.lr_schedule == "cosine":
        return [keras.callbacks.LearningRateScheduler(cosine_learning_rate(config.learning_rate, config.epochs))]
    return []


def compile_model(ctx, model):
    model.compile(
        optimizer=make_optimizer(ctx),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=ctx.jit_compile,
    )
    return model


def build_and_compile(ctx, **option_overrides):
    with ctx.strategy.scope():
        return compile_model(ctx, build_model(ctx, **option_overrides))


def train_dataset(ctx, images=None):
    """The run's shuffled, augmented training pipeline (or one over `images`, an ImageSet)."""
    config = ctx.config
    return data_lib.to_dataset(
        images if images is not None else ctx.data.train,
        config.batch_size,
        shuffle=True,
        augment=data_lib.parse_augment(config.augment),
        seed=config.seed,
        replicas=ctx.strategy.num_replicas_in_sync,
    )


def eval_dataset(ctx, split="val"):
    return data_lib.to_dataset(
        getattr(ctx.data, split), ctx.config.batch_size, replicas=ctx.strategy.num_replicas_in_sync
    )


def stage_checkpoint_dir(ctx, stage: str) -> str:
    return os.path.join(ctx.output_dir, "checkpoints", stage)


def fit(ctx, model, stage="model", train_data=None, epochs=None, extra_callbacks=()):
    """model.fit with the run's callbacks; resumable, and skipped when `stage` already finished.

    Returns the History (None when the stage was restored from a finished checkpoint).
    """
    done_path = os.path.join(stage_checkpoint_dir(ctx, stage), DONE_WEIGHTS)
    if os.path.exists(done_path):
        model.load_weights(done_path)
        print(f"[{stage}] already trained in this run; restored {done_path}", flush=True)
        return None
    has_val = len(ctx.data.val) > 0
    history = model.fit(
        train_data if train_data is not None else train_dataset(ctx),
        validation_data=eval_dataset(ctx, "val") if has_val else None,
        epochs=epochs or ctx.config.epochs,
        callbacks=list(extra_callbacks) + ctx.callbacks(stage),
        verbose=ctx.config.verbose,
        shuffle=False,  # the pipeline shuffles
    )
    export.atomic_file(done_path, model.save_weights)  # its existence marks the stage as finished
    return history


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the optimizer's current learning rate to the epoch logs (for TensorBoard)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or self.model.optimizer is None:
            return
        lr = self.model.optimizer.learning_rate
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(lr))


def standard_callbacks(config, output_dir: str, stage: str):
    """The LR schedule, TensorBoard (logs/<stage>), the learning-rate logger, and a resumable backup."""
    return [
        *learning_rate_callbacks(config),
        LearningRateLogger(),
        keras.callbacks.BackupAndRestore(os.path.join(output_dir, "checkpoints", stage, "backup")),
        keras.callbacks.TensorBoard(os.path.join(output_dir, "logs", stage), write_graph=False),
    ]

