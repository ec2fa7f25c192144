"""Attack a trained model on a data split:

    python -m tfadv.attack --model=saved_models/RUN --attack=pgd --eps=0.03 [--steps=10 ...]

--model is a run folder (its main model, or --model_name), a .keras file or a tfadv
SavedModel. The data set defaults to the one the run was trained on (its config.json).
Prints clean and adversarial accuracy and writes, atomically, into --output_dir:
adversarial.npz (or .tfrecord), grid.png (clean vs adversarial with predicted labels) and
summary.json. With --surrogate, the examples are generated on the surrogate and evaluated
on --model (black-box transfer). Options left unset keep the attack's own defaults; an
option the attack does not take is an error.
"""

import inspect
import json
import os

from absl import app, flags, logging

from tfadv import cli
from tfadv.errors import UserInputError
from tfadv.quiet import native_stderr_silenced, quiet_tensorflow_logs

quiet_tensorflow_logs()  # TensorFlow itself is imported only after the cheap checks

SPLITS = ("test", "val", "train")
FORMATS = ("npz", "tfrecord")

flags.DEFINE_string("model", "", "run folder, .keras file or tfadv SavedModel to attack (required)")
flags.DEFINE_string("model_name", "", "model inside a run folder (default: the run's main model)")
flags.DEFINE_string("surrogate", "", "transfer attack: generate the examples on this model instead")
flags.DEFINE_string("attack", "pgd", "fgsm, fgsm_targeted, fgsm_random, bim, pgd, random_sign, one_pixel, patch")
flags.DEFINE_float("eps", None, "budget in pixel scale [0, 1] (required by gradient attacks; patch takes none)")
flags.DEFINE_string("dataset", "", "data set (default: the run's); synthetic, cifar10 or a TFDS name")
flags.DEFINE_string("data_dir", "", "data folder or CIFAR-10 archive (default: the run's)")
flags.DEFINE_enum("split", "test", SPLITS, "split to attack")
flags.DEFINE_integer("limit", 0, "attack only the first N images of the split (0: all)")
flags.DEFINE_integer("batch_size", 256, "images per attack call")
flags.DEFINE_integer("seed", 0, "seeds random starts, random signs, targets and the searches")
flags.DEFINE_string("target", "", "targeted: least_likely, least_likely_top5, random or a class id")
# attack options: passed only when given
flags.DEFINE_integer("steps", None, "iterations (pgd, bim, patch)")
flags.DEFINE_float("alpha", None, "step size in pixel scale (pgd, bim, fgsm_random)")
flags.DEFINE_string("norm", None, "inf or 2 (fgsm, pgd, bim)")
flags.DEFINE_integer("restarts", None, "random restarts, best kept per image (pgd)")
flags.DEFINE_bool("random_start", None, "start inside the eps-ball at random (pgd)")
flags.DEFINE_string("loss_on", None, "logits (default) or probabilities")
flags.DEFINE_integer("pixels", None, "pixels changed (one_pixel)")
flags.DEFINE_integer("population", None, "candidates per image (one_pixel)")
flags.DEFINE_integer("max_queries", None, "model queries per image (one_pixel)")
flags.DEFINE_integer("patch_size", None, "patch side in pixels (patch)")
flags.DEFINE_float("step_size", None, "patch value change per step (patch)")
flags.DEFINE_string("jit_compile", "auto", "XLA: auto (on only with a GPU), true or false")
# output
flags.DEFINE_string("output_dir", "", "where to write (default RUN/attacks/<attack>-eps<eps>-<split> for a run folder)")
flags.DEFINE_bool("overwrite", False, "replace an existing --output_dir")
flags.DEFINE_enum("format", "npz", FORMATS, "file format of the adversarial set")
flags.DEFINE_integer("grid_images", 8, "images in grid.png")
flags.DEFINE_integer("verbose", 1, "0 quiet, 1 progress bar")

FLAGS = flags.FLAGS
OPTION_FLAGS = {  # flag -> keyword of the attack function
    "steps": "steps", "alpha": "alpha", "norm": "norm", "restarts": "restarts", "random_start": "random_start",
    "loss_on": "loss_on", "pixels": "pixels", "population": "population", "max_queries": "max_queries",
    "patch_size": "size", "step_size": "step_size", "jit_compile": "jit_compile",
}  # fmt: skip


