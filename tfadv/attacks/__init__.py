"""Adversarial attacks on image classifiers: pure functions with one shared signature.

    from tfadv import attacks
    x_adv = attacks.pgd(model, images, labels, eps=8 / 255, steps=10)
    x_adv = attacks.get("fgsm")(model, images, labels, 0.03)

Every attack takes `(model, images, labels, eps, **options)`: a Keras model ending in
TemperatureSoftmax (or a `tfadv.export.ExportedModel`), float images in [0, 1], int labels
of shape (N,), and eps in pixel scale. It returns adversarial images (float32, same shape,
inside the eps-ball and [0, 1], no gradient flowing back). The loss is taken on the
logits beneath the softmax by default (`loss_on="logits"`); `loss_on="probabilities"`
attacks the output probabilities as a naive attacker would. Invalid arguments raise
ValueError echoing the value.
"""

from tfadv.attacks._core import LOSS_ON, NORMS
from tfadv.attacks.gradient import (
    bim,
    choose_targets,
    fgsm,
    fgsm_random,
    fgsm_targeted,
    input_gradient,
    logits_of,
    pgd,
    random_sign,
    steps_to_flip,
)
from tfadv.attacks.one_pixel import one_pixel
from tfadv.attacks.patch import PatchResult, apply_patch, patch
from tfadv.attacks.registry import ATTACKS, get
from tfadv.attacks.runner import AttackResult, load, run_attack, save, transfer

__all__ = [
    "ATTACKS", "AttackResult", "LOSS_ON", "NORMS", "PatchResult", "apply_patch", "bim", "choose_targets",
    "fgsm", "fgsm_random", "fgsm_targeted", "get", "input_gradient", "load", "logits_of", "one_pixel",
    "patch", "pgd", "random_sign", "run_attack", "save", "steps_to_flip", "transfer",
]  # fmt: skip
