"""The latent-space defence's training recipe.

    contrastive  CE(f(x), y) + contrastive_weight x the contrastive loss (margin
                 contrastive_margin) on the penultimate embedding, on unit-length embeddings
                 with contrastive_normalize (`tfadv.defenses.ContrastiveTrainer`)

Exports the trained classifier ("model"); classifying by the nearest reference image in its
embedding space is `tfadv.defenses.NearestReferenceClassifier` over it (tools/study_latent.py).
Logs per epoch: loss, ce_loss, contrastive_loss and accuracy, on training and validation data.
"""

from tfadv.defenses import ContrastiveTrainer
from tfadv.experiment import training
from tfadv.experiment.recipes import register_trainer


def notes(config) -> dict:
    return {
        "contrastive": (
            f"CE + {config.contrastive_weight:g} x contrastive loss, margin "
            f"{config.contrastive_margin:g}, "
            f"{'unit-length' if config.contrastive_normalize else 'raw'} embedding"
        )
    }


@register_trainer("contrastive", notes=notes)
def train_contrastive(ctx, stage="model", **option_overrides):
    """A new classifier trained with cross-entropy plus the contrastive loss on its embedding;
    returns the trained classifier."""
    config = ctx.config
    with ctx.strategy.scope():
        classifier = training.build_model(ctx, **option_overrides)
        trainer = ContrastiveTrainer(
            classifier,
            margin=config.contrastive_margin,
            weight=config.contrastive_weight,
            normalize=config.contrastive_normalize,
        )
        trainer.compile(optimizer=training.make_optimizer(ctx), jit_compile=ctx.jit_compile)
    training.fit(ctx, trainer, stage)
    return classifier