def attack_options(fn, name: str) -> dict:
    """Keyword options from the flags the user set; an option the attack lacks is an error."""
    parameters = inspect.signature(fn).parameters
    options = {}
    for flag, keyword in OPTION_FLAGS.items():
        if FLAGS[flag].present:
            if keyword not in parameters:
                raise UserInputError(f"--{flag} does not apply to --attack={name}")
            options[keyword] = FLAGS[flag].value
    eps = parameters["eps"]
    if FLAGS.eps is None and eps.default is inspect.Parameter.empty:
        raise UserInputError(f"--attack={name} needs --eps (pixel scale, e.g. --eps=0.03)")
    if FLAGS.target and "target" in parameters:  # attacks choosing their own target (fgsm_targeted, patch)
        options["target"] = int(FLAGS.target) if FLAGS.target.lstrip("-").isdigit() else FLAGS.target
    elif FLAGS.target and "targeted" not in parameters:
        raise UserInputError(f"--target does not apply to --attack={name}")
    return options


def runner_target(fn):
    if not FLAGS.target or "target" in inspect.signature(fn).parameters:
        return None
    return int(FLAGS.target) if FLAGS.target.lstrip("-").isdigit() else FLAGS.target


def run_config(model_path: str) -> dict:
    path = os.path.join(model_path, "config.json")
    if os.path.isdir(model_path) and os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {}


def load_split(config: dict):
    from tfadv import data as data_lib

    dataset = FLAGS.dataset or config.get("dataset")
    if not dataset:
        raise UserInputError(f"--model={FLAGS.model!r} is not a run folder; pass --dataset (and --data_dir)")
    same_run = not FLAGS.dataset or FLAGS.dataset == config.get("dataset")
    run = config if same_run else {}  # the run's limits and split, so that --split=val is its validation set
    data = data_lib.load(
        dataset,
        data_dir=FLAGS.data_dir or run.get("data_dir") or None,
        validation_fraction=run.get("validation_fraction", 0.1),
        imbalance=run.get("imbalance"),
        train_limit=run.get("train_limit", 0),
        test_limit=run.get("test_limit", 0),
        seed=run.get("seed", 0),
    )
    split = getattr(data, FLAGS.split).head(FLAGS.limit)
    if len(split) == 0:
        raise UserInputError(f"{dataset}: the {FLAGS.split} split is empty")
    return split, data.class_names


def default_output_dir() -> str:
    """Inside the attacked run folder (RUN/attacks/NAME); attack_results/NAME for a bare model file."""
    name = f"{FLAGS.attack}-eps{FLAGS.eps:g}-{FLAGS.split}" if FLAGS.eps is not None else f"{FLAGS.attack}-{FLAGS.split}"
    if os.path.exists(os.path.join(FLAGS.model, "config.json")):
        return os.path.join(FLAGS.model, "attacks", name)
    model = os.path.basename(os.path.normpath(FLAGS.model)).removesuffix(".keras")
    return os.path.join("attack_results", f"{model}-{name}")


def check_output_dir(path: str) -> None:
    if os.path.exists(path) and not FLAGS.overwrite:
        raise UserInputError(f"--output_dir={path!r} already exists; pass --overwrite to replace it")


