"""`python -m tfadv.evaluate` for deployed models: a model without gradients (RUN:model_int8, a
.tflite file) gets the gradient-free evaluation; --deployment writes the deployment gap of a run.

    python -m tfadv.evaluate --model=RUN:model_int8 --eps=0.031 --suite=fast
    python -m tfadv.evaluate --model=RUN --deployment --eps=0.031 --suite=fast --limit=500

The float model (the attacks that need gradients: transfer PGD-20, the patch) is the run's main
model, found in the run folder. A run without TFLite exports is a one-line error telling how to
export them (`tfadv.experiment.tflite_export`). `check` needs no TensorFlow.
"""

import os
import time

from tfadv.experiment import run_folder, splits

EXPORT_HINT = (
    "export them with `python -m tfadv.experiment.tflite_export RUN float32,float16,int8` "
    "(or train with --export_tflite=float32,float16,int8)"
)


def _resolved(job) -> list:
    from tfadv.experiment.evaluation_job import split_model

    return [run_folder.resolve_model_path(*split_model(spec), "model") for spec in job.models]


def applies(job) -> bool:
    """True for --deployment and for a job whose models are all deployed (.tflite) files."""
    if job.deployment:
        return True
    paths = [p for p in _resolved(job) if isinstance(p, str)] if job.models else []
    return bool(paths) and all(p.endswith(".tflite") for p in paths)


def tflite_exports(run: str) -> dict:
    """{name: .tflite path} of a run folder's TFLite exports (summary.json's "tflite"), in the
    folder's models/ (where the run is now); a one-line ValueError when there are none."""
    summary = os.path.join(run, run_folder.SUMMARY_FILE)
    entries = run_folder.read_json(summary).get("tflite", {}) if os.path.exists(summary) else {}
    order = {f"_{p}": i for i, p in enumerate(("float32", "float16", "int8"))}  # PRECISIONS
    names = sorted(entries, key=lambda n: (order.get(n[n.rfind("_") :], len(order)), n))
    found = {
        name: os.path.join(run, run_folder.MODELS_DIR, name + ".tflite")
        for name in names
        if os.path.exists(os.path.join(run, run_folder.MODELS_DIR, name + ".tflite"))
    }
    if not found:
        raise ValueError(f"model={run!r}: the run has no TFLite exports; {EXPORT_HINT}")
    return found


def _float_run(job) -> str:
    """The run folder whose main model is the float model ('' for a bare .tflite file)."""
    from tfadv.experiment.evaluation_job import split_model

    path, _ = split_model(job.models[0])
    return path if run_folder.is_run_folder(path) else ""


def check(job) -> str:
    """Checks that need no TensorFlow; returns the output folder."""
    from tfadv.experiment.evaluation_job import default_output_dir

    if job.eps is None:
        raise ValueError("eps=None: the evaluation budget is required (pixel scale, e.g. eps=0.03)")
    splits.check_eps(job.eps, job.norm)
    splits.check_fields(job, {"batch_size": 1, "limit": 0, "patch_size": 1})
    if len(job.models) != 1:
        raise ValueError(
            "Expected one model (a run folder, RUN:NAME or .tflite file) "
            f"for a deployed-model evaluation. Received: models={job.models!r}"
        )
    if job.suite not in ("fast", "standard"):
        from tfadv.models.callable import GRADIENT_FREE_ATTACKS

        raise ValueError(
            "Expected suite 'fast' or 'standard' for a model without gradients "
            f"(the gradient-free attacks: {', '.join(GRADIENT_FREE_ATTACKS)}, transfer, patch). "
            f"Received: suite={job.suite!r}"
        )
    if job.deployment:
        run = _float_run(job)
        if not run:
            raise ValueError(
                f"deployment=True needs a run folder. Received: model={job.models[0]!r}"
            )
        tflite_exports(run)
        default = os.path.join(
            run, "evaluations", f"deployment-{job.suite}-eps{job.eps:g}-{job.split}"
        )
    else:
        _resolved(job)
        default = default_output_dir(job)
    output_dir = job.output_dir or default
    run_folder.check_new_folder(output_dir, job.overwrite)
    return output_dir


def run(job) -> list:
    """Runs the gradient-free evaluation or the deployment gap; returns the lines to print."""
    output_dir = check(job)
    from tfadv.evaluation import deployment, gradient_free
    from tfadv.runtime import devices

    start = time.time()
    devices.set_seed(job.seed, deterministic=False)
    from tfadv.experiment.evaluation_job import model_names, split_model

    run_dir = _float_run(job)
    images, _ = splits.load_split(
        split_model(job.models[0])[0], job.dataset, job.data_dir, job.split, job.limit
    )
    x, y = images.float_images(), images.labels
    float_model = run_folder.load_model(run_dir, "", "model") if run_dir else None
    verbose = job.verbose > 0
    if job.deployment:
        deployed = {
            name: run_folder.load_model(run_dir, name, "model") for name in tflite_exports(run_dir)
        }
        gap = deployment.deployment_gap(
            float_model,
            deployed,
            x,
            y,
            job.eps,
            suite=job.suite,
            norm=job.norm,
            patch_size=job.patch_size,
            seed=job.seed,
            batch_size=job.batch_size,
            progress=verbose,
        )
        gap.settings.update(models=job.models, split=job.split, limit=job.limit)
        written = gap.write(output_dir)
        lines = [f"{len(y)} {job.split} images, eps={job.eps:g}: the deployment gap"]
        for row in gap.table().to_dict(orient="records"):
            lines.append(
                f"{row['model']}: clean {row['clean_accuracy']:.4f}, "
                f"agreement {row['agreement']:.4f}, worst case {row['worst_case']:.4f}, "
                f"patch {row['patch']:.4f}, {row['verdicts_differ']} verdicts differ"
            )
        lines.append(f"written: {written}  ({time.time() - start:.0f} s)")
        return lines
    label = model_names(job.models)[0]
    model = run_folder.load_model(*split_model(job.models[0]), "model")
    specs = gradient_free.settings(job.suite)
    transfer = patched = None
    if float_model is not None:
        transfer = gradient_free.transfer_images(
            float_model,
            x,
            y,
            job.eps,
            spec=specs["transfer"],
            norm=job.norm,
            seed=job.seed,
            batch_size=job.batch_size,
        )
        patched = gradient_free.patched_images(
            float_model, x, y, size=job.patch_size, steps=specs["patch_steps"], seed=job.seed
        )
    result = gradient_free.evaluate_gradient_free(
        model,
        x,
        y,
        job.eps,
        name=label,
        suite=job.suite,
        norm=job.norm,
        transfer=transfer,
        patched=patched,
        seed=job.seed,
        batch_size=job.batch_size,
        progress=verbose,
    )
    written = gradient_free.write_report(
        result,
        output_dir,
        {
            "models": job.models,
            "split": job.split,
            "limit": job.limit,
            "seed": job.seed,
            "seconds": round(time.time() - start, 1),
        },
    )
    return [
        f"{len(y)} {job.split} images, eps={job.eps:g}, gradient-free (no gradients: {label})",
        f"{label}: clean {result.clean_correct.mean():.4f}, "
        f"worst case {result.worst_case.mean():.4f}"
        + (
            ""
            if float_model is not None
            else " (no run folder: no transfer or patch from a float model)"
        ),
        f"written: {written}  ({time.time() - start:.0f} s)",
    ]
