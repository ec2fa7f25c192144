"""Adversarial-training recipes: per batch, per epoch, and pre-generated random-sign noise.

    adversarial_batch  every batch attacked against the current weights (--attack, --eps,
                       --attack_steps, --adv_ratio, --warmup_epochs, --eps_ramp_epochs)
    adversarial_epoch  clean set plus an adversarial copy (--adv_fraction of it) regenerated
                       at the start of every epoch
    random_noise       clean set plus a random-sign (+-eps, clipped) copy made once

Each logs per epoch: clean validation accuracy, robust accuracy on a fixed validation
subset (--robust_eval_size) under the training attack at the eps in force, that eps,
and an image grid of current adversarial examples (logs/<stage>/images).
The `train_*` functions are reused by the distillation recipes to train a teacher.
"""

import os

import tensorflow as tf

from tfadv import adversarial, callbacks, training
from tfadv.data import parse_augment
from tfadv.recipes import RecipeResult, RunContext, register

ATTACK_BATCH_SIZE = 256


def monitor_callbacks(ctx, classifier, eps_variable, stage):
    """[RobustMonitor] on the first --robust_eval_size validation images ([] when none)."""
    config = ctx.config
    val = ctx.data.val.head(config.robust_eval_size)
    if config.robust_eval_size <= 0 or len(val) == 0:
        return []
    attack = adversarial.attack_from_config(config, seed=config.seed)  # fixed: comparable epochs
    return [
        callbacks.RobustMonitor(
            classifier, val.float_images(), val.labels, attack, eps_variable,
            log_dir=os.path.join(ctx.output_dir, "logs", stage, "images"),
            batch_size=ATTACK_BATCH_SIZE,
        )
    ]  # fmt: skip


def _eps_schedule(config, variable):
    return callbacks.EpsSchedule(variable, config.eps, config.warmup_epochs, config.eps_ramp_epochs)


def _first_eps(config) -> float:
    return adversarial.eps_at(0, config.eps, config.warmup_epochs, config.eps_ramp_epochs)


def train_batch(ctx: RunContext, stage="model", **option_overrides):
    """Per-batch adversarial training of a new classifier; returns the trained classifier."""
    config = ctx.config
    with ctx.strategy.scope():
        classifier = training.build_model(ctx, **option_overrides)
        trainer = adversarial.AdversarialTrainer(
            classifier, adversarial.attack_from_config(config), eps=_first_eps(config), ratio=config.adv_ratio
        )
        training.compile_model(ctx, trainer)
    extra = [_eps_schedule(config, trainer.eps), *monitor_callbacks(ctx, classifier, trainer.eps, stage)]
    training.fit(ctx, trainer, stage, extra_callbacks=extra)
    return classifier


def _training_set_with_copy(ctx):
    config = ctx.config
    train = ctx.data.train
    return adversarial.TrainingSetWithCopy(
        train,
        copy_size=len(adversarial.choose_subset(len(train), config.adv_fraction, config.seed)),
        batch_size=config.batch_size,
        augment=parse_augment(config.augment),
        seed=config.seed,
        replicas=ctx.strategy.num_replicas_in_sync,
    )


def train_epoch(ctx: RunContext, stage="model", **option_overrides):
    """Per-epoch adversarial training: clean set plus a copy regenerated every epoch."""
    config = ctx.config
    data = _training_set_with_copy(ctx)
    eps = tf.Variable(_first_eps(config), trainable=False, dtype=tf.float32, name="eps")
    model = training.build_and_compile(ctx, **option_overrides)
    regenerate = callbacks.RegenerateAdversarialCopy(
        data, adversarial.attack_from_config(config), eps, classifier=model,
        batch_size=ATTACK_BATCH_SIZE, seed=config.seed,
    )  # fmt: skip
    extra = [_eps_schedule(config, eps), regenerate, *monitor_callbacks(ctx, model, eps, stage)]
    training.fit(ctx, model, stage, train_data=data.dataset(), extra_callbacks=extra)
    return model


def train_random_noise(ctx: RunContext, stage="model", **option_overrides):
    """Clean set plus a random-sign copy (x + eps * R, R in {-1, +1}, clipped) made once."""
    config = ctx.config
    data = _training_set_with_copy(ctx)
    model = training.build_and_compile(ctx, **option_overrides)
    indices = adversarial.choose_subset(len(ctx.data.train), config.adv_fraction, config.seed)
    subset = ctx.data.train.take(indices)
    noise = adversarial.AttackSpec("random_sign")  # seed None: TF's seeded global RNG, new per batch
    data.set_copy(
        adversarial.generate(model, noise, subset.float_images(), subset.labels, config.eps, ATTACK_BATCH_SIZE),
        subset.labels,
    )
    training.fit(ctx, model, stage, train_data=data.dataset(), extra_callbacks=monitor_callbacks(ctx, model, config.eps, stage))
    return model


def notes(config) -> dict:
    """What the adversarial recipes report next to their accuracies."""
    attack = adversarial.attack_from_config(config).describe()
    out = {"attack": attack, "eps": config.eps}
    if config.recipe == "adversarial_batch":
        out["adv_ratio"] = config.adv_ratio
    if config.recipe in ("adversarial_epoch", "random_noise"):
        out["adv_fraction"] = config.adv_fraction
    if config.recipe == "random_noise":
        out["attack"] = "random_sign (pre-generated)"
    if config.recipe != "random_noise" and (config.warmup_epochs or config.eps_ramp_epochs):
        out["eps_schedule"] = f"warm-up {config.warmup_epochs} epochs, ramp {config.eps_ramp_epochs} epochs"
    return out


def _result(ctx, model) -> RecipeResult:
    return RecipeResult(models={"model": model}, main="model", notes=notes(ctx.config))


@register("adversarial_batch")
def run_batch(ctx: RunContext) -> RecipeResult:
    return _result(ctx, train_batch(ctx))


@register("adversarial_epoch")
def run_epoch(ctx: RunContext) -> RecipeResult:
    return _result(ctx, train_epoch(ctx))


@register("random_noise")
def run_random_noise(ctx: RunContext) -> RecipeResult:
    return _result(ctx, train_random_noise(ctx))


TRAINERS = {
    "adversarial_batch": train_batch,
    "adversarial_epoch": train_epoch,
    "random_noise": train_random_noise,
}

