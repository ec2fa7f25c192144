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

import importlib
import sys
import types

SUBMODULES = ("losses", "norms", "randomness", "targets")
_CATALOG = "tfadv.attacks.catalog"


class _Package(types.ModuleType):
    """tfadv.attacks: the names of __all__ load the attacks (and TensorFlow) on first use, so that
    tfadv.attacks.options imports without TensorFlow."""

    def __getattribute__(self, name):
        if name in _LAZY:
            own = super().__getattribute__("__dict__").get(name)
            if own is not None and not isinstance(own, types.ModuleType):
                return own  # set on the package itself (e.g. monkeypatched in a test)
            return getattr(importlib.import_module(_CATALOG), name)
        return super().__getattribute__(name)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(__all__))


# The one list of exported names: tfadv.attacks.catalog defines each (and takes its __all__ from
# here); reading this list loads no TensorFlow.
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
    "hop_skip_jump",
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

_LAZY = frozenset(__all__) - set(SUBMODULES)


def __getattr__(name):
    if name in SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


sys.modules[__name__].__class__ = _Package
