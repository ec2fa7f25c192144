"""run_training(config): configuration -> data, strategy, recipe -> exported models and a summary.

Everything that can be checked before training (configuration, recipe, model, dataset,
output folder) is checked before the run folder is created, so bad input leaves nothing
behind. Errors name the configuration's fields (`epochs=0`); the CLI shows them as flags.
"""

import dataclasses
import os
import shutil
import tempfile
import time

import numpy as np

from tfadv import data as data_lib
from tfadv import evaluation, models
from tfadv.experiment import recipes, resume, run_folder, training
from tfadv.experiment.config import TrainConfig
from tfadv.runtime import devices, onednn
from tfadv.runtime.files import is_temporary, write_json, write_text


@dataclasses.dataclass
class RunSummary:
    output_dir: str
    main: str
    test_accuracy: dict
    exports: dict
    weights: dict  # name -> models.weights_checksum: equal for bit-identical runs
    seconds: float
    dataset: str
    notes: dict = dataclasses.field(default_factory=dict)
    tflite: dict = dataclasses.field(
        default_factory=dict
    )  # name -> {path, bytes, test_accuracy, agreement}

    def lines(self):
        out = [f"run folder: {self.output_dir}  ({self.seconds:.1f} s, {self.dataset})"]
        for name, acc in self.test_accuracy.items():
            marker = " (main)" if name == self.main else ""
            out.append(f"clean test accuracy {name}{marker}: {acc:.4f}  -> {self.exports[name]}")
        for name, entry in self.tflite.items():
            out.append(
                f"clean test accuracy {name} (TFLite, {entry['bytes']:,} bytes): "
                f"{entry['test_accuracy']:.4f}, "
                f"agrees with {self.main} on {entry['agreement']:.1%}  -> {entry['path']}"
            )
        out.append(
            "weights: " + ", ".join(f"{name} {checksum}" for name, checksum in self.weights.items())
        )
        for key, value in self.notes.items():
            out.append(f"{key}: {value}")
        out.append(f"TensorBoard: tensorboard --logdir {os.path.join(self.output_dir, 'logs')}")
        return out


