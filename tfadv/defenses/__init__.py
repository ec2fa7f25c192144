"""Hardening classifiers: adversarial training (per batch, per epoch, pre-generated noise),
defensive distillation, and noise preprocessing at test time."""

from tfadv.defenses.adversarial_training import (
    AdversarialTrainer,
    TrainingSetWithCopy,
    choose_subset,
    eps_at,
    generate,
    generate_per_replica,
)
from tfadv.defenses.callbacks import EpsSchedule, RegenerateAdversarialCopy
from tfadv.defenses.distillation import Distiller, soft_label_loss, soft_labels
from tfadv.defenses.test_noise import TEST_NOISES, noise_layer, with_test_noise

__all__ = [
    "AdversarialTrainer", "Distiller", "EpsSchedule", "RegenerateAdversarialCopy", "TEST_NOISES",
    "TrainingSetWithCopy", "choose_subset", "eps_at", "generate", "generate_per_replica", "noise_layer", "soft_label_loss", "soft_labels",
    "with_test_noise",
]  # fmt: skip