def write_outputs(output_dir: str, result, images, class_names, summary: dict) -> None:
    """Everything goes into a temporary folder that is renamed at the end: nothing half-written."""
    from tfadv import export, plots
    from tfadv.attacks import runner

    def write(tmp):
        runner.save(result, os.path.join(tmp, f"adversarial.{FLAGS.format}"))
        if FLAGS.grid_images > 0:
            n = min(FLAGS.grid_images, len(result))
            plots.adversarial_grid(
                os.path.join(tmp, "grid.png"), images[:n], result.adversarial[:n], result.labels[:n],
                result.clean_predictions[:n], result.adversarial_predictions[:n], class_names,
                title=f"{FLAGS.attack} eps={FLAGS.eps}",
            )  # fmt: skip
        with open(os.path.join(tmp, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2, sort_keys=True)

    export.atomic_dir(output_dir, write)


def check_flags_before_loading_tensorflow() -> str:
    """Cheap checks first, so that plain mistakes fail in well under a second."""
    if not FLAGS.model:
        raise UserInputError("--model is required (a run folder, .keras file or SavedModel)")
    for flag in ("model", "surrogate"):
        if FLAGS[flag].value and not os.path.exists(FLAGS[flag].value):
            raise UserInputError(f"--{flag}={FLAGS[flag].value!r} does not exist")
    if FLAGS.eps is not None and not FLAGS.eps >= 0:
        raise UserInputError(f"Expected --eps >= 0. Received: --eps={FLAGS.eps}")
    for flag in ("batch_size", "limit", "grid_images"):
        if FLAGS[flag].value < (1 if flag == "batch_size" else 0):
            raise UserInputError(f"--{flag}={FLAGS[flag].value} is out of range")
    output_dir = FLAGS.output_dir or default_output_dir()
    check_output_dir(output_dir)
    return output_dir


def run() -> list:
    output_dir = check_flags_before_loading_tensorflow()
    with native_stderr_silenced():
        from tfadv import attacks, export
        from tfadv.runtime import gpu_available, resolve_jit_compile, set_seed

        gpu_available()  # the one-time CUDA probe, silenced here instead of logging mid-run

    set_seed(FLAGS.seed, deterministic=False)  # also makes unseeded draws (e.g. random targets) repeatable
    fn = attacks.get(FLAGS.attack)
    options = attack_options(fn, FLAGS.attack)
    resolve_jit_compile(FLAGS.jit_compile)
    model_path = export.resolve_model_path(FLAGS.model, FLAGS.model_name)
    surrogate_path = export.resolve_model_path(FLAGS.surrogate, flag="--surrogate") if FLAGS.surrogate else ""
    split, class_names = load_split(run_config(FLAGS.model))
    model = export.load(FLAGS.model, FLAGS.model_name)
    surrogate = export.load(FLAGS.surrogate, flag="--surrogate") if FLAGS.surrogate else model
    images = split.float_images()
    seed = FLAGS.seed if "seed" in inspect.signature(fn).parameters else None
    result = attacks.run_attack(
        surrogate, (images, split.labels), fn, FLAGS.eps, batch_size=FLAGS.batch_size, seed=seed,
        target=runner_target(fn), progress=FLAGS.verbose > 0, eval_model=model, **options,
    )  # fmt: skip
    summary = {
        **result.summary(), "attack": FLAGS.attack, "eps": FLAGS.eps, "options": options, "model": model_path,
        "surrogate": surrogate_path, "split": FLAGS.split, "target": FLAGS.target, "seed": seed,
    }  # fmt: skip
    write_outputs(output_dir, result, images, class_names, summary)
    lines = [
        f"model: {model_path}" + (f"  (examples generated on {surrogate_path})" if surrogate_path else ""),
        f"attack: {FLAGS.attack} eps={FLAGS.eps} {options}  on {summary['n']} {FLAGS.split} images",
        f"clean accuracy:       {summary['clean_accuracy']:.4f}",
        f"adversarial accuracy: {summary['adversarial_accuracy']:.4f}  "
        f"(on the {summary['n_correct']} clean-correct: {summary['adversarial_accuracy_on_correct']:.4f})",
    ]
    if "target_success_rate" in summary:
        lines.append(f"target success rate:  {summary['target_success_rate']:.4f}")
    lines.append(f"written: {output_dir}/ (adversarial.{FLAGS.format}, grid.png, summary.json)")
    return lines


def main(argv):
    if len(argv) > 1:
        cli.fail(f"unexpected arguments {argv[1:]}; flags look like --name=value")
    logging.set_verbosity(logging.ERROR)  # TFDS and TF warn through absl; our own messages are prints
    try:
        lines = run()
    except (*cli.USER_ERRORS, ValueError) as e:  # attacks reject bad options with ValueError
        cli.fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    except KeyboardInterrupt:
        cli.fail("interrupted; nothing was written", code=130)
    print(os.linesep.join(lines))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags_one_line_errors)
