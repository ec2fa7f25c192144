"""The standard recipe: train one model on clean data with model.fit."""

from tfadv import training
from tfadv.recipes import RecipeResult, RunContext, register


@register("standard")
def run(ctx: RunContext) -> RecipeResult:
    model = training.build_and_compile(ctx)
    training.fit(ctx, model, stage="model")
    return RecipeResult(models={"model": model}, main="model")
