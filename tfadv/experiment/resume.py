"""What makes a resumed run the same run: per-epoch state that is a function of (seed, epoch),
a backup that is never half-written, and a configuration that cannot silently change.

Keras' `BackupAndRestore` restores weights, optimizer and epoch, but not the state of the
models' random generators (Dropout, GaussianNoise), and it writes its weights file and its
epoch file one after the other, in place: a kill between the two, or during the first, leaves
a backup that resumes the wrong epoch or cannot be read. Here:

- `EpochStart` sets the input pipelines' epoch and reseeds every generator of the model from
  (seed, epoch) at each epoch start, so draws inside an epoch depend on (seed, epoch, step);
- `Backup` writes weights and epoch together into a new folder and swaps it in atomically;
  `restore` reads it before `fit` (weights, optimizer state and the epoch to start from);
- `TrainConfig.check_resumable` refuses to resume a run folder with different settings.
"""

import contextlib
import json
import os
import shutil

import keras
import numpy as np

from tfadv.runtime.files import atomic_dir

WEIGHTS_FILE = "latest.weights.h5"
STATE_FILE = "training_metadata.json"  # {"epoch": next epoch to train}, as Keras' BackupAndRestore
SEED_STATE = "seed_generator_state"  # the variable name of keras.random.SeedGenerator states


def derived_seed(*parts) -> int:
    """A 32-bit seed that is a function of integer `parts` only (e.g. seed, epoch, index)."""
    return int(np.random.SeedSequence([int(p) % 2**63 for p in parts]).generate_state(1)[0])


def generator_states(model) -> list:
    """The state variables of every `keras.random.SeedGenerator` in `model` (nested models too)."""
    seen, states = set(), []
    for variable in model.variables:
        if variable.name == SEED_STATE and id(variable) not in seen:
            seen.add(id(variable))
            states.append(variable)
    return states


def reseed_generators(model, seed: int, epoch: int) -> int:
    """Sets generator i of `model` to the state [derived_seed(seed, epoch, i), 0]; returns their count."""
    states = generator_states(model)
    for i, state in enumerate(states):
        value = np.array([derived_seed(seed, epoch, i), 0])
        state.assign(value.astype(keras.backend.standardize_dtype(state.dtype)))
    return len(states)


class EpochStart(keras.callbacks.Callback):
    """At every epoch start: sets the pipelines' epoch variable and reseeds the model's generators.

    Put it first in the callback list (before callbacks that use the model or the data).

    Args:
        seed: the run's seed.
        epoch_variable: the tf.Variable the training pipelines read (see tfadv.data.pipeline), or None.
        models: models whose generators to reseed (default: the model being fit).
    """

    def __init__(self, seed: int, epoch_variable=None, models=()):
        super().__init__()
        self.seed = int(seed)
        self.epoch_variable = epoch_variable
        self.models = tuple(models)

    def on_epoch_begin(self, epoch, logs=None):
        if self.epoch_variable is not None:
            self.epoch_variable.assign(epoch)
        for model in self.models or (self.model,):
            reseed_generators(model, self.seed, epoch)


class Backup(keras.callbacks.Callback):
    """Writes the training state (weights with optimizer state, next epoch) at every epoch end,
    all or nothing: into a new folder swapped in for `backup_dir` (see `restore`).

    Args:
        backup_dir: the backup folder (latest.weights.h5, training_metadata.json).
    """

    def __init__(self, backup_dir: str):
        super().__init__()
        self.backup_dir = backup_dir

    def on_epoch_end(self, epoch, logs=None):
        def write(tmp):
            self.model.save_weights(os.path.join(tmp, WEIGHTS_FILE))
            with open(os.path.join(tmp, STATE_FILE), "w") as f:
                json.dump({"epoch": epoch + 1}, f)

        atomic_dir(self.backup_dir, write)


def restore(model, backup_dir: str, strategy=None) -> int:
    """Loads the backup in `backup_dir` into a compiled `model`; returns the epoch to start from
    (0 when there is no backup)."""
    weights = os.path.join(backup_dir, WEIGHTS_FILE)
    state = os.path.join(backup_dir, STATE_FILE)
    if not (os.path.exists(weights) and os.path.exists(state)):
        return 0
    with open(state) as f:
        epoch = int(json.load(f)["epoch"])
    load_weights(model, weights, strategy)
    return epoch


def load_weights(model, path: str, strategy=None) -> None:
    """`model.load_weights(path)` with the optimizer's variables built first, so that its saved
    state (step count, moments) is loaded too."""
    if model.optimizer is not None and not model.optimizer.built:
        with strategy.scope() if strategy is not None else contextlib.nullcontext():
            model.optimizer.build(model.trainable_variables)
    model.load_weights(path)


def remove_backup(backup_dir: str) -> None:
    shutil.rmtree(backup_dir, ignore_errors=True)
