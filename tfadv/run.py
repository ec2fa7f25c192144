"""run_training(config): flags -> data, strategy, recipe -> exported models and a summary.

Everything that can be checked before training (flags, recipe, model, dataset,
output folder) is checked before the run folder is created, so bad input leaves
nothing behind.
"""

import dataclasses
import os
import shutil
import tempfile
import time

from tfadv import data as data_lib
from tfadv import evaluate, export, models, onednn, preprocessing, recipes, runtime, training
from tfadv.config import TrainConfig
from tfadv.errors import UserInputError

CONFIG_FILE = "config.json"


@dataclasses.dataclass
class RunSummary:
    output_dir: str
    main: str
    test_accuracy: dict
    exports: dict
    seconds: float
    dataset: str
    notes: dict = dataclasses.field(default_factory=dict)

    def lines(self):
        out = [f"run folder: {self.output_dir}  ({self.seconds:.1f} s, {self.dataset})"]
        for name, acc in self.test_accuracy.items():
            marker = " (main)" if name == self.main else ""
            out.append(f"clean test accuracy {name}{marker}: {acc:.4f}  -> {self.exports[name]}")
        for key, value in self.notes.items():
            out.append(f"{key}: {value}")
        out.append(f"TensorBoard: tensorboard --logdir {os.path.join(self.output_dir, 'logs')}")
        return out


def default_output_dir(config: TrainConfig) -> str:
    name = config.run_name or f"{config.recipe}-{config.model}-{config.dataset}"
    return os.path.join("saved_models", name)


def _nearest_existing_parent(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def _check_writable(output_dir: str) -> None:
    """Creates and removes a probe folder where the run folder would go (root ignores os.access)."""
    parent = _nearest_existing_parent(output_dir)
    if not os.path.isdir(parent):
        raise UserInputError(f"--output_dir={output_dir!r} is not writable: {parent!r} is a file")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".tfadv-probe-", dir=parent))
    except OSError as e:
        raise UserInputError(f"--output_dir={output_dir!r} is not writable ({e.strerror} in {parent!r})") from None


def check_output_dir(config: TrainConfig) -> str:
    """Validates --output_dir against --overwrite/--resume without touching the disk."""
    output_dir = config.output_dir or default_output_dir(config)
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise UserInputError(f"--output_dir={output_dir!r} exists and is not a folder")
    _check_writable(output_dir)
    if os.path.isdir(output_dir) and os.listdir(output_dir):
        is_run = os.path.exists(os.path.join(output_dir, CONFIG_FILE))
        if config.resume:
            if not is_run:
                raise UserInputError(f"--resume: {output_dir!r} is not a tfadv run folder (no {CONFIG_FILE})")
        elif not config.overwrite:
            raise UserInputError(
                f"output folder {output_dir!r} already exists; pass --overwrite to replace it "
                "or --resume to continue it"
            )
        elif not is_run:
            raise UserInputError(
                f"--overwrite refuses to delete {output_dir!r}: it is not a tfadv run folder (no {CONFIG_FILE})"
            )
    return output_dir


def validate_names(config: TrainConfig) -> None:
    recipes.get(config.recipe)
    if config.model not in models.REGISTRY:
        raise UserInputError(f"--model={config.model!r}: unknown model; expected one of {sorted(models.REGISTRY)}")
    data_lib.parse_augment(config.augment)
    runtime.resolve_jit_compile(config.jit_compile)
    if config.distribution not in runtime.DISTRIBUTIONS:
        raise UserInputError(f"--distribution={config.distribution!r}: expected one of {runtime.DISTRIBUTIONS}")
    try:
        training.model_options(config)
    except ValueError as e:
        raise UserInputError(str(e)) from e


def load_data(config: TrainConfig):
    return data_lib.load(
        config.dataset,
        data_dir=config.data_dir or None,
        validation_fraction=config.validation_fraction,
        imbalance=config.imbalance,
        train_limit=config.train_limit,
        test_limit=config.test_limit,
        seed=config.seed,
    )


def prepare_output_dir(config: TrainConfig, output_dir: str) -> None:
    if os.path.isdir(output_dir) and config.overwrite:
        shutil.rmtree(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, CONFIG_FILE), "w") as f:
        f.write(config.to_json())


def run_training(config: TrainConfig, extra_callbacks=()) -> RunSummary:
    """Runs a whole training job as `python -m tfadv.train` does (importable for tests and tools)."""
    start = time.time()
    config.validate()
    validate_names(config)
    output_dir = check_output_dir(config)
    config = dataclasses.replace(config, output_dir=output_dir)
    runtime.split_cpu(config.logical_cpus)
    runtime.set_seed(config.seed, config.deterministic)
    strategy = runtime.make_strategy(config.distribution)
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise UserInputError(f"--batch_size={config.batch_size} must be a multiple of the {replicas} replicas")
    dataset = load_data(config)
    if len(dataset.train) == 0 or len(dataset.test) == 0:
        raise UserInputError(f"{config.dataset}: empty training or test split after limits")
    print(dataset.summary(), flush=True)
    prepare_output_dir(config, output_dir)

    def callbacks(stage):
        return list(extra_callbacks) + training.standard_callbacks(config, output_dir, stage)

    ctx = recipes.RunContext(
        config=config,
        data=dataset,
        strategy=strategy,
        output_dir=output_dir,
        jit_compile=runtime.resolve_jit_compile(config.jit_compile),
        callbacks=callbacks,
    )
    result = recipes.get(config.recipe)(ctx)
    result.models, result.main = preprocessing.add_test_noise(ctx, result.models, result.main)
    exports = export.export_run_models(output_dir, result.models)
    test_images, test_labels = dataset.test.float_images(), dataset.test.labels
    accuracy = {
        name: float((evaluate.predict_probabilities(model, test_images).argmax(axis=1) == test_labels).mean())
        for name, model in result.models.items()
    }
    summary = RunSummary(
        output_dir=output_dir,
        main=result.main,
        test_accuracy=accuracy,
        exports=exports,
        seconds=time.time() - start,
        dataset=dataset.summary(),
        notes={"replicas": strategy.num_replicas_in_sync, "onednn": onednn.is_enabled(), **result.notes},
    )
    export.write_json_atomic(os.path.join(output_dir, export.SUMMARY_FILE), dataclasses.asdict(summary))
    return summary
