"""Attacks by name: every entry takes (model, images, labels, eps, **options) and returns the
adversarial images ("patch" returns a PatchResult whose `.images` they are, and needs eps=None)."""

from tfadv.attacks import gradient
from tfadv.attacks.one_pixel import one_pixel
from tfadv.attacks.patch import patch

ATTACKS = {
    "fgsm": gradient.fgsm,
    "fgsm_targeted": gradient.fgsm_targeted,
    "fgsm_random": gradient.fgsm_random,
    "bim": gradient.bim,
    "pgd": gradient.pgd,
    "random_sign": gradient.random_sign,
    "one_pixel": one_pixel,
    "patch": patch,
}


def get(name):
    """The attack registered as `name`; a callable is returned unchanged.

    Raises:
        ValueError: for an unknown name, listing the choices.
    """
    if callable(name):
        return name
    if name not in ATTACKS:
        raise ValueError(f"Unknown attack {name!r}; expected one of {sorted(ATTACKS)}")
    return ATTACKS[name]
