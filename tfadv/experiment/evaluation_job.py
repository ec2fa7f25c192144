"""The evaluation job behind `python -m tfadv.evaluate`: one or more models, one eps, the attack
suite and the masking checklist, written as a report folder.

    job = EvaluationJob(models=["saved_models/distill:student_T1"], eps=8 / 255, suite="standard")
    lines = run_evaluation_job(job)

A model is a run folder (its main model), `RUN:NAME` (model NAME of that run), a .keras file or
a SavedModel. `check` needs no TensorFlow; errors name the job's fields (`eps=5.0`), which the
CLI shows as flags.
"""

import dataclasses
import json
import math
import os
import shutil
import time

from tfadv.experiment import deployment_job, run_folder, splits
from tfadv.runtime import choices
from tfadv.runtime.choices import DISTRIBUTIONS


@dataclasses.dataclass
class EvaluationJob:
    """One evaluation.

    Attributes:
        models: model paths (RUN, RUN:NAME, .keras, SavedModel); several give a transfer matrix.
        model_output: "logits" or "probabilities" for SavedModels that do not say.
        eps: the evaluation budget, pixel scale (L-inf: in [0, 1]).
        norm: "inf" or "2".
        suite: "standard", "fast" or a comma list of attack specs.
        sections: comma list of the sections to run, or "all" (see `tfadv.evaluation.sections`;
            "": clean, suite, checklist, sweep, confidence, gradients, transfer).
        sweep_eps: comma list of the FGSM/PGD sweep's eps values.
        dataset, data_dir, split, limit: the images (default: the first run's test split).
        batch_size, seed, eot_samples: see `tfadv.evaluation.evaluate`.
        output_dir, overwrite, verbose: where the report goes and what is shown.
        resume: continue the evaluation in output_dir from its store (only the missing chunks and
            attacks run; a larger limit or an appended attack adds only their own work).
        chunk_size: images per stored work unit.
        distribution: "default", "mirrored" (each attack call split over the local GPUs or
            logical CPUs) or "multi_worker" (one process per host, TF_CONFIG as for training:
            the workers share the chunks, the chief waits for them and writes the report).
        logical_cpus: split the CPU into N logical devices (to run mirrored on one CPU).
        wait_workers: seconds the chief waits for the other workers' chunks before it runs the
            missing ones itself.
    """

    models: list = dataclasses.field(default_factory=list)
    model_output: str = ""
    eps: float | None = None
    norm: str = "inf"
    suite: str = "standard"
    sections: str = ""
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
    resume: bool = False
    chunk_size: int = 512
    distribution: str = "default"
    logical_cpus: int = 0
    wait_workers: float = 3600.0
    deployment: bool = False  # the run's float model vs its TFLite exports (deployment_job)
    patch_size: int = 8  # pixels: the patch of a deployed-model evaluation


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
    return os.path.join(
        "evaluations", "+".join(n.replace(":", "-") for n in model_names(job.models)) + f"-{tail}"
    )


def parse_eps_list(text: str) -> list:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(
            f"Expected a comma list of numbers. Received: sweep_eps={text!r}"
        ) from None
    if not values or not all(math.isfinite(v) and 0 <= v <= 1 for v in values):
        raise ValueError(f"Expected eps values in [0, 1]. Received: sweep_eps={text!r}")
    return values


