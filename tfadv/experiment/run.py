"""run_training(config): configuration -> data, strategy, recipe -> exported models and a summary.

Everything that can be checked before training (configuration, recipe, model, dataset,
output folder) is checked before the run folder is created, so bad input leaves nothing
behind. Errors name the configuration's fields (`epochs=0`); the CLI shows them as flags.
"""

import dataclasses
import os
import time

from tfadv import data as data_lib
from tfadv import evaluation, models
from tfadv.experiment import recipes, run_folder, training
from tfadv.experiment.config import TrainConfig
from tfadv.runtime import devices, onednn
from tfadv.runtime.files import write_json, write_text


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


def check_output_dir(config: TrainConfig) -> str:
    """Validates output_dir against overwrite/resume without touching the disk.

    With resume=True an existing run folder is continued (overwrite is then not consulted,
    so a config that sets overwrite can be resumed as it is); an absent one is started.
    """
    output_dir = config.output_dir or default_output_dir(config)
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(f"output_dir={output_dir!r} exists and is not a folder")
    run_folder.check_writable(output_dir)
    if os.path.isdir(output_dir) and os.listdir(output_dir):
        is_run = run_folder.is_run_folder(output_dir)
        if config.resume:
            if not is_run:
                raise ValueError(f"resume=True: {output_dir!r} is not a tfadv run folder (no {run_folder.CONFIG_FILE})")
        elif not config.overwrite:
            raise ValueError(
                f"output folder {output_dir!r} already exists; pass overwrite=True to replace it or resume=True to continue it"
            )
        elif not is_run:
            raise ValueError(
                f"overwrite=True refuses to delete {output_dir!r}: it is not a tfadv run folder (no {run_folder.CONFIG_FILE})"
            )
    return output_dir


def validate_names(config: TrainConfig) -> None:
    recipes.get(config.recipe)
    if config.model not in models.REGISTRY:
        raise ValueError(f"model={config.model!r}: unknown model; expected one of {sorted(models.REGISTRY)}")
    data_lib.parse_augment(config.augment)
    devices.resolve_jit_compile(config.jit_compile)
    if config.distribution not in devices.DISTRIBUTIONS:
        raise ValueError(f"distribution={config.distribution!r}: expected one of {devices.DISTRIBUTIONS}")
    training.model_options(config)
    training.training_attack(config)
    training.monitor_attack(config)


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
    resuming = config.resume and run_folder.is_run_folder(output_dir)
    if not resuming and config.overwrite:
        run_folder.replace_folder(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    write_text(os.path.join(output_dir, run_folder.CONFIG_FILE), config.to_json())


def run_training(config: TrainConfig, extra_callbacks=()) -> RunSummary:
    """Runs a whole training job as `python -m tfadv.train` does (importable for tests and tools)."""
    start = time.time()
    config.validate()
    validate_names(config)
    output_dir = check_output_dir(config)
    config = dataclasses.replace(config, output_dir=output_dir)
    devices.split_cpu(config.logical_cpus)
    devices.set_seed(config.seed, config.deterministic)
    strategy = devices.make_strategy(config.distribution)
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise ValueError(f"batch_size={config.batch_size} must be a multiple of the {replicas} replicas")
    dataset = load_data(config)
    if len(dataset.train) == 0 or len(dataset.test) == 0:
        raise ValueError(f"dataset={config.dataset!r}: empty training or test split after limits")
    training.check_teacher(config, dataset)
    print(dataset.summary(), flush=True)
    prepare_output_dir(config, output_dir)

    def callbacks(stage):
        return list(extra_callbacks) + training.standard_callbacks(config, output_dir, stage)

    ctx = recipes.RunContext(
        config=config,
        data=dataset,
        strategy=strategy,
        output_dir=output_dir,
        jit_compile=devices.resolve_jit_compile(config.jit_compile),
        callbacks=callbacks,
    )
    result = recipes.get(config.recipe)(ctx)
    result.models, result.main = recipes.add_test_noise(ctx, result.models, result.main)
    exports = run_folder.export_models(output_dir, result.models)
    test_images, test_labels = dataset.test.float_images(), dataset.test.labels
    accuracy = {
        name: float((evaluation.predict_probabilities(model, test_images).argmax(axis=1) == test_labels).mean())
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
    write_json(os.path.join(output_dir, run_folder.SUMMARY_FILE), dataclasses.asdict(summary))
    return summary
