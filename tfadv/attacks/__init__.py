"""Adversarial attacks on image classifiers: pure functions with one shared signature, and
`Attack` values that carry one attack with its options everywhere.

    from tfadv import attacks
    x_adv = attacks.pgd(model, images, labels, eps=8 / 255, steps=10, loss="margin")
    attack = attacks.Attack("pgd", steps=10, loss="margin")      # the same, as one value
    x_adv = attack(model, images, labels, 8 / 255)

Every attack takes `(model, images, labels, eps, **options)`: any classifier
`tfadv.models.as_classifier` accepts (Keras models ending in TemperatureSoftmax, a softmax or
logits; keras.applications; SavedModels), float images in [0, 1], int labels of shape (N,),
and eps in pixel scale. It returns adversarial images (float32, same shape, inside the
eps-ball and [0, 1], no gradient flowing back). Losses (`loss=`: "ce", "margin", "dlr", "ce_t"
or a callable) are taken on the logits unless `loss_on="probabilities"` (the naive attacker's
view). Invalid arguments raise ValueError echoing the value.

The AutoAttack-grade attacks: `apgd` (APGD-CE; registered also as "apgd_dlr" with loss="dlr"),
`apgd_targeted` ("apgd_t": targeted DLR toward the top-9 other classes), `fab_targeted`
("fab_t": minimum-norm FAB toward the same targets) and `square` (score-based, no gradients).
The minimum-norm searches `deepfool`, `carlini_wagner_l2` ("cw_l2") and `fmn` give each image's
distance to the boundary (`minimum_norm`, `MinimumNormResult`); with eps they return the
closest adversarial found where it lies within eps.
"""

from tfadv.attacks import losses, norms, randomness, targets
from tfadv.attacks.apgd import apgd, apgd_targeted
from tfadv.attacks.carlini_wagner import carlini_wagner_l2, carlini_wagner_l2_search
from tfadv.attacks.core import choose_targets
from tfadv.attacks.deepfool import deepfool, deepfool_search
from tfadv.attacks.fab import fab_targeted
from tfadv.attacks.fmn import fmn, fmn_search
from tfadv.attacks.gradient import fgsm, fgsm_targeted, input_gradient, random_sign, steps_to_flip
from tfadv.attacks.hop_skip_jump import hop_skip_jump
from tfadv.attacks.iterative import bim, fgsm_random, pgd
from tfadv.attacks.losses import LOSS_ON, LOSSES, Loss
from tfadv.attacks.minimum_norm import MinimumNormResult, minimum_norm
from tfadv.attacks.norms import NORMS
from tfadv.attacks.one_pixel import one_pixel
from tfadv.attacks.patch import PatchResult, apply_patch, patch
from tfadv.attacks.runner import (
    AttackResult,
    adversarial_images,
    predict_classes,
    run_attack,
    transfer,
)
from tfadv.attacks.spec import Attack, get, names, register
from tfadv.attacks.square import square
from tfadv.attacks.storage import load, save
from tfadv.models.adapter import logits_of, probabilities_of

for _name, _fn, _defaults in (
    ("fgsm", fgsm, {}),
    ("fgsm_targeted", fgsm, {"target": "least_likely"}),
    ("fgsm_random", fgsm_random, {}),
    ("bim", bim, {}),
    ("pgd", pgd, {}),
    ("random_sign", random_sign, {}),
    ("one_pixel", one_pixel, {}),
    ("patch", patch, {}),
    ("apgd", apgd, {}),
    ("apgd_dlr", apgd, {"loss": "dlr"}),
    ("apgd_t", apgd_targeted, {}),
    ("fab_t", fab_targeted, {}),
    ("square", square, {}),
    ("hop_skip_jump", hop_skip_jump, {}),
    ("deepfool", deepfool, {}),
    ("cw_l2", carlini_wagner_l2, {}),
    ("fmn", fmn, {}),
):
    register(_name, _fn, **_defaults)

__all__ = [
    "Attack",
    "AttackResult",
    "MinimumNormResult",
    "carlini_wagner_l2",
    "carlini_wagner_l2_search",
    "deepfool",
    "deepfool_search",
    "fmn",
    "fmn_search",
    "minimum_norm",
    "LOSSES",
    "LOSS_ON",
    "Loss",
    "NORMS",
    "PatchResult",
    "adversarial_images",
    "apgd",
    "apgd_targeted",
    "apply_patch",
    "fab_targeted",
    "bim",
    "choose_targets",
    "fgsm",
    "fgsm_random",
    "fgsm_targeted",
    "get",
    "input_gradient",
    "load",
    "logits_of",
    "losses",
    "names",
    "norms",
    "one_pixel",
    "patch",
    "pgd",
    "predict_classes",
    "probabilities_of",
    "random_sign",
    "randomness",
    "register",
    "run_attack",
    "save",
    "square",
    "steps_to_flip",
    "targets",
    "transfer",
]