def check(job: EvaluationJob) -> str:
    """Checks that need no TensorFlow; returns the output folder."""
    if job.models and deployment_job.applies(job):  # no gradients: the gradient-free evaluation
        return deployment_job.check(job)
    if not job.models:
        raise ValueError(
            "models=[]: at least one model is required "
            "(a run folder, RUN:NAME, .keras file or SavedModel)"
        )
    for spec in job.models:
        path, name = split_model(spec)
        run_folder.resolve_model_path(path, name, "model")
    if job.eps is None:
        raise ValueError("eps=None: the evaluation budget is required (pixel scale, e.g. eps=0.03)")
    if choices.norm_name(job.norm) not in choices.NORMS:
        raise ValueError(f"Expected norm 'inf' or '2'. Received: norm={job.norm!r}")
    splits.check_eps(job.eps, job.norm)
    parse_eps_list(job.sweep_eps)
    splits.check_fields(
        job, {"batch_size": 1, "eot_samples": 1, "limit": 0, "chunk_size": 1, "logical_cpus": 0}
    )
    if job.distribution not in DISTRIBUTIONS:
        raise ValueError(
            f"Expected distribution to be one of {DISTRIBUTIONS}. "
            f"Received: distribution={job.distribution!r}"
        )
    if not (math.isfinite(job.wait_workers) and job.wait_workers >= 0):
        raise ValueError(
            f"Expected wait_workers >= 0 (seconds). Received: wait_workers={job.wait_workers}"
        )
    shared = job.distribution == "multi_worker"  # the workers write into one folder
    if shared:
        cluster_task()
        if job.overwrite:
            raise ValueError(
                "overwrite=True cannot be combined with distribution='multi_worker' "
                "(the workers share output_dir): remove the folder first. Received: overwrite=True"
            )
    output_dir = job.output_dir or default_output_dir(job)
    if (job.resume or shared) and os.path.isdir(output_dir) and os.listdir(output_dir):
        if not os.path.isdir(os.path.join(output_dir, STORE)):
            raise ValueError(
                f"output_dir={output_dir!r} holds no evaluation "
                f"store to continue (no {STORE}/ folder)"
            )
        if not job.resume and os.path.exists(os.path.join(output_dir, "report.md")):
            raise ValueError(
                f"output_dir={output_dir!r} already holds a finished report; "
                "pass resume=True to continue it"
            )
    else:
        run_folder.check_new_folder(output_dir, job.overwrite)
    return output_dir


STORE = "store"  # tfadv.evaluation.report_files.STORE


def cluster_task() -> tuple:
    """(index, number of processes, is chief) of this process from TF_CONFIG, as for training:
    "chief" tasks first, then "worker" tasks; the chief is the first of them."""
    try:
        config = json.loads(os.environ.get("TF_CONFIG") or "{}")
        cluster, task = config.get("cluster", {}), config.get("task", {})
        members = [
            (kind, i) for kind in ("chief", "worker") for i in range(len(cluster.get(kind, [])))
        ]
        me = members.index((task.get("type"), int(task.get("index", 0))))
    except (ValueError, TypeError, AttributeError):
        raise ValueError(
            "distribution='multi_worker' needs TF_CONFIG naming the cluster's workers and this "
            'task (e.g. {"cluster": {"worker": ["host0:2222", "host1:2222"]}, '
            '"task": {"type": "worker", "index": 0}}). '
            f"Received: TF_CONFIG={os.environ.get('TF_CONFIG')!r}"
        ) from None
    return me, len(members), me == 0


