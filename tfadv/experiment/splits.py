"""What the attack and evaluation jobs share: the images they run on (a split of a run's own data
set, or of one named explicitly), the model's fit to them, and the checks of their common fields."""

import math
import os

from tfadv.experiment import run_folder
from tfadv.runtime import choices
from tfadv.runtime.choices import SPLITS

MODEL_OUTPUTS = ("", "logits", "probabilities")


def check_eps(eps, norm="inf") -> None:
    """A finite eps >= 0; at most 1 (pixel scale) unless the norm is L2 or L1."""
    at_most = choices.NORM_EPS_MAX.get(choices.norm_name(norm), 1.0)
    number = isinstance(eps, (int, float)) and math.isfinite(eps) and eps >= 0
    if not (number and (at_most is None or eps <= at_most)):
        raise ValueError(
            "Expected eps in [0, 1] "
            f"(pixel scale; an L2 or L1 eps may exceed 1). Received: eps={eps}"
        )


def check_fields(job, minimums: dict) -> None:
    """Integer fields at least their minimum ({name: minimum}), the split and the declared model
    output."""
    for name, minimum in minimums.items():
        if getattr(job, name) < minimum:
            raise ValueError(f"Expected {name} >= {minimum}. Received: {name}={getattr(job, name)}")
    if job.split not in SPLITS:
        raise ValueError(f"Expected split to be one of {SPLITS}. Received: split={job.split!r}")
    if job.model_output not in MODEL_OUTPUTS:
        raise ValueError(
            "Expected model_output '', 'logits' or 'probabilities'. "
            f"Received: model_output={job.model_output!r}"
        )


def load_split(
    model_path: str, dataset: str = "", data_dir: str = "", split: str = "test", limit: int = 0
):
    """(ImageSet, class names) of `split`: the run's data set (its config.json: limits, validation
    share, seed) unless `dataset` is given. Errors name the arguments."""
    from tfadv import data as data_lib

    if split not in SPLITS:
        raise ValueError(f"Expected split to be one of {SPLITS}. Received: split={split!r}")
    config = (
        run_folder.read_json(os.path.join(model_path, run_folder.CONFIG_FILE))
        if os.path.isdir(model_path)
        else {}
    )
    name = dataset or config.get("dataset")
    if not name:
        raise ValueError(f"model={model_path!r} is not a run folder; pass dataset= (and data_dir=)")
    run = (
        config if not dataset or dataset == config.get("dataset") else {}
    )  # so that split='val' is the run's own
    data = data_lib.load(
        name,
        data_dir=data_dir or run.get("data_dir") or None,
        validation_fraction=run.get("validation_fraction", 0.1),
        imbalance=run.get("imbalance"),
        train_limit=run.get("train_limit", 0),
        test_limit=run.get("test_limit", 0),
        seed=run.get("seed", 0),
    )
    images = getattr(data, split).head(limit)
    if len(images) == 0:
        raise ValueError(f"dataset={name!r}: the {split} split is empty")
    return images, data.class_names


def check_compatible(clf, images, class_names, argument: str = "model", path: str = "") -> None:
    """The model takes the images' shape and has as many classes as the data set; errors name
    `argument` (and echo `path`, where the model came from)."""
    shape = clf.input_shape
    found = tuple(images.images.shape[1:])
    where = f"{argument}={path!r}" if path else argument
    if shape is not None and all(s is not None for s in shape[1:]) and tuple(shape[1:]) != found:
        raise ValueError(
            f"{where}: the model takes {tuple(shape[1:])} images; the data set has {found}"
        )
    if clf.num_classes is not None and clf.num_classes != len(class_names):
        raise ValueError(
            f"{where}: the model has {clf.num_classes} classes; the data set has {len(class_names)}"
        )
