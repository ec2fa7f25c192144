"""Training recipes: how a run turns data into one or more trained models.

A recipe is `fn(ctx: RunContext) -> RecipeResult`, registered by name with
`@register("name")`. The CLI builds the context (data, strategy, callbacks,
output paths) and exports every model the recipe returns.
"""

import dataclasses

from tfadv.errors import UserInputError

RECIPES = {}


@dataclasses.dataclass
class RunContext:
    """What a recipe gets: the resolved config and everything built from it.

    Attributes:
        config: the TrainConfig.
        data: the loaded ImageDataset.
        strategy: the tf.distribute strategy; build and compile models under `strategy.scope()`.
        output_dir: the run's folder (logs, checkpoints and exports go below it).
        jit_compile: resolved XLA choice for model.compile and attacks.
        callbacks: callbacks(stage) -> list of the run's standard callbacks for the
            model trained in `stage` (e.g. "model", "teacher", "student"): TensorBoard
            under logs/<stage>, the resumable checkpoint under checkpoints/<stage>,
            the learning-rate logger and the progress display.
    """

    config: object
    data: object
    strategy: object
    output_dir: str
    jit_compile: bool
    callbacks: object


@dataclasses.dataclass
class RecipeResult:
    """Trained models to export, by name; `main` names the one the run reports on."""

    models: dict
    main: str = "model"
    notes: dict = dataclasses.field(default_factory=dict)


def register(name):
    def wrap(fn):
        RECIPES[name] = fn
        return fn

    return wrap


def get(name):
    _load_builtin()
    if name not in RECIPES:
        raise UserInputError(f"--recipe={name!r}: unknown recipe; expected one of {sorted(RECIPES)}")
    return RECIPES[name]


def names():
    _load_builtin()
    return sorted(RECIPES)


def _load_builtin():
    import importlib
    import pkgutil

    import tfadv.recipes as package

    for module in pkgutil.iter_modules(package.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"tfadv.recipes.{module.name}")
