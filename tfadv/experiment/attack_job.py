"""The attack job behind `python -m tfadv.attack`: attack a trained model on a data split and
write the adversarial set, an example grid and a summary, atomically.

    job = AttackJob(model="saved_models/RUN", attack="pgd", eps=0.03, options={"steps": 10})
    lines = run_attack_job(job)

`check` needs no TensorFlow (cheap mistakes fail in well under a second); `run_attack_job`
imports it. Errors name the job's fields (`eps=5.0`); the CLI shows them as flags.
"""

import dataclasses
import os

from tfadv.attacks import options as attack_options

FORMATS = ("npz", "tfrecord")
CURVE_POINTS = 50  # eps values of curve.csv (the distances section of evaluate plots 60)


@dataclasses.dataclass
class AttackJob:
    """One attack run.

    Attributes:
        model: run folder, .keras file or SavedModel to attack.
        model_name: model inside a run folder (default: the run's main model).
        model_output: "logits" or "probabilities" for SavedModels that do not say.
        surrogate: transfer attack: generate the examples on this model instead.
        attack: an attack name or spec ('pgd(steps=10, loss=margin)').
        eps: budget in pixel scale (None: the attack takes none, e.g. patch).
        options: the attack's options (steps, alpha, norm, loss, target, ...).
        dataset, data_dir: the data (default: the run's, from its config.json).
        split, limit: which images (limit 0: all).
        batch_size, seed: as in `tfadv.attacks.run_attack`.
        output_dir, overwrite, format, grid_images, verbose: what is written and shown.
    """

    model: str = ""
    model_name: str = ""
    model_output: str = ""
    surrogate: str = ""
    attack: str = "pgd"
    eps: float | None = None
    options: dict = dataclasses.field(default_factory=dict)
    dataset: str = ""
    data_dir: str = ""
    split: str = "test"
    limit: int = 0
    batch_size: int = 256
    seed: int = 0
    output_dir: str = ""
    overwrite: bool = False
    format: str = "npz"
    grid_images: int = 8
    verbose: int = 1


def default_output_dir(job: AttackJob) -> str:
    """Inside the attacked run folder (RUN/attacks/NAME); attack_results/NAME for a bare model
    file."""
    from_name = job.attack.split("(")[0].split(":")[0]
    name = (
        f"{from_name}-eps{job.eps:g}-{job.split}"
        if job.eps is not None
        else f"{from_name}-{job.split}"
    )
    if os.path.exists(os.path.join(job.model, "config.json")):
        return os.path.join(job.model, "attacks", name)
    model = os.path.basename(os.path.normpath(job.model)).removesuffix(".keras")
    return os.path.join("attack_results", f"{model}-{name}")


def check(job: AttackJob) -> str:
    """Checks that need no TensorFlow; returns the output folder."""
    from tfadv.experiment import run_folder, splits

    if not job.model:
        raise ValueError(
            "Expected a model (a run folder, .keras file or SavedModel). Received: model=''"
        )
    for name in ("model", "surrogate"):
        path = getattr(job, name)
        if path and not os.path.exists(path):
            raise FileNotFoundError(
                f"Expected an existing path; it does not exist. Received: {name}={path!r}"
            )
    norm = check_options(job).get("norm", "inf")
    if job.eps is not None:
        splits.check_eps(job.eps, norm)
    splits.check_fields(job, {"batch_size": 1, "limit": 0, "grid_images": 0})
    if job.format not in FORMATS:
        raise ValueError(f"Expected format in {FORMATS}. Received: format={job.format!r}")
    output_dir = job.output_dir or default_output_dir(job)
    run_folder.check_new_folder(output_dir, job.overwrite)
    return output_dir


def check_options(job: AttackJob) -> dict:
    """The attack's options (its spec's, then `job.options`) checked against its schema
    (`tfadv.attacks.options`); returns them. Attack functions outside the registry are checked
    when they are made."""
    name, given = attack_options.parse(job.attack)
    merged = attack_options.check(name, {**given, **job.options})
    schema = attack_options.schema(name)
    if job.eps is None and schema.needs_eps:
        raise ValueError(
            f"Expected eps (pixel scale, e.g. eps=0.03) for attack {name!r}. Received: eps=None"
        )
    return {**schema.defaults(), **merged}


