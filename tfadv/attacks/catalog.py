"""Every attack function of tfadv.attacks, registered by name (imported on the package's first
use of one of its names; this module loads TensorFlow)."""

# ruff: noqa: F401  (the imports are the exports; __all__ comes from the package, checked below)

from tfadv.attacks import __all__ as _package_names
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

# The exported names are the package's (tfadv/attacks/__init__.py lists them, so that its lazy
# names are known without loading TensorFlow); each must be defined here.
__all__ = list(_package_names)
_missing = sorted(set(__all__) - set(globals()))
if _missing:
    raise ImportError(
        f"Expected every name of tfadv.attacks.__all__ in {__name__}. Missing: {_missing}"
    )