def validate_names(config: TrainConfig) -> None:
    recipes.get(config.recipe)
    if config.model not in models.REGISTRY:
        raise ValueError(
            f"Expected model to be one of {sorted(models.REGISTRY)}. Received: "
            f"model={config.model!r}"
        )
    data_lib.parse_augment(config.augment)
    devices.resolve_jit_compile(config.jit_compile)
    if config.distribution not in devices.DISTRIBUTIONS:
        raise ValueError(
            f"Expected distribution to be one of {devices.DISTRIBUTIONS}. "
            f"Received: distribution={config.distribution!r}"
        )
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
    """Makes (or, with overwrite, replaces) the run folder and writes config.json; a resumed
    run keeps its config.json and loses only the temporaries a kill left behind."""
    if config.resume and run_folder.is_run_folder(output_dir):
        removed = remove_temporaries(output_dir)
        if removed:
            print(
                f"resume: removed {removed} unfinished temporary file(s) or folder(s) left by the "
                "interrupted run",
                flush=True,
            )
        return
    if config.overwrite:
        run_folder.replace_folder(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    write_text(os.path.join(output_dir, run_folder.CONFIG_FILE), config.to_json())


def check_data(config: TrainConfig, dataset, replicas: int) -> None:
    if config.batch_size % replicas:
        raise ValueError(
            f"Expected batch_size to be a multiple of the {replicas} replicas. "
            f"Received: batch_size={config.batch_size}"
        )
    if len(dataset.train) == 0 or len(dataset.test) == 0:
        raise ValueError(
            "Expected a data set with training and test images after the limits. "
            f"Received: dataset={config.dataset!r}"
        )
    training.check_teacher(config, dataset)


def run_training(config: TrainConfig, extra_callbacks=()) -> RunSummary:
    """Runs a whole training job as `python -m tfadv.train` does (importable for tests and tools).

    Under `distribution="multi_worker"` every worker runs this; only the chief checks and writes
    the run folder, the others write into a scratch folder that is deleted at the end. Resuming
    a multi-worker run reads the run folder on every worker (a shared file system).
    """
    start = time.time()
    config.validate()
    validate_names(config)
    config = dataclasses.replace(
        config, output_dir=config.output_dir or run_folder.default_output_dir(config)
    )
    devices.split_cpu(config.logical_cpus)
    devices.set_seed(config.seed, config.deterministic)
    strategy = devices.make_strategy(config.distribution)
    chief = devices.is_chief(strategy)
    if chief:
        run_folder.check_output_dir(config)
    dataset = load_data(config)
    check_data(config, dataset, strategy.num_replicas_in_sync)
    print(dataset.summary(), flush=True)
    if chief:
        prepare_output_dir(config, config.output_dir)
    devices.barrier(strategy)  # the run folder is ready before any worker reads it
    write_dir = config.output_dir if chief else tempfile.mkdtemp(prefix="tfadv-worker-")
    try:
        summary = _train_and_export(config, dataset, strategy, write_dir, extra_callbacks)
    finally:
        if not chief:
            shutil.rmtree(write_dir, ignore_errors=True)
    summary.seconds = time.time() - start
    if chief:
        write_json(
            os.path.join(config.output_dir, run_folder.SUMMARY_FILE), dataclasses.asdict(summary)
        )
    return summary


def _train_and_export(config, dataset, strategy, write_dir, extra_callbacks) -> RunSummary:
    def callbacks(stage):
        return list(extra_callbacks) + training.standard_callbacks(config, write_dir, stage)

    ctx = recipes.RunContext(
        config=config,
        data=dataset,
        strategy=strategy,
        output_dir=write_dir,
        jit_compile=devices.resolve_jit_compile(config.jit_compile),
        callbacks=callbacks,
        run_dir=config.output_dir,
        epoch=data_lib.epoch_variable(),
    )
    result = recipes.get(config.recipe)(ctx)
    result.models, result.main = recipes.add_test_noise(ctx, result.models, result.main)
    for model in result.models.values():
        resume.reseed_generators(
            model, config.seed, config.epochs
        )  # evaluation draws: a function of the seed
    print(
        f"exporting {', '.join(result.models)} to "
        f"{os.path.join(config.output_dir, run_folder.MODELS_DIR)}",
        flush=True,
    )
    exports = run_folder.export_models(write_dir, result.models)
    exports = {
        name: os.path.join(config.output_dir, os.path.relpath(path, write_dir))
        for name, path in exports.items()
    }
    test_images, test_labels = dataset.test.float_images(), dataset.test.labels
    accuracy = {
        name: float(
            (
                evaluation.predict_probabilities(model, test_images).argmax(axis=1) == test_labels
            ).mean()
        )
        for name, model in result.models.items()
    }
    tflite = _export_tflite(
        config,
        dataset,
        result.models[result.main],
        result.main,
        write_dir,
        test_images,
        test_labels,
    )
    task, index = devices.worker_task(strategy)
    workers = (
        {"worker": f"{task} {index} of {strategy.num_replicas_in_sync} replicas"} if task else {}
    )
    return RunSummary(
        tflite=tflite,
        output_dir=config.output_dir,
        main=result.main,
        test_accuracy=accuracy,
        exports=exports,
        weights={name: models.weights_checksum(model) for name, model in result.models.items()},
        seconds=0.0,
        dataset=dataset.summary(),
        notes={
            "replicas": strategy.num_replicas_in_sync,
            **workers,
            "onednn": onednn.is_enabled(),
            **result.notes,
        },
    )


TFLITE_CALIBRATION = 200  # training images drawn (seeded) to calibrate an int8 export


def _export_tflite(config, dataset, model, name, write_dir, test_images, test_labels) -> dict:
    """The main model as TFLite flat buffers beside its SavedModel
    (RUN/models/NAME_PRECISION.tflite), each with its size, clean test accuracy and agreement with
    the float model."""
    precisions = config.tflite_precisions()
    if not precisions:
        return {}
    size = min(TFLITE_CALIBRATION, len(dataset.train))
    rows = np.sort(
        np.random.default_rng(config.seed).choice(len(dataset.train), size, replace=False)
    )
    calibration = dataset.train.take(rows).float_images()
    written = models.tflite.export_precisions(
        model,
        os.path.join(write_dir, run_folder.MODELS_DIR),
        name,
        precisions,
        calibration,
        config.seed,
    )
    reference = evaluation.predict_probabilities(model, test_images).argmax(axis=1)
    out = {}
    for label, (path, size) in written.items():
        predicted = evaluation.predict_probabilities(models.load(path), test_images).argmax(axis=1)
        out[label] = {
            "path": os.path.join(config.output_dir, os.path.relpath(path, write_dir)),
            "bytes": int(size),
            "test_accuracy": float((predicted == test_labels).mean()),
            "agreement": float((predicted == reference).mean()),
        }
    return out


def remove_temporaries(output_dir: str) -> int:
    """Deletes what an interrupted atomic write leaves in a run folder (see tfadv.runtime.files)."""
    count = 0
    for parent, folders, files in os.walk(output_dir):
        for name in [*folders, *files]:
            if is_temporary(name):
                path = os.path.join(parent, name)
                shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(
                    path
                ) else os.remove(path)
                count += 1
        folders[:] = [f for f in folders if not is_temporary(f)]
    return count
