"""Adversarial-training recipes: per batch, per epoch, and pre-generated random-sign noise.

    adversarial_batch  every batch attacked against the current weights (attack, eps,
                       attack_steps, adv_ratio, warmup_epochs, eps_ramp_epochs)
    adversarial_epoch  clean set plus an adversarial copy (adv_fraction of it) regenerated
                       at the start of every epoch
    random_noise       clean set plus a random-sign (+-eps, clipped) copy made once

Each logs per epoch: clean validation accuracy, robust accuracy on a fixed validation subset
(robust_eval_size) under the evaluation attack (monitor_attack, separate from the training
attack) at the eps in force, that eps, and an image grid of adversarial examples.
"""

import os

import tensorflow as tf

from tfadv import attacks, defenses, evaluation
from tfadv.data import parse_augment
from tfadv.experiment import training
from tfadv.experiment.recipes import register_trainer

ATTACK_BATCH_SIZE = 256


def monitor_callbacks(ctx, classifier, eps_variable, stage):
    """[RobustMonitor] on the first robust_eval_size validation images ([] when none)."""
    config = ctx.config
    val = ctx.data.val.head(config.robust_eval_size)
    if config.robust_eval_size <= 0 or len(val) == 0:
        return []
    return [
        evaluation.RobustMonitor(
            classifier,
            val.float_images(),
            val.labels,
            training.monitor_attack(config),
            eps_variable,
            log_dir=os.path.join(ctx.output_dir, "logs", stage, "images"),
            batch_size=ATTACK_BATCH_SIZE,
            class_names=ctx.data.class_names,
        )
    ]


def guard_callbacks(ctx, classifier):
    """[OverfittingGuard] checking the first guard_images training images at the full eps ([] when
    0)."""
    config = ctx.config
    held = ctx.data.train.head(config.guard_images)
    if config.guard_images <= 0 or len(held) == 0:
        return []
    return [
        defenses.OverfittingGuard(
            held.float_images(),
            held.labels,
            config.eps,
            drop=config.guard_drop,
            classifier=classifier,
            batch_size=ATTACK_BATCH_SIZE,
            seed=config.seed,
        )
    ]


def _eps_schedule(config, variable):
    return defenses.EpsSchedule(variable, config.eps, config.warmup_epochs, config.eps_ramp_epochs)


def _first_eps(config) -> float:
    return defenses.eps_at(0, config.eps, config.warmup_epochs, config.eps_ramp_epochs)


def notes(config) -> dict:
    """What the adversarial recipes report next to their accuracies."""
    out = {"attack": training.training_attack(config).describe(), "eps": config.eps}
    if config.recipe == "adversarial_batch":
        out["adv_ratio"] = config.adv_ratio
    if config.recipe in ("adversarial_epoch", "random_noise"):
        out["adv_fraction"] = config.adv_fraction
    if config.recipe == "random_noise":
        out["attack"] = "random_sign (pre-generated)"
    if config.recipe != "random_noise" and (config.warmup_epochs or config.eps_ramp_epochs):
        out["eps_schedule"] = (
            f"warm-up {config.warmup_epochs} epochs, ramp {config.eps_ramp_epochs} epochs"
        )
    if config.robust_eval_size:
        out["monitor_attack"] = training.monitor_attack(config).describe()
    if config.awp_gamma:
        out["awp"] = (
            f"gamma {config.awp_gamma:g} (layer-wise relative), from epoch "
            f"{config.awp_warmup_epochs + 1}"
        )
    if config.guard_images:
        out["guard"] = (
            f"{defenses.overfitting_guard.DEFAULT_ATTACK} on {config.guard_images} training "
            f"images, stop at a drop > {config.guard_drop:g}"
        )
    return out


@register_trainer("adversarial_batch", notes=notes)
def train_batch(ctx, stage="model", **option_overrides):
    """Per-batch adversarial training of a new classifier; returns the trained classifier."""
    config = ctx.config
    with ctx.strategy.scope():
        classifier = training.build_model(ctx, **option_overrides)
        trainer = defenses.AdversarialTrainer(
            classifier,
            training.training_attack(config),
            eps=_first_eps(config),
            ratio=config.adv_ratio,
            seed=config.seed,
            awp_gamma=config.awp_gamma,
        )
        training.compile_model(ctx, trainer)
    extra = [
        _eps_schedule(config, trainer.eps),
        *monitor_callbacks(ctx, classifier, trainer.eps, stage),
    ]
    if trainer.awp_gamma is not None:  # adversarial weight perturbation (awp_gamma > 0)
        extra.append(
            defenses.AwpSchedule(trainer.awp_gamma, config.awp_gamma, config.awp_warmup_epochs)
        )
    extra += guard_callbacks(ctx, classifier)
    training.fit(ctx, trainer, stage, extra_callbacks=extra)
    return classifier


def _training_set_with_copy(ctx):
    config = ctx.config
    train = ctx.data.train
    return defenses.TrainingSetWithCopy(
        train,
        copy_size=len(defenses.choose_subset(len(train), config.adv_fraction, config.seed)),
        batch_size=config.batch_size,
        augment=parse_augment(config.augment),
        seed=config.seed,
        replicas=ctx.strategy.num_replicas_in_sync,
        epoch=ctx.epoch,
    )


@register_trainer("adversarial_epoch", notes=notes)
def train_epoch(ctx, stage="model", **option_overrides):
    """Per-epoch adversarial training: clean set plus a copy regenerated every epoch."""
    config = ctx.config
    data = _training_set_with_copy(ctx)
    eps = tf.Variable(_first_eps(config), trainable=False, dtype=tf.float32, name="eps")
    model = training.build_and_compile(ctx, **option_overrides)
    regenerate = defenses.RegenerateAdversarialCopy(
        data,
        training.training_attack(config),
        eps,
        classifier=model,
        batch_size=ATTACK_BATCH_SIZE,
        seed=config.seed,
        strategy=ctx.strategy,
    )
    extra = [_eps_schedule(config, eps), regenerate, *monitor_callbacks(ctx, model, eps, stage)]
    training.fit(ctx, model, stage, train_data=data.dataset(), extra_callbacks=extra)
    return model


@register_trainer("random_noise", notes=notes)
def train_random_noise(ctx, stage="model", **option_overrides):
    """Clean set plus a random-sign copy (x + eps * R, R in {-1, +1}, clipped) made once."""
    config = ctx.config
    data = _training_set_with_copy(ctx)
    model = training.build_and_compile(ctx, **option_overrides)
    indices = defenses.choose_subset(len(ctx.data.train), config.adv_fraction, config.seed)
    subset = ctx.data.train.take(indices)
    noise = attacks.Attack("random_sign")
    images = subset.float_images()
    data.set_copy(
        defenses.generate(
            model, noise, images, subset.labels, config.eps, ATTACK_BATCH_SIZE, config.seed
        ),
        subset.labels,
    )
    monitor = monitor_callbacks(ctx, model, config.eps, stage)
    training.fit(ctx, model, stage, train_data=data.dataset(), extra_callbacks=monitor)
    return model
