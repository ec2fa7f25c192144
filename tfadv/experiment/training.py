"""Shared pieces of every recipe: the attacks and models a config describes, compiling, and
fitting with the run's callbacks. This is where the configuration is read; the layers below
take plain arguments."""

import math
import os

import keras

from tfadv import attacks, models
from tfadv import data as data_lib
from tfadv.experiment import resume, run_folder
from tfadv.experiment.config import DISTILLATION_RECIPES
from tfadv.runtime.files import atomic_file

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


def training_attack(config) -> attacks.Attack:
    """The attack of the adversarial recipes: `attack` (a name or a spec such as 'pgd(steps=7)')
    with attack_steps, attack_alpha (0: the attack's default) and attack_loss_on where it takes
    them.

    Its seed is left unset: fresh randomness on every call, also inside a traced train step.
    """
    attack = attacks.get(config.attack)
    candidates = {
        "steps": config.attack_steps,
        "alpha": config.attack_alpha or None,
        "loss_on": config.attack_loss_on,
    }
    given = {
        k: v
        for k, v in candidates.items()
        if k in attack.info.parameters and k not in attack.options and v is not None
    }
    return attack.replace(**given)


def monitor_attack(config) -> attacks.Attack:
    """The evaluation attack of the per-epoch robust monitor (`monitor_attack`), with a fixed seed
    so that epochs are comparable; 'training' reuses the training attack. A monitor that does not
    name its norm takes the training attack's (an L2-trained model is monitored in L2)."""
    trained = training_attack(config)
    attack = trained if config.monitor_attack == "training" else attacks.get(config.monitor_attack)
    norm = trained.options.get("norm")
    if norm is not None and "norm" in attack.info.parameters and "norm" not in attack.options:
        attack = attack.replace(norm=norm)
    return attack.replace(seed=config.seed) if attack.takes_seed else attack


def load_teacher(config, dataset):
    """The teacher from teacher_dir (a run folder or .keras file), checked against the data set."""
    path = config.teacher_dir
    teacher = run_folder.load_model(path, argument="teacher_dir")
    if not isinstance(teacher, keras.Model):
        raise ValueError(
            "Expected a Keras teacher (.keras or a run folder), not a SavedModel. "
            f"Received: teacher_dir={path!r}"
        )
    try:
        models.softmax_layer(teacher)
    except ValueError as e:
        raise run_folder.renamed(e, "teacher_dir", path) from e
    expected = (tuple(dataset.input_shape), dataset.num_classes)
    found = (tuple(teacher.input_shape[1:]), teacher.output_shape[-1])
    if found != expected:
        raise ValueError(
            f"Expected a teacher for this run's data ({expected[0]} images, {expected[1]} "
            f"classes); the teacher takes {found[0]} images and has {found[1]} classes. "
            f"Received: teacher_dir={path!r}"
        )
    return teacher


def check_teacher(config, dataset) -> None:
    """Loads and checks teacher_dir before the run folder is made (nothing is written on error)."""
    if config.teacher_dir and config.recipe in DISTILLATION_RECIPES:
        load_teacher(config, dataset)


def build_model(ctx, **option_overrides):
    """Builds the configured architecture for the run's data (call under the strategy scope).

    With several replicas, batch normalisation is synchronised over them: every worker keeps
    the same moving statistics, and training sees the statistics of the global batch."""
    options = {"synchronized_batchnorm": ctx.strategy.num_replicas_in_sync > 1, **option_overrides}
    return models.build(
        ctx.config.model,
        input_shape=ctx.data.input_shape,
        num_classes=ctx.data.num_classes,
        options=model_options(ctx.config, **options),
    )


def cosine_learning_rate(base_rate: float, epochs: int):
    """epoch -> learning rate falling from base_rate along a half cosine, one value per epoch.

    Epoch e (0-based) trains at base_rate * (1 + cos(pi * e / epochs)) / 2: the full rate
    first, never 0. Per epoch rather than per step, so it holds whatever a recipe feeds
    `fit` in an epoch (clean data, or clean data plus adversarial copies).
    """

    def rate(epoch, current=None):
        return float(base_rate * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs)))

    return rate


def make_optimizer(ctx):
    return keras.optimizers.Adam(ctx.config.learning_rate)


def learning_rate_callbacks(config) -> list:
    """The schedule named by --lr_schedule, as callbacks for fit."""
    if config.lr_schedule == "cosine":
        return [
            keras.callbacks.LearningRateScheduler(
                cosine_learning_rate(config.learning_rate, config.epochs)
            )
        ]
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
    """The run's shuffled, augmented training pipeline (or one over `images`, an ImageSet):
    order and augmentation are functions of (seed, epoch, image), the epoch set by `fit`."""
    config = ctx.config
    return data_lib.to_dataset(
        images if images is not None else ctx.data.train,
        config.batch_size,
        shuffle=True,
        augment=data_lib.parse_augment(config.augment),
        seed=config.seed,
        replicas=ctx.strategy.num_replicas_in_sync,
        epoch=ctx.epoch,
    )


