"""Experiments: the configuration of a run, the training recipes, the run folder, and the jobs
behind the command-line tools. The only layer that reads a configuration; errors name its fields.

A run folder's models and data, from Python (importing this package loads no TensorFlow):

    run = tfadv.experiment.load_run("saved_models/standard_quickstart", limit=256)
    run.model, run.data, run.class_names, run.config    # main model, test split, names, config.json
    model = tfadv.experiment.load_model("saved_models/standard_quickstart")
    test = tfadv.experiment.load_split("saved_models/standard_quickstart", limit=256)
    images, labels = test.float_images(), test.labels   # float32 in [0, 1], int64 class ids
"""

import dataclasses as _dataclasses
import os as _os

from tfadv.experiment import run_folder as _run_folder
from tfadv.experiment import splits as _splits


def load_model(run: str, name: str = "", output=None):
    """The Keras model `name` of a run folder (default: the run's main model, as in its
    summary.json); `run` may also be a .keras file or a SavedModel (`output` as in
    `tfadv.models.load`). Errors name `run` and `name`."""
    if not isinstance(name, str):
        raise TypeError(f"Expected name to be a string. Received: name={name!r}")
    return _run_folder.load_model(run, name, argument="run", output=output)


def load_split(
    run: str, split: str = "test", limit: int = 0, dataset: str = "", data_dir: str = ""
):
    """The `split` ("test", "val" or "train") of the data set a run was trained on, as the run saw
    it (its limits, validation share, imbalance and seed): an ImageSet of uint8 images and int64
    labels, the first `limit` images (0: all). `dataset` (and `data_dir`) load another data set."""
    if not (isinstance(limit, int) and limit >= 0):
        raise ValueError(f"Expected limit >= 0 (0: all). Received: limit={limit!r}")
    if not dataset and not _run_folder.is_run_folder(run):
        raise ValueError(
            f"run={run!r} is not a run folder (no {_run_folder.CONFIG_FILE}); "
            "pass dataset= (and data_dir=)"
        )
    images, _ = _splits.load_split(
        run, dataset=dataset, data_dir=data_dir, split=split, limit=limit
    )
    return images


@_dataclasses.dataclass
class Run:
    """A run folder loaded: its main (or named) Keras model, one data split as the run saw it
    (an ImageSet: uint8 images, int64 labels), the split's class names, and its config.json and
    summary.json ({} when absent)."""

    path: str
    model: object
    data: object
    class_names: list
    config: dict
    summary: dict


def load_run(run: str, split: str = "test", limit: int = 0, name: str = "", output=None) -> Run:
    """The model `name` (default: the main model) and the `split` of the run folder `run`, the
    first `limit` images (0: all); `output` as in `load_model`. Errors name `run`."""
    if not _run_folder.is_run_folder(run):
        raise ValueError(
            f"Expected a run folder (with {_run_folder.CONFIG_FILE}). Received: run={run!r}"
        )
    if not (isinstance(limit, int) and limit >= 0):
        raise ValueError(f"Expected limit >= 0 (0: all). Received: limit={limit!r}")
    model = load_model(run, name, output=output)
    data, class_names = _splits.load_split(run, split=split, limit=limit)
    summary_path = _os.path.join(run, _run_folder.SUMMARY_FILE)
    summary = _run_folder.read_json(summary_path) if _os.path.exists(summary_path) else {}
    config = _run_folder.read_json(_os.path.join(run, _run_folder.CONFIG_FILE))
    return Run(run, model, data, list(class_names), config, summary)
