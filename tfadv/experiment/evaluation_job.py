"""The evaluation job behind `python -m tfadv.evaluate`: one or more models, one eps, the attack
suite and the masking checklist, written as a report folder.

    job = EvaluationJob(models=["saved_models/distill:student_T1"], eps=8 / 255, suite="standard")
    lines = run_evaluation_job(job)

A model is a run folder (its main model), `RUN:NAME` (model NAME of that run), a .keras file or
a SavedModel. `check` needs no TensorFlow; errors name the job's fields (`eps=5.0`), which the
CLI shows as flags.
"""

import dataclasses
import math
import os
import time

from tfadv.experiment import run_folder, splits


@dataclasses.dataclass
class EvaluationJob:
    """One evaluation.

    Attributes:
        models: model paths (RUN, RUN:NAME, .keras, SavedModel); several give a transfer matrix.
        model_output: "logits" or "probabilities" for SavedModels that do not say.
        eps: the evaluation budget, pixel scale (L-inf: in [0, 1]).
        norm: "inf" or "2".
        suite: "standard", "fast" or a comma list of attack specs.
        sweep_eps: comma list of the FGSM/PGD sweep's eps values.
        dataset, data_dir, split, limit: the images (default: the first run's test split).
        batch_size, seed, eot_samples: see `tfadv.evaluation.evaluate`.
        output_dir, overwrite, verbose: where the report goes and what is shown.
    """

    models: list = dataclasses.field(default_factory=list)
    model_output: str = ""
    eps: float | None = None
    norm: str = "inf"
    suite: str = "standard"
    sweep_eps: str = "0.001,0.01,0.03,0.05,0.1,0.3"
    dataset: str = ""
    data_dir: str = ""
    split: str = "test"
    limit: int = 0
    batch_size: int = 256
    seed: int = 0
    eot_samples: int = 8
    output_dir: str = ""
    overwrite: bool = False
    verbose: int = 1


def split_model(spec: str):
    """'RUN:NAME' -> (RUN, NAME); other paths -> (path, '')."""
    path, sep, name = spec.rpartition(":")
    if sep and path and os.path.isdir(path) and os.sep not in name:
        return path, name
    return spec, ""


def model_names(specs) -> list:
    """Short unique names: the run folder or file name, plus the model name for RUN:NAME."""
    names = []
    for spec in specs:
        path, name = split_model(spec)
        base = os.path.basename(os.path.normpath(path)).removesuffix(".keras")
        label = f"{base}:{name}" if name else base
        names.append(label if label not in names else f"{label}_{len(names)}")
    return names


def default_output_dir(job: EvaluationJob) -> str:
    """RUN/evaluations/<suite>-eps<eps>-<split> for one run folder, else evaluations/<names>-..."""
    suite = job.suite if job.suite in ("standard", "fast") else "custom"
    tail = f"{suite}-eps{job.eps:g}-{job.split}"
    path, name = split_model(job.models[0])
    if len(job.models) == 1 and run_folder.is_run_folder(path):
        return os.path.join(path, "evaluations", f"{name}-{tail}" if name else tail)
    return os.path.join("evaluations", "+".join(n.replace(":", "-") for n in model_names(job.models)) + f"-{tail}")


def parse_eps_list(text: str) -> list:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"Expected a comma list of numbers. Received: sweep_eps={text!r}") from None
    if not values or not all(math.isfinite(v) and 0 <= v <= 1 for v in values):
        raise ValueError(f"Expected eps values in [0, 1]. Received: sweep_eps={text!r}")
    return values


def check(job: EvaluationJob) -> str:
    """Checks that need no TensorFlow; returns the output folder."""
    if not job.models:
        raise ValueError("models=[]: at least one model is required (a run folder, RUN:NAME, .keras file or SavedModel)")
    for spec in job.models:
        path, name = split_model(spec)
        run_folder.resolve_model_path(path, name, "model")
    if job.eps is None:
        raise ValueError("eps=None: the evaluation budget is required (pixel scale, e.g. eps=0.03)")
    if job.norm not in ("inf", "linf", "2", "l2"):
        raise ValueError(f"Expected norm 'inf' or '2'. Received: norm={job.norm!r}")
    splits.check_eps(job.eps, job.norm)
    parse_eps_list(job.sweep_eps)
    splits.check_fields(job, {"batch_size": 1, "eot_samples": 1, "limit": 0})
    output_dir = job.output_dir or default_output_dir(job)
    run_folder.check_new_folder(output_dir, job.overwrite)
    return output_dir


def run_evaluation_job(job: EvaluationJob) -> list:
    """Runs the job; returns the lines to print."""
    output_dir = check(job)
    from tfadv import evaluation
    from tfadv.runtime import devices

    start = time.time()
    devices.set_seed(job.seed, deterministic=False)
    evaluation.suite_attacks(job.suite, job.norm)  # an unknown suite or attack fails before any work
    names = model_names(job.models)
    loaded = {}
    for label, spec in zip(names, job.models, strict=True):
        path, name = split_model(spec)
        loaded[label] = run_folder.load_model(path, name, "model", output=job.model_output or None)
    first_path, _ = split_model(job.models[0])
    images, class_names = splits.load_split(first_path, job.dataset, job.data_dir, job.split, job.limit)
    from tfadv import models

    for label, model in loaded.items():
        splits.check_compatible(models.as_classifier(model), images, class_names, f"model {label!r}")
    report = evaluation.evaluate(
        loaded, images.float_images(), images.labels, job.eps, suite=job.suite, norm=job.norm,
        sweep_eps=parse_eps_list(job.sweep_eps), class_names=class_names, batch_size=job.batch_size, seed=job.seed,
        eot_samples=job.eot_samples, progress=job.verbose > 0,
    )  # fmt: skip
    report.settings.update(models=job.models, dataset=job.dataset or "(the run's)", split=job.split, limit=job.limit)
    report.write(output_dir, overwrite=job.overwrite)
    lines = [f"{len(images)} {job.split} images, eps={job.eps:g}, suite: {', '.join(report.suite)}"]
    for name, m in report.models.items():
        flagged = f"  MASKING SUSPECTED (failed checks {', '.join(m.failed_checks)})" if m.failed_checks else ""
        lines.append(
            f"{name}: clean {m.clean['accuracy']:.4f}, robust {m.robust_accuracy:.4f} "
            f"(suite {m.suite.robust_accuracy:.4f}; {m.robust_accuracy_on_correct:.4f} of the clean-correct){flagged}"
        )
    lines.append(f"written: {output_dir}/report.md  ({time.time() - start:.0f} s)")
    return lines
