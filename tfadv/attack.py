"""Command line: attack a trained model on a data split.

    python -m tfadv.attack --model=saved_models/RUN --attack=pgd --eps=0.03 [--steps=10
    --loss=margin ...]

--model is a run folder (its main model, or --model_name), a .keras file or a SavedModel. The
data set defaults to the one the run was trained on. Prints clean and adversarial accuracy and
writes adversarial.npz (or .tfrecord), grid.png and summary.json into --output_dir (default
RUN/attacks/<attack>-eps<eps>-<split>), atomically. With --surrogate, the examples are made on
the surrogate and scored on --model (black-box transfer). The work is
`tfadv.experiment.attack_job.run_attack_job`; options left unset keep the attack's defaults.
"""

import os

from absl import flags, logging

from tfadv.attacks import options as attack_options
from tfadv.experiment import flags as cli
from tfadv.experiment.attack_job import FORMATS, AttackJob
from tfadv.runtime.choices import SPLITS
from tfadv.runtime.quiet import native_stderr_silenced, quiet_tensorflow_logs

quiet_tensorflow_logs()  # TensorFlow itself is imported only after the cheap checks


def define_option_flags(flag_values: flags.FlagValues) -> None:
    """One flag per attack option of the schema (default None: the attack's own default)."""
    definers = {int: flags.DEFINE_integer, float: flags.DEFINE_float, bool: flags.DEFINE_bool}
    for flag, entries in attack_options.by_flag().items():
        option = entries[0][1]
        takers = ", ".join(name for name, _ in entries)
        define = definers.get(option.type, flags.DEFINE_string)
        define(flag, None, f"{option.help} ({takers})", flag_values=flag_values)


def define_flags(flag_values: flags.FlagValues) -> flags.FlagValues:
    """Defines this command's flags on `flag_values` and returns it."""
    flags.DEFINE_string(
        "model",
        "",
        "run folder, .keras file or SavedModel to attack (required)",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "model_name",
        "",
        "model inside a run folder (default: the run's main model)",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "model_output",
        "",
        "logits or probabilities, for SavedModels that do not say",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "surrogate",
        "",
        "transfer attack: generate the examples on this model instead",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "attack",
        "pgd",
        "an attack name (fgsm, fgsm_targeted, fgsm_random, bim, pgd, random_sign, one_pixel, "
        "patch, apgd, apgd_dlr, apgd_t, fab_t, square, ...) or a spec such as 'pgd(steps=20, "
        "loss=margin)'",
        flag_values=flag_values,
    )
    flags.DEFINE_float(
        "eps",
        None,
        "budget in pixel scale [0, 1] (required by gradient attacks; patch takes none)",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "dataset",
        "",
        "data set (default: the run's); synthetic, cifar10 or a TFDS name",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "data_dir",
        "",
        "data folder or CIFAR-10 archive (default: the run's)",
        flag_values=flag_values,
    )
    flags.DEFINE_enum("split", "test", SPLITS, "split to attack", flag_values=flag_values)
    flags.DEFINE_integer(
        "limit", 0, "attack only the first N images of the split (0: all)", flag_values=flag_values
    )
    flags.DEFINE_integer("batch_size", 256, "images per attack call", flag_values=flag_values)
    flags.DEFINE_integer(
        "seed",
        0,
        "seeds random starts, random signs, targets and the searches",
        flag_values=flag_values,
    )
    define_option_flags(flag_values)  # attack options: passed only when given
    # output
    flags.DEFINE_string(
        "output_dir",
        "",
        "where to write (default RUN/attacks/<attack>-eps<eps>-<split> for a run folder)",
        flag_values=flag_values,
    )
    flags.DEFINE_bool(
        "overwrite", False, "replace an existing --output_dir", flag_values=flag_values
    )
    flags.DEFINE_enum(
        "format", "npz", FORMATS, "file format of the adversarial set", flag_values=flag_values
    )
    flags.DEFINE_integer("grid_images", 8, "images in grid.png", flag_values=flag_values)
    flags.DEFINE_integer("verbose", 1, "0 quiet, 1 progress bar", flag_values=flag_values)
    return flag_values


FLAGS = define_flags(flags.FlagValues())
"""This command's flags, apart from absl's global flags.FLAGS (so the three commands import
together); `python -m tfadv.attack` defines them on flags.FLAGS, where --helpfull finds them."""
OPTION_FLAGS = {  # flag -> keyword of the attack, one per option of tfadv.attacks.options.SCHEMA
    flag: entries[0][1].name for flag, entries in attack_options.by_flag().items()
}
JOB_FLAGS = (
    "model",
    "model_name",
    "model_output",
    "surrogate",
    "attack",
    "eps",
    "dataset",
    "data_dir",
    "split",
    "limit",
    "batch_size",
    "seed",
    "output_dir",
    "overwrite",
    "format",
    "grid_images",
    "verbose",
)


def _option(flag, flag_values):
    value = flag_values[flag].value
    if flag == "target" and value.lstrip("-").isdigit():
        return int(value)
    return value


def job_from_flags(flag_values: flags.FlagValues = FLAGS) -> AttackJob:
    """The job parsed flags describe (attack options only for the flags given)."""
    present = [flag for flag in OPTION_FLAGS if flag_values[flag].present]
    options = {OPTION_FLAGS[flag]: _option(flag, flag_values) for flag in present}
    return AttackJob(**{name: flag_values[name].value for name in JOB_FLAGS}, options=options)


def main(argv, flag_values: flags.FlagValues = FLAGS):
    if len(argv) > 1:
        cli.fail(f"unexpected arguments {argv[1:]}; flags look like --name=value")
    logging.set_verbosity(
        logging.ERROR
    )  # TFDS and TF warn through absl; our own messages are prints
    job = job_from_flags(flag_values)

    def work():
        from tfadv.experiment import attack_job

        attack_job.check(job)
        with native_stderr_silenced():
            from tfadv.runtime.devices import gpu_available

            gpu_available()  # the one-time CUDA probe, silenced here instead of logging mid-run
        return attack_job.run_attack_job(job)

    renames = {option: flag for flag, option in OPTION_FLAGS.items() if flag != option}
    lines = cli.run_main(
        work,
        (*JOB_FLAGS, *OPTION_FLAGS),
        renames,
        "interrupted; nothing was written",
    )
    print(os.linesep.join(lines))


if __name__ == "__main__":
    cli.run(define_flags, main)