def run_evaluation_job(job: EvaluationJob) -> list:
    """Runs the job; returns the lines to print."""
    if job.models and deployment_job.applies(job):
        return deployment_job.run(job)
    output_dir = check(job)
    from tfadv.runtime import devices

    devices.split_cpu(job.logical_cpus)  # before TensorFlow sets up its devices
    from tfadv import evaluation

    start = time.time()
    devices.set_seed(job.seed, deterministic=False)
    evaluation.suite_attacks(
        job.suite, job.norm
    )  # an unknown suite or attack fails before any work
    evaluation.sections.select(job.sections or None)  # and so does an unknown section
    names = model_names(job.models)
    loaded = {}
    for label, spec in zip(names, job.models, strict=True):
        path, name = split_model(spec)
        loaded[label] = run_folder.load_model(path, name, "model", output=job.model_output or None)
    first_path, _ = split_model(job.models[0])
    images, class_names = splits.load_split(
        first_path, job.dataset, job.data_dir, job.split, job.limit
    )
    from tfadv import models

    for label, model in loaded.items():
        splits.check_compatible(
            models.as_classifier(model), images, class_names, f"model {label!r}"
        )
    store = os.path.join(output_dir, STORE)
    if job.overwrite and not job.resume:
        shutil.rmtree(
            store, ignore_errors=True
        )  # a new evaluation: nothing of the old one is reused
    strategy = devices.make_strategy("mirrored") if job.distribution == "mirrored" else None
    x, y = images.float_images(), images.labels
    index, count, chief = cluster_task() if job.distribution == "multi_worker" else (0, 1, True)
    if count > 1:
        done = _worker_chunks(job, loaded, x, y, store, strategy, (index, count))
        if not chief:
            return [
                f"worker {index} of {count}: its chunks are in {store}; the chief writes the report"
            ]
        _wait_for_workers(job, loaded, x, store, done)
    settings = {"store": store, "chunk_size": job.chunk_size, "strategy": strategy}
    report = evaluation.evaluate(
        loaded,
        x,
        y,
        job.eps,
        suite=job.suite,
        norm=job.norm,
        sweep_eps=parse_eps_list(job.sweep_eps),
        class_names=class_names,
        batch_size=job.batch_size,
        seed=job.seed,
        eot_samples=job.eot_samples,
        progress=job.verbose > 0,
        sections_run=job.sections or None,
        **settings,
    )
    report.settings.update(
        models=job.models,
        dataset=job.dataset or _run_dataset(first_path),
        split=job.split,
        limit=job.limit,
        chunk_size=job.chunk_size,
        distribution=job.distribution,
        processes=count,
    )
    report.write(output_dir, overwrite=True)
    lines = [f"{len(images)} {job.split} images, eps={job.eps:g}, suite: {', '.join(report.suite)}"]
    for name, m in report.models.items():
        flagged = (
            f"  MASKING SUSPECTED (failed checks {', '.join(m.failed_checks)})"
            if m.failed_checks
            else ""
        )
        lines.append(
            f"{name}: clean {m.clean['accuracy']:.4f}, "
            f"robust {m.robust_accuracy:.4f} (suite {m.suite.robust_accuracy:.4f}; "
            f"{m.robust_accuracy_on_correct:.4f} of the clean-correct){flagged}"
        )
    lines.append(f"written: {output_dir}/report.md  ({time.time() - start:.0f} s)")
    return lines


def _run_dataset(path: str) -> str:
    """The data set a run folder was trained on ("" for a model file)."""
    config = os.path.join(path, run_folder.CONFIG_FILE)
    return run_folder.read_json(config).get("dataset", "") if os.path.exists(config) else ""


def _worker_chunks(job, loaded, x, y, store, strategy, worker) -> dict:
    """Runs this worker's share of every model's suite chunks; {label: suite folder}."""
    from tfadv import evaluation

    folders = {}
    for label, model in loaded.items():
        view, _ = evaluation.attacked_view(model, x, job.eot_samples)
        folders[label] = evaluation.suite_folder(store, label)
        evaluation.run_suite(
            view,
            x,
            y,
            job.eps,
            job.suite,
            norm=job.norm,
            batch_size=job.batch_size,
            seed=job.seed,
            progress=job.verbose > 0,
            store=folders[label],
            chunk_size=job.chunk_size,
            strategy=strategy,
            worker=worker,
        )
    return folders


def _wait_for_workers(job, loaded, x, store, folders) -> None:
    """Returns once every model's suite store is complete, or after wait_workers seconds (then the
    chief runs what is still missing itself, as a resumed evaluation would)."""
    from tfadv.evaluation.store import EvaluationStore

    deadline, said = time.time() + job.wait_workers, 0.0
    while time.time() < deadline:
        missing = [
            label
            for label, folder in folders.items()
            if not EvaluationStore(folder).complete(len(x))
        ]
        if not missing:
            return
        if job.verbose and time.time() - said > 30:
            print(
                f"chief: waiting for the other workers' chunks of {', '.join(missing)}", flush=True
            )
            said = time.time()
        time.sleep(1.0)
    print(f"chief: waited {job.wait_workers:g} s; running the missing chunks itself", flush=True)