def run_attack_job(job: AttackJob) -> list:
    """Runs the job; returns the lines to print."""
    output_dir = check(job)
    from tfadv import attacks, models
    from tfadv.evaluation import plots
    from tfadv.experiment import run_folder, splits
    from tfadv.runtime import devices
    from tfadv.runtime.files import atomic_dir, write_json

    devices.set_seed(job.seed, deterministic=False)  # also makes unseeded draws repeatable
    attack = attacks.get(job.attack, **job.options)
    if job.eps is None and attack.name in attack_options.MINIMUM_NORM_ATTACKS and not job.surrogate:
        return _distances_job(job, attack, output_dir)
    output = job.model_output or None
    model = run_folder.load_model(job.model, job.model_name, "model", output=output)
    surrogate = (
        run_folder.load_model(job.surrogate, argument="surrogate", output=output)
        if job.surrogate
        else model
    )
    split, class_names = splits.load_split(
        job.model, job.dataset, job.data_dir, job.split, job.limit
    )
    splits.check_compatible(models.as_classifier(model), split, class_names, "model", job.model)
    if job.surrogate:
        splits.check_compatible(
            models.as_classifier(surrogate), split, class_names, "surrogate", job.surrogate
        )
    targets = attack.target
    if isinstance(targets, int) and not 0 <= targets < len(class_names):
        raise ValueError(
            f"Expected a target class in [0, {len(class_names)}). Received: target={targets}"
        )
    images = split.float_images()
    seed = job.seed if attack.takes_seed else None
    result = attacks.run_attack(
        surrogate,
        (images, split.labels),
        attack,
        job.eps,
        batch_size=job.batch_size,
        seed=seed,
        progress=job.verbose > 0,
        eval_model=model,
    )
    model_path = run_folder.resolve_model_path(job.model, job.model_name)
    surrogate_path = (
        run_folder.resolve_model_path(job.surrogate, argument="surrogate") if job.surrogate else ""
    )
    summary = {
        **result.summary(),
        "attack": attack.describe(),
        "eps": job.eps,
        "model": model_path,
        "surrogate": surrogate_path,
        "split": job.split,
        "seed": seed,
    }

    def write(tmp):
        attacks.save(result, os.path.join(tmp, f"adversarial.{job.format}"))
        if job.grid_images > 0:
            n = min(job.grid_images, len(result))
            plots.adversarial_grid(
                os.path.join(tmp, "grid.png"),
                images[:n],
                result.adversarial[:n],
                result.labels[:n],
                result.clean_predictions[:n],
                result.adversarial_predictions[:n],
                class_names,
                title=f"{attack.describe()} eps={job.eps}",
            )
        write_json(os.path.join(tmp, "summary.json"), summary)

    atomic_dir(output_dir, write)
    lines = [
        f"model: {model_path}"
        + (f"  (examples generated on {surrogate_path})" if surrogate_path else ""),
        f"attack: {attack.describe()} eps={job.eps}  on {summary['n']} {job.split} images",
        f"clean accuracy:       {summary['clean_accuracy']:.4f}",
        f"adversarial accuracy: {summary['adversarial_accuracy']:.4f}  "
        f"(on the {summary['n_correct']} clean-correct: "
        f"{summary['adversarial_accuracy_on_correct']:.4f})",
    ]
    if "target_success_rate" in summary:
        lines.append(f"target success rate:  {summary['target_success_rate']:.4f}")
    lines.append(f"written: {output_dir}/ (adversarial.{job.format}, grid.png, summary.json)")
    return lines


def _distances_job(job: AttackJob, attack, output_dir: str) -> list:
    """A minimum-norm attack without eps: each image's distance to the boundary (distances.csv),
    their median and quantiles (summary.json), and the robust-accuracy-vs-eps curve (curve.png,
    curve.csv) that one run gives."""
    import numpy as np
    import pandas as pd

    from tfadv import attacks, models
    from tfadv.evaluation import boundary, plots
    from tfadv.experiment import run_folder, splits
    from tfadv.runtime.files import atomic_dir, write_json

    model = run_folder.load_model(
        job.model, job.model_name, "model", output=job.model_output or None
    )
    split, class_names = splits.load_split(
        job.model, job.dataset, job.data_dir, job.split, job.limit
    )
    splits.check_compatible(models.as_classifier(model), split, class_names, "model", job.model)
    options = {k: v for k, v in attack.options.items() if k not in ("norm", "jit_compile")}
    norm = attack.info.option(attack.options, "norm") or "2"
    images, labels = split.float_images(), split.labels
    found = boundary.search(model, images, labels, attack.name, norm, job.batch_size, **options)
    distances, adversarial = found.distances, found.adversarial
    clean = attacks.predict_classes(model, images, job.batch_size)
    table = pd.DataFrame(
        {
            "index": np.arange(len(labels)),
            "label": labels,
            "clean_prediction": clean,
            "distance": distances,
            "found": np.isfinite(distances),
        }
    )
    correct = clean == labels
    attacked = correct & np.isfinite(distances)
    # misclassified images are at distance 0: the grid ends past the farthest one attacked
    curve = boundary.curve_frame(distances, attack.describe(), points=CURVE_POINTS)
    quantiles = {
        f"q{int(q * 100)}": value for q, value in boundary.quantiles(distances[correct]).items()
    }
    summary = {
        "attack": attack.describe(),
        "norm": norm,
        "model": run_folder.resolve_model_path(job.model, job.model_name),
        "n": int(len(labels)),
        "clean_accuracy": float((clean == labels).mean()),
        "found_on_clean_correct": float(attacked.sum() / max(1, (clean == labels).sum())),
        "median_distance_clean_correct": quantiles.get("q50", float("nan")),
        "quantiles_clean_correct": quantiles,
    }

    def write(tmp):
        table.to_csv(os.path.join(tmp, "distances.csv"), index=False)
        curve.to_csv(os.path.join(tmp, "curve.csv"), index=False)
        np.savez_compressed(
            os.path.join(tmp, "adversarial.npz"),
            adversarial=adversarial,
            distances=distances,
            labels=labels,
        )
        plots.save_png(
            plots.eps_curves(curve, f"{attack.describe()}: accuracy vs eps (L{norm})"),
            os.path.join(tmp, "curve.png"),
        )
        write_json(os.path.join(tmp, "summary.json"), summary)

    atomic_dir(output_dir, write)
    return [
        f"model: {summary['model']}",
        f"attack: {attack.describe()} (minimum norm, L{norm}) on {summary['n']} {job.split} images",
        f"clean accuracy:       {summary['clean_accuracy']:.4f}",
        f"median distance to the boundary (clean-correct images, L{norm}): "
        f"{summary['median_distance_clean_correct']:.4g}"
        f"  (adversarial found for {summary['found_on_clean_correct']:.1%})",
        f"written: {output_dir}/ (distances.csv, curve.csv, curve.png, adversarial.npz, "
        "summary.json)",
    ]
