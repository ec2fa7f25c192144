"""Command line: the honest robustness evaluation of one or more trained models.

    python -m tfadv.evaluate --model=saved_models/RUN [--model=saved_models/OTHER:student_T1] \
        --eps=0.03 [--suite=standard|fast|pgd(steps=50),square] [--limit=500] [--sections=all]
    python -m tfadv.evaluate --model=RUN:model_int8 | --model=RUN --deployment --eps=0.03 \
        --suite=fast

Runs the attack suite (each attack only on the images still unbroken), the gradient-masking
checklist, an eps sweep, per-class, confidence and gradient tables and, with several models, a
transfer matrix; writes report.md, summary.json, CSVs, PNGs and TensorBoard summaries into
--output_dir (default RUN/evaluations/<suite>-eps<eps>-<split>), atomically. The work is
`tfadv.experiment.evaluation_job.run_evaluation_job`.
"""

import dataclasses
import os

from absl import flags, logging

from tfadv.attacks import options as attack_options
from tfadv.experiment import flags as cli
from tfadv.experiment.evaluation_job import EvaluationJob
from tfadv.runtime import choices
from tfadv.runtime.quiet import native_stderr_silenced, quiet_tensorflow_logs

quiet_tensorflow_logs()  # TensorFlow itself is imported only after the cheap checks


def define_flags(flag_values: flags.FlagValues) -> flags.FlagValues:
    """Defines this command's flags on `flag_values` and returns it."""
    flags.DEFINE_multi_string(
        "model",
        [],
        "run folder, RUN:NAME, .keras file or SavedModel; repeat for several models",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "model_output",
        "",
        "logits or probabilities, for SavedModels that do not say",
        flag_values=flag_values,
    )
    flags.DEFINE_float(
        "eps", None, "evaluation budget in pixel scale [0, 1] (required)", flag_values=flag_values
    )
    flags.DEFINE_string("norm", "inf", "inf or 2", flag_values=flag_values)
    flags.DEFINE_string(
        "suite",
        "standard",
        "standard, fast, or a comma list of attack specs, e.g. 'pgd(steps=50),square'",
        flag_values=flag_values,
    )
    flags.DEFINE_string("sections", "", "comma list of sections or all", flag_values=flag_values)
    flags.DEFINE_string(
        "sweep_eps",
        "0.001,0.01,0.03,0.05,0.1,0.3",
        "eps values of the FGSM/PGD sweep",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "dataset",
        "",
        "data set (default: the first run's); synthetic, cifar10 or a TFDS name",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "data_dir",
        "",
        "data folder or CIFAR-10 archive (default: the run's)",
        flag_values=flag_values,
    )
    flags.DEFINE_enum(
        "split", "test", choices.SPLITS, "split to evaluate on", flag_values=flag_values
    )
    flags.DEFINE_integer(
        "limit",
        0,
        "evaluate only the first N images of the split (0: all)",
        flag_values=flag_values,
    )
    flags.DEFINE_integer("batch_size", 256, "images per attack call", flag_values=flag_values)
    flags.DEFINE_integer("seed", 0, "seeds every attack", flag_values=flag_values)
    flags.DEFINE_integer(
        "eot_samples",
        8,
        "draws averaged for a model whose outputs differ between calls",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "output_dir",
        "",
        "report folder (default RUN/evaluations/<suite>-eps<eps>-<split>)",
        flag_values=flag_values,
    )
    flags.DEFINE_bool(
        "overwrite", False, "replace an existing --output_dir", flag_values=flag_values
    )
    flags.DEFINE_integer("verbose", 1, "0 quiet, 1 progress", flag_values=flag_values)
    flags.DEFINE_bool(
        "resume",
        False,
        "continue the evaluation in --output_dir from its store: only missing chunks and attacks "
        "run",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "chunk_size",
        512,
        "images per stored work unit (fixed for an evaluation)",
        flag_values=flag_values,
    )
    flags.DEFINE_enum(
        "distribution",
        "default",
        choices.DISTRIBUTIONS,
        "mirrored: split each attack call over the local GPUs (or --logical_cpus); multi_worker: "
        "one process per host, TF_CONFIG as for training",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "logical_cpus",
        0,
        "split the CPU into N logical devices (to run mirrored on one CPU)",
        flag_values=flag_values,
    )
    flags.DEFINE_float(
        "wait_workers",
        3600.0,
        "multi_worker: seconds the chief waits for the other workers before it runs their "
        "missing chunks",
        flag_values=flag_values,
    )
    flags.DEFINE_bool(
        "deployment",
        False,
        "the run's float model vs its TFLite exports side by side (the deployment gap)",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "patch_size",
        8,
        "patch side (pixels) of a deployed-model evaluation",
        flag_values=flag_values,
    )
    return flag_values


FLAGS = define_flags(flags.FlagValues())
"""This command's flags, apart from absl's global flags.FLAGS (so the three commands import
together); `python -m tfadv.evaluate` defines them on flags.FLAGS, where --helpfull finds them."""
JOB_FLAGS = tuple(f.name for f in dataclasses.fields(EvaluationJob) if f.name != "models")
"""The job's fields that are flags of the same name (a new EvaluationJob field and its
DEFINE line in define_flags are all a new flag needs)."""


def job_from_flags(flag_values: flags.FlagValues = FLAGS) -> EvaluationJob:
    """The job parsed flags describe."""
    fields = {name: flag_values[name].value for name in JOB_FLAGS if name in flag_values}
    return EvaluationJob(**fields, models=list(flag_values["model"].value))


def main(argv, flag_values: flags.FlagValues = FLAGS):
    if len(argv) > 1:
        cli.fail(f"unexpected arguments {argv[1:]}; flags look like --name=value")
    logging.set_verbosity(logging.ERROR)
    job = job_from_flags(flag_values)

    def work():
        from tfadv.experiment import evaluation_job

        attack_options.check_suite(job.suite)  # the suite's attack options, before TensorFlow
        evaluation_job.check(job)
        with native_stderr_silenced():
            from tfadv.runtime.devices import gpu_available

            gpu_available()  # the one-time CUDA probe, silenced here instead of logging mid-run
        return evaluation_job.run_evaluation_job(job)

    lines = cli.run_main(
        work,
        ("model", "models", *JOB_FLAGS),
        {"models": "model"},
        "interrupted; continue with --resume (the finished chunks are kept in OUTPUT/store)",
    )
    print(os.linesep.join(lines))


if __name__ == "__main__":
    cli.run(define_flags, main)
