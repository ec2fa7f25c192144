"""The standard recipe: one model trained on clean data with model.fit."""

from tfadv.experiment import training
from tfadv.experiment.recipes import register_trainer


@register_trainer("standard")
def train_standard(ctx, stage="model", **option_overrides):
    """A classifier trained on clean data (also the default teacher of the distillation recipes)."""
    model = training.build_and_compile(ctx, **option_overrides)
    training.fit(ctx, model, stage)
    return model
