"""The argument checks and tensor conversions attacks use, under their public name
`tfadv.attacks.checks` (a re-export: they live in `tfadv.runtime.validation` and
`tfadv.runtime.tensors`, shared with the layers, defences and explain)."""

from tfadv.runtime.tensors import (
    LABELS_SPEC,
    SCALAR_SPEC,
    SEED_SPEC,
    SEEDS_SPEC,
    fold_seed,
    image_spec,
    is_concrete,
    split_seed,
    to_scalar,
    to_seed,
    unwrap_variable,
)
from tfadv.runtime.validation import (
    check_batch_size,
    check_choice,
    check_eps,
    check_fraction,
    check_positive_int,
    to_images,
    to_labels,
)

__all__ = [
    "LABELS_SPEC",
    "SCALAR_SPEC",
    "SEED_SPEC",
    "SEEDS_SPEC",
    "check_batch_size",
    "check_choice",
    "check_eps",
    "check_fraction",
    "check_positive_int",
    "fold_seed",
    "image_spec",
    "is_concrete",
    "split_seed",
    "to_images",
    "to_labels",
    "to_scalar",
    "to_seed",
    "unwrap_variable",
]
