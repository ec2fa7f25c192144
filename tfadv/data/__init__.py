"""Datasets for tfadv: CIFAR-10 (TFDS or the binary archive), other TFDS sets, synthetic.

data = tfadv.data.load("synthetic", train_limit=2000)
ds = tfadv.data.to_dataset(data.train, batch_size=128, shuffle=True)
"""

import numpy as np

from tfadv.data.augment import parse_augment
from tfadv.data.cifar_binary import load_cifar10_binary
from tfadv.data.imbalance import Imbalance, apply_imbalance, parse_imbalance
from tfadv.data.pipeline import epoch_variable, to_dataset
from tfadv.data.synthetic import CLASS_NAMES as SYNTHETIC_CLASS_NAMES
from tfadv.data.synthetic import make_synthetic
from tfadv.data.types import ImageDataset, ImageSet

SYNTHETIC_TRAIN_SIZE = 6000
SYNTHETIC_TEST_SIZE = 1000

__all__ = [
    "ImageDataset",
    "ImageSet",
    "Imbalance",
    "apply_imbalance",
    "epoch_variable",
    "load",
    "load_cifar10_binary",
    "make_synthetic",
    "parse_augment",
    "parse_imbalance",
    "split_validation",
    "to_dataset",
]


def split_validation(train: ImageSet, fraction: float, seed: int = 0):
    """Splits off a seeded random `fraction` of `train` as a validation set."""
    if not 0 <= fraction < 1:
        raise ValueError(
            f"Expected validation_fraction in [0, 1). Received: validation_fraction={fraction!r}"
        )
    order = np.random.default_rng(seed).permutation(len(train))
    n_val = int(round(len(train) * fraction))
    return train.take(np.sort(order[n_val:])), train.take(np.sort(order[:n_val]))


def load(
    name: str,
    data_dir: str | None = None,
    validation_fraction: float = 0.1,
    imbalance: str | Imbalance | None = None,
    train_limit: int = 0,
    test_limit: int = 0,
    seed: int = 0,
) -> ImageDataset:
    """Loads a dataset into memory and splits off validation data.

    Args:
        name: "synthetic", "cifar10" or any TFDS image-classification dataset.
        data_dir: for cifar10, a CIFAR-10 binary archive (folder or .tar.gz) read
            without network; for other TFDS sets, the TFDS data folder.
        validation_fraction: share of the training images held out for validation.
        imbalance: spec like "under:3:0.1" or "over:cat:2", applied to train only
            (after the validation split, so validation stays balanced).
        train_limit / test_limit: keep only the first N images (0: all); for quick runs.
        seed: seeds the synthetic set, the validation split and the imbalance.
    """
    if train_limit < 0 or test_limit < 0:
        raise ValueError(
            f"limits must be >= 0. Received: train_limit={train_limit}, test_limit={test_limit}"
        )
    if name == "synthetic":
        train = make_synthetic(train_limit or SYNTHETIC_TRAIN_SIZE, seed=seed)
        test = make_synthetic(test_limit or SYNTHETIC_TEST_SIZE, seed=seed + 1_000_003)
        class_names = list(SYNTHETIC_CLASS_NAMES)
    elif name == "cifar10" and data_dir:
        train, test, class_names = load_cifar10_binary(data_dir)
    else:
        from tfadv.data.tfds_source import load_tfds

        train, test, class_names = load_tfds(name, data_dir)
    train, test = train.head(train_limit), test.head(test_limit)
    train, val = split_validation(train, validation_fraction, seed)
    if not isinstance(imbalance, Imbalance):
        imbalance = parse_imbalance(imbalance, class_names)
    train = apply_imbalance(train, imbalance, seed)
    return ImageDataset(name, train, val, test, class_names)