def eval_dataset(ctx, split="val"):
    return data_lib.to_dataset(
        getattr(ctx.data, split), ctx.config.batch_size, replicas=ctx.strategy.num_replicas_in_sync
    )


def stage_checkpoint_dir(folder: str, stage: str) -> str:
    return os.path.join(folder, "checkpoints", stage)


def fit(ctx, model, stage="model", train_data=None, epochs=None, extra_callbacks=()):
    """model.fit with the run's callbacks; resumable, and skipped when `stage` already finished.

    Resuming reads the run folder (`ctx.run_dir`): the stage's finished weights, else its last
    epoch backup (weights, optimizer state, next epoch, the states of callbacks that carry one).
    Writes go to `ctx.output_dir` (the run
    folder, or a scratch folder on workers other than the chief). At every epoch start the
    pipelines' epoch is set and the model's generators reseeded from (seed, epoch); at the end
    they are reseeded from (seed, epochs), whichever way the stage ended.

    Returns the History (None when the stage was restored from a finished checkpoint, or from a
    backup written when a callback such as the overfitting guard had stopped training).
    """
    epochs = epochs or ctx.config.epochs
    done_path = os.path.join(stage_checkpoint_dir(ctx.run_dir, stage), DONE_WEIGHTS)
    history = None
    if os.path.exists(done_path):
        resume.load_weights(model, done_path, ctx.strategy)
        print(f"[{stage}] already trained in this run; restored {done_path}", flush=True)
    else:
        history = _fit_stage(ctx, model, stage, train_data, epochs, extra_callbacks)
    resume.reseed_generators(model, ctx.config.seed, epochs)
    return history


def _fit_stage(ctx, model, stage, train_data, epochs, extra_callbacks):
    """Trains from the stage's backup (or from the start), then marks the stage finished.

    The backup holds the weights, the optimizer state, the next epoch and the state of the
    callbacks that carry one (get_state / set_state, e.g. the overfitting guard); a backup
    written when a callback stopped training finishes the stage without training further."""
    backup_dir = os.path.join(stage_checkpoint_dir(ctx.run_dir, stage), "backup")
    write_dir = stage_checkpoint_dir(ctx.output_dir, stage)
    first = [
        resume.EpochStart(ctx.config.seed, ctx.epoch)
    ]  # before anything that uses the model or the data
    callbacks = [*first, *extra_callbacks, *ctx.callbacks(stage)]
    stateful = resume.stateful(callbacks)
    initial_epoch = resume.restore(model, backup_dir, ctx.strategy, stateful)
    stopped = resume.read_state(backup_dir).get("stopped", False)
    history = None
    if stopped:
        print(
            f"[{stage}] training had stopped after epoch {initial_epoch} of {epochs}; restored "
            "its backup",
            flush=True,
        )
    else:
        if initial_epoch >= epochs:
            print(
                f"[{stage}] all {epochs} epochs were trained before the interruption; restored "
                "its backup",
                flush=True,
            )
        elif initial_epoch:
            print(f"[{stage}] resuming at epoch {initial_epoch + 1} of {epochs}", flush=True)
        elif ctx.config.verbose:
            print(f"[{stage}] training {epochs} epochs", flush=True)
        history = model.fit(
            train_data if train_data is not None else train_dataset(ctx),
            validation_data=eval_dataset(ctx, "val") if len(ctx.data.val) > 0 else None,
            epochs=epochs,
            initial_epoch=initial_epoch,
            callbacks=[*callbacks, resume.Backup(os.path.join(write_dir, "backup"), stateful)],
            verbose=ctx.config.verbose,
            shuffle=False,  # the pipeline shuffles
        )
    # its existence marks the stage as finished; then the backup is no longer needed
    atomic_file(os.path.join(write_dir, DONE_WEIGHTS), model.save_weights)
    resume.remove_backup(os.path.join(write_dir, "backup"))
    return history


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the optimizer's current learning rate to the epoch logs (for TensorBoard)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or self.model.optimizer is None:
            return
        lr = self.model.optimizer.learning_rate
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(lr))


def standard_callbacks(config, output_dir: str, stage: str):
    """The LR schedule, the learning-rate logger and TensorBoard (logs/<stage>); `fit` adds the
    epoch start (pipeline epoch, generator seeds) first and the resumable backup last."""
    return [
        *learning_rate_callbacks(config),
        LearningRateLogger(),
        keras.callbacks.TensorBoard(os.path.join(output_dir, "logs", stage), write_graph=False),
    ]
