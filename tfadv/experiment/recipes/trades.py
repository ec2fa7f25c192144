"""TRADES and MART recipes (AWP, `awp_gamma`, is an option of both and of adversarial_batch).

    trades  CE(f(x), y) + trades_beta * KL(f(x) || f(x')), x' maximising the KL (attack=pgd:
            attack_steps, attack_alpha), eps schedule as adversarial_batch
    mart    boosted CE on x' + mart_beta * KL(f(x) || f(x')) * (1 - p_y(x)), x' from the
            training attack (e.g. PGD on the cross-entropy)

With awp_gamma > 0 every step takes its gradient at kernels perturbed by awp_gamma * ||w||
along the ascent direction of the same loss (after awp_warmup_epochs). Each logs per epoch
the clean and adversarial training accuracy, clean validation accuracy, the robust monitor
(robust accuracy under monitor_attack at the eps in force) and the eps.
"""

from tfadv import defenses
from tfadv.experiment import training
from tfadv.experiment.recipes import register_trainer
from tfadv.experiment.recipes.adversarial import monitor_callbacks
from tfadv.experiment.recipes.adversarial import notes as adversarial_notes


def awp_callbacks(config, trainer) -> list:
    """[AwpSchedule] when the trainer perturbs weights, else []."""
    if trainer.awp_gamma is None:
        return []
    return [defenses.AwpSchedule(trainer.awp_gamma, config.awp_gamma, config.awp_warmup_epochs)]


def notes(config) -> dict:
    """adversarial_batch's notes (attack, eps, schedule, monitor, AWP) with the recipe's beta."""
    out = adversarial_notes(config)
    if config.recipe == "trades":
        norm = training.training_attack(config).options.get("norm", "inf")
        out["attack"] = (
            f"KL-maximising pgd(steps={config.attack_steps}) in the L-{norm} ball "
            "from x + 0.001 N(0, 1)"
        )
        out["trades_beta"] = config.trades_beta
    if config.recipe == "mart":
        out["mart_beta"] = config.mart_beta
    return out


def _train(ctx, stage, trainer_class, beta, option_overrides):
    config = ctx.config
    with ctx.strategy.scope():
        classifier = training.build_model(ctx, **option_overrides)
        trainer = trainer_class(
            classifier,
            training.training_attack(config),
            eps=defenses.eps_at(0, config.eps, config.warmup_epochs, config.eps_ramp_epochs),
            beta=beta,
            awp_gamma=config.awp_gamma,
            seed=config.seed,
        )
        trainer.compile(optimizer=training.make_optimizer(ctx), jit_compile=ctx.jit_compile)
    schedule = defenses.EpsSchedule(
        trainer.eps, config.eps, config.warmup_epochs, config.eps_ramp_epochs
    )
    extra = [schedule, *awp_callbacks(config, trainer)]
    extra += monitor_callbacks(ctx, classifier, trainer.eps, stage)
    training.fit(ctx, trainer, stage, extra_callbacks=extra)
    return classifier


@register_trainer("trades", notes=notes)
def train_trades(ctx, stage="model", **option_overrides):
    """TRADES training of a new classifier (beta = trades_beta); returns the trained classifier."""
    return _train(ctx, stage, defenses.TradesTrainer, ctx.config.trades_beta, option_overrides)


@register_trainer("mart", notes=notes)
def train_mart(ctx, stage="model", **option_overrides):
    """MART training of a new classifier (beta = mart_beta); returns the trained classifier."""
    return _train(ctx, stage, defenses.MartTrainer, ctx.config.mart_beta, option_overrides)
