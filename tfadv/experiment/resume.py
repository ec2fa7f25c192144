"""What makes a resumed run the same run: per-epoch state that is a function of (seed, epoch),
a backup that is never half-written, and a configuration that cannot silently change.

Keras' `BackupAndRestore` restores weights, optimizer and epoch, but not the state of the
models' random generators (Dropout, GaussianNoise), and it writes its weights file and its
epoch file one after the other, in place: a kill between the two, or during the first, leaves
a backup that resumes the wrong epoch or cannot be read. Here:

- `EpochStart` sets the input pipelines' epoch and reseeds every generator of the model from
  (seed, epoch) at each epoch start, so draws inside an epoch depend on (seed, epoch, step);
- `Backup` writes weights, epoch and the state of the callbacks that carry one (those with
  `get_state()` / `set_state(state)`, such as the overfitting guard) together into a new folder
  and swaps it in atomically; `restore` reads it before `fit` (weights, optimizer state, the
  callbacks' states and the epoch to start from); a backup written when a callback stopped
  training says so (`stopped`), and the stage is then finished;
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
STATE_FILE = "training_metadata.json"  # {"epoch": next epoch to train, "stopped": bool}
CALLBACKS_FILE = (
    "callbacks.json"  # [state of each stateful callback, arrays replaced by references]
)
ARRAYS_FILE = "callbacks.npz"  # the callbacks' arrays
_ARRAYS = "__arrays__"
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
    """Sets generator i of `model` to the state [derived_seed(seed, epoch, i), 0]; returns their
    count."""
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
        epoch_variable: the tf.Variable the training pipelines read (see tfadv.data.pipeline), or
        None.
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


def stateful(callbacks) -> list:
    """The callbacks that carry state across epochs (they have get_state and set_state)."""
    return [
        c
        for c in callbacks
        if callable(getattr(c, "get_state", None)) and callable(getattr(c, "set_state", None))
    ]


def _split_arrays(state: dict, index: int, arrays: dict) -> dict:
    """`state` with every list of numpy arrays replaced by {"__arrays__": n}; the arrays go to
    `arrays`."""
    out = {}
    for key, value in state.items():
        if (
            isinstance(value, (list, tuple))
            and value
            and all(isinstance(a, np.ndarray) for a in value)
        ):
            arrays.update({f"{index}/{key}/{i}": a for i, a in enumerate(value)})
            value = {_ARRAYS: len(value)}
        out[key] = value
    return out


def _join_arrays(state: dict, index: int, arrays) -> dict:
    out = {}
    for key, value in state.items():
        if isinstance(value, dict) and set(value) == {_ARRAYS}:
            value = [arrays[f"{index}/{key}/{i}"] for i in range(value[_ARRAYS])]
        out[key] = value
    return out


def write_callback_states(folder: str, callbacks) -> None:
    """Writes each callback's get_state() (JSON-able values, lists of arrays) into `folder`."""
    arrays, states = {}, []
    for index, callback in enumerate(callbacks):
        states.append(
            {
                "callback": type(callback).__name__,
                "state": _split_arrays(callback.get_state(), index, arrays),
            }
        )
    with open(os.path.join(folder, CALLBACKS_FILE), "w") as f:
        json.dump(states, f)
    np.savez(os.path.join(folder, ARRAYS_FILE), **arrays)


def read_callback_states(folder: str, callbacks) -> None:
    """Calls set_state on each of `callbacks` with what `write_callback_states` wrote for it."""
    path = os.path.join(folder, CALLBACKS_FILE)
    states = []
    if os.path.exists(path):
        with open(path) as f:
            states = json.load(f)
    names = [type(c).__name__ for c in callbacks]
    if [s["callback"] for s in states] != names:
        raise ValueError(
            f"Expected the backup in {folder!r} to hold the state of the callbacks {names}. "
            f"Received: states of {[s['callback'] for s in states]}"
        )
    if not callbacks:
        return
    with np.load(os.path.join(folder, ARRAYS_FILE)) as arrays:
        for index, (callback, entry) in enumerate(zip(callbacks, states, strict=True)):
            callback.set_state(_join_arrays(entry["state"], index, arrays))


class Backup(keras.callbacks.Callback):
    """Writes the training state (weights with optimizer state, next epoch, whether training
    was stopped, the states of `callbacks`) at every epoch end, all or nothing: into a new folder
    swapped in for `backup_dir` (see `restore`).

    Put it last in the callback list, after every callback whose state it writes.

    Args:
        backup_dir: the backup folder (latest.weights.h5, training_metadata.json, callbacks.*).
        callbacks: callbacks with get_state() / set_state(state) whose state is written too.
    """

    def __init__(self, backup_dir: str, callbacks=()):
        super().__init__()
        self.backup_dir = backup_dir
        self.callbacks = list(callbacks)

    def on_epoch_end(self, epoch, logs=None):
        def write(tmp):
            self.model.save_weights(os.path.join(tmp, WEIGHTS_FILE))
            write_callback_states(tmp, self.callbacks)
            with open(os.path.join(tmp, STATE_FILE), "w") as f:
                json.dump({"epoch": epoch + 1, "stopped": bool(self.model.stop_training)}, f)

        atomic_dir(self.backup_dir, write)


def read_state(backup_dir: str) -> dict:
    """The backup's {"epoch": next epoch, "stopped": bool}, or {} when there is no backup."""
    weights = os.path.join(backup_dir, WEIGHTS_FILE)
    state = os.path.join(backup_dir, STATE_FILE)
    if not (os.path.exists(weights) and os.path.exists(state)):
        return {}
    with open(state) as f:
        found = json.load(f)
    return {"epoch": int(found["epoch"]), "stopped": bool(found.get("stopped", False))}


def restore(model, backup_dir: str, strategy=None, callbacks=()) -> int:
    """Loads the backup in `backup_dir` into a compiled `model` and the states of `callbacks`
    (the ones `Backup` wrote, in the same order); returns the epoch to start from (0 when there
    is no backup). See `read_state` for whether training had been stopped."""
    state = read_state(backup_dir)
    if not state:
        return 0
    load_weights(model, os.path.join(backup_dir, WEIGHTS_FILE), strategy)
    read_callback_states(backup_dir, list(callbacks))
    return state["epoch"]


def load_weights(model, path: str, strategy=None) -> None:
    """`model.load_weights(path)` with the optimizer's variables built first, so that its saved
    state (step count, moments) is loaded too."""
    if model.optimizer is not None and not model.optimizer.built:
        with strategy.scope() if strategy is not None else contextlib.nullcontext():
            model.optimizer.build(model.trainable_variables)
    model.load_weights(path)


def remove_backup(backup_dir: str) -> None:
    shutil.rmtree(backup_dir, ignore_errors=True)
