"""Train, evaluate and export a classifier:  python -m tfadv.train --flagfile=configs/NAME.flags

Every flag has a default; any flag in a flagfile can be overridden after it on the
command line. The run folder gets config.json (the resolved flags), logs/ (TensorBoard),
checkpoints/ (for --resume), models/ (SavedModels and .keras files) and summary.json.
`--resume` continues the run in --output_dir (--overwrite is then not consulted) if its
config.json has the same settings. Values and paths are checked before TensorFlow loads.
"""

import dataclasses
import os

from absl import flags, logging

from tfadv.experiment import flags as cli
from tfadv.experiment import run_folder
from tfadv.experiment.config import TrainConfig
from tfadv.runtime.quiet import native_stderr_silenced, quiet_tensorflow_logs

quiet_tensorflow_logs()

HELP = {
    "dataset": (
        "synthetic, cifar10, or any TFDS image-classification dataset (mnist, fashion_mnist, ...)"
    ),
    "data_dir": (
        "cifar10: the CIFAR-10 binary archive (folder or .tar.gz), read offline; other TFDS sets: "
        "TFDS data folder"
    ),
    "validation_fraction": "share of the training images held out for validation",
    "imbalance": "none, under:CLASS:FRACTION or over:CLASS:FACTOR (CLASS: index or name)",
    "augment": "none, standard (flip,crop), all, or a comma list of flip, crop, color",
    "train_limit": "use only the first N training images (0: all)",
    "test_limit": "use only the first N test images (0: all)",
    "model": "architecture name: baseline_cnn, vgg_small, tiny_cnn",
    "activation": "relu or bounded_leaky_relu",
    "noise": "Gaussian-noise placement: none, input, after_first_conv, before_classifier",
    "noise_stddev": "stddev of the Gaussian-noise layer",
    "noise_at_inference": "keep the Gaussian noise on at inference",
    "temperature": "softmax temperature of the trained model",
    "recipe": (
        "training recipe: standard, adversarial_batch, adversarial_epoch, random_noise, trades, "
        "mart, contrastive, distill, distill_variant"
    ),
    "epochs": "training epochs (> 0)",
    "batch_size": "batch size (> 0), global across replicas",
    "learning_rate": "Adam learning rate",
    "lr_schedule": "constant or cosine",
    "seed": "seeds data order, initialisation, noise and attacks",
    "attack": (
        "training attack of the adversarial recipes: fgsm, fgsm_random, pgd, bim, random_sign, or "
        "a spec such as 'pgd(steps=7, loss=margin)'"
    ),
    "eps": "attack budget in pixel scale [0, 1]",
    "attack_steps": "iterations of iterative attacks",
    "attack_alpha": "step size of iterative attacks (0: 2.5 * eps / steps)",
    "attack_loss_on": "logits or probabilities: where the attack takes its loss",
    "adv_ratio": "share of adversarial examples per training batch",
    "warmup_epochs": "clean epochs before adversarial training starts",
    "eps_ramp_epochs": "epochs over which eps grows linearly to --eps",
    "adv_fraction": "adversarial_epoch: share of the training set regenerated each epoch",
    "robust_eval_size": "validation images attacked each epoch to log robust accuracy",
    "monitor_attack": (
        "evaluation attack of that per-epoch robust accuracy (a spec), or 'training' for the "
        "training attack"
    ),
    "guard_images": (
        "adversarial_batch: training images PGD-10-checked at each epoch end against catastrophic "
        "overfitting (0: off)"
    ),
    "guard_drop": (
        "stop and restore the previous epoch's weights when that robust accuracy falls more than "
        "this below its best"
    ),
    "trades_beta": "trades: weight of the KL term KL(f(x) || f(x')) (the paper's 1 and 6)",
    "mart_beta": "mart: weight of the KL term weighted by 1 - p_y(x)",
    "awp_gamma": (
        "adversarial_batch, trades, mart: relative size of the adversarial weight perturbation "
        "per kernel (0: off; the paper's 5e-3)"
    ),
    "awp_warmup_epochs": "epochs trained before the adversarial weight perturbation starts",
    "contrastive_margin": (
        "contrastive: distance beyond which pairs of different classes cost nothing (> 0; at "
        "most 2 apart on unit-length embeddings)"
    ),
    "contrastive_weight": "contrastive: weight of the contrastive term (>= 0; 0: cross-entropy)",
    "contrastive_normalize": "contrastive: distances between unit-length embeddings",
    "teacher_temperature": "distillation: temperature the teacher trains at",
    "student_temperature": "distillation: temperature the student trains at",
    "deploy_temperature": "distillation: temperature the student is deployed at",
    "teacher_dir": "distillation: an earlier run folder (or .keras file) holding the teacher",
    "teacher_recipe": (
        "distillation: recipe that trains the teacher in this run (standard, adversarial_batch, "
        "adversarial_epoch, random_noise, trades, mart, contrastive)"
    ),
    "distill_alpha": "distillation: weight of the soft-label loss (1 - alpha on hard labels)",
    "test_noise": (
        "noise preprocessing put in front of the final model: none, random_sign, gaussian"
    ),
    "test_noise_eps": "magnitude of that test-time noise (pixel scale)",
    "export_tflite": (
        "also export the main model as TFLite for devices: a comma list of float32, float16, int8 "
        "(int8: full-integer quantization calibrated on 200 seeded training images); "
        "RUN:NAME_int8 evaluates it"
    ),
    "output_dir": "run folder (default saved_models/<run_name>)",
    "run_name": "run name (default <recipe>-<model>-<dataset>)",
    "overwrite": "replace an existing run folder (not consulted with --resume)",
    "resume": (
        "continue the run in --output_dir from its last epoch (same settings as its config.json; "
        "the result equals an uninterrupted run)"
    ),
    "distribution": (
        "tf.distribute strategy: default, mirrored, multi_worker (reads TF_CONFIG; start one "
        "process per worker)"
    ),
    "logical_cpus": "split the CPU into N logical devices (to run mirrored on one CPU)",
    "jit_compile": "XLA: auto (on only with a GPU), true or false",
    "deterministic": "ask TensorFlow for deterministic ops (repeatable runs on CPU)",
    "verbose": "0 silent, 1 progress bar, 2 one line per epoch",
}


