"""Training recipes, in one registry: how a run turns data into one or more trained models.

Two kinds register here:
- a *trainer* `fn(ctx, stage="model", **model_options) -> keras.Model` trains one classifier
  (standard, adversarial_batch, adversarial_epoch, random_noise); registered with
  `@register_trainer(name, notes=fn)`, it is a recipe by itself and can also train a teacher;
- a *recipe* `fn(ctx) -> RecipeResult` makes several models (distill, distill_variant);
  registered with `@register(name)`.
The run builds the context (data, strategy, callbacks, output paths) and exports every model
the recipe returns. Config files are named after their recipe: configs/<recipe>[_<variant>].flags.
"""

import dataclasses
import importlib
import pkgutil

RECIPES = {}  # name -> Recipe


@dataclasses.dataclass
class RunContext:
    """What a recipe gets: the resolved config and everything built from it.

    Attributes:
        config: the TrainConfig.
        data: the loaded ImageDataset.
        strategy: the tf.distribute strategy; build and compile models under `strategy.scope()`.
        output_dir: where this process writes (logs, checkpoints): the run folder, or a scratch
            folder on a worker other than the chief of a multi-worker run.
        run_dir: the run folder, read when resuming (the same as output_dir in one process).
        epoch: the tf.Variable the training pipelines read as their epoch (set by `training.fit`).
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
    run_dir: str = ""
    epoch: object = None

    def __post_init__(self):
        self.run_dir = self.run_dir or self.output_dir


@dataclasses.dataclass
class RecipeResult:
    """Trained models to export, by name; `main` names the one the run reports on."""

    models: dict
    main: str = "model"
    notes: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Recipe:
    name: str
    run: object  # ctx -> RecipeResult
    trainer: object = None  # (ctx, stage, **model_options) -> model, for single-model recipes


def register(name):
    """Registers a multi-model recipe `fn(ctx) -> RecipeResult`."""

    def wrap(fn):
        RECIPES[name] = Recipe(name, fn)
        return fn

    return wrap


def register_trainer(name, notes=None):
    """Registers a single-model trainer `fn(ctx, stage="model", **model_options) -> model` as a
    recipe; `notes(config) -> dict` adds lines to the run's summary."""

    def wrap(fn):
        def run(ctx):
            return RecipeResult({"model": fn(ctx)}, "model", notes(ctx.config) if notes else {})

        RECIPES[name] = Recipe(name, run, fn)
        return fn

    return wrap


def get(name) -> object:
    """The run function of recipe `name`."""
    return _lookup(name).run


def trainer(name):
    """The single-model trainer of recipe `name` (for teachers)."""
    recipe = _lookup(name)
    if recipe.trainer is None:
        raise ValueError(
            f"teacher_recipe={name!r} makes several models; expected one of {trainer_names()}"
        )
    return recipe.trainer


def names() -> list:
    _load_builtin()
    return sorted(RECIPES)


def trainer_names() -> list:
    _load_builtin()
    return sorted(name for name, recipe in RECIPES.items() if recipe.trainer is not None)


def _lookup(name) -> Recipe:
    _load_builtin()
    if name not in RECIPES:
        raise ValueError(
            f"Expected recipe to be one of {sorted(RECIPES)}. Received: recipe={name!r}"
        )
    return RECIPES[name]


def _load_builtin():
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


def add_test_noise(ctx, named_models: dict, main: str):
    """With test_noise set, adds the main model behind that noise (main becomes the wrapper).

    Returns (models, main name). The wrapper is named "<main>_<noise>".
    """
    from tfadv.defenses import with_test_noise

    config = ctx.config
    if config.test_noise == "none":
        return named_models, main
    with ctx.strategy.scope():
        wrapped = with_test_noise(
            named_models[main], config.test_noise, config.test_noise_eps, seed=config.seed
        )
    name = f"{main}_{config.test_noise}"
    return {**named_models, name: wrapped}, name