def define_flags(flag_values: flags.FlagValues) -> flags.FlagValues:
    """Defines this command's flags (one per TrainConfig field) on `flag_values` and returns it."""
    cli.define_flags_from_dataclass(TrainConfig, HELP, flag_values)
    return flag_values


FLAGS = define_flags(flags.FlagValues())
"""This command's flags, apart from absl's global flags.FLAGS (so the three commands import
together); `python -m tfadv.train` defines them on flags.FLAGS, where --helpfull finds them."""


def job_from_flags(flag_values: flags.FlagValues = FLAGS) -> TrainConfig:
    """The run parsed flags describe (values not yet checked: TrainConfig.check_values)."""
    return cli.dataclass_from_flags(TrainConfig, flag_values)


def main(argv, flag_values: flags.FlagValues = FLAGS):
    if len(argv) > 1:
        cli.fail(f"unexpected arguments {argv[1:]}; flags look like --name=value")
    logging.set_verbosity(
        logging.ERROR
    )  # TFDS and TF warn through absl; our own messages are prints
    config = job_from_flags(flag_values)
    names = [field.name for field in dataclasses.fields(TrainConfig)]
    interrupted = f"interrupted; continue with --resume --output_dir={config.output_dir or '...'}"
    summary = cli.run_main(lambda: work(config), names, interrupted=interrupted)
    print(os.linesep.join(summary.lines()))


def work(config: TrainConfig):
    config.check_values()
    if (
        config.distribution != "multi_worker"
    ):  # there only the chief checks, once it knows it is the chief
        run_folder.check_output_dir(config)
    with native_stderr_silenced():
        from tfadv.experiment.run import run_training
        from tfadv.runtime.devices import gpu_available

        gpu_available()  # the one-time CUDA probe, silenced here instead of logging mid-run
    return run_training(config)


if __name__ == "__main__":
    cli.run(define_flags, main)
