"""Hardening classifiers: adversarial training (per batch, per epoch, pre-generated noise), TRADES,
MART, adversarial weight perturbation, defensive distillation, noise preprocessing at test time,
randomized-smoothing certification, and a latent-space (contrastive embedding, nearest reference)
defence."""

from tfadv.defenses.adversarial_training import (
    AdversarialTrainer,
    TrainingSetWithCopy,
    choose_subset,
    eps_at,
    generate,
    generate_per_replica,
)
from tfadv.defenses.awp import AwpSchedule
from tfadv.defenses.callbacks import EpsSchedule, RegenerateAdversarialCopy
from tfadv.defenses.distillation import Distiller, soft_label_loss, soft_labels
from tfadv.defenses.latent import (
    ContrastiveTrainer,
    NearestReferenceClassifier,
    ReferenceLogits,
    choose_references,
    contrastive_loss,
    embedding_model,
    embeddings,
)
from tfadv.defenses.mart import MartTrainer, mart_loss
from tfadv.defenses.overfitting_guard import OverfittingGuard
from tfadv.defenses.smoothing import (
    ABSTAIN,
    Certification,
    SmoothedClassifier,
    certified_accuracy,
    clopper_pearson_lower,
)
from tfadv.defenses.test_noise import TEST_NOISES, noise_layer, with_test_noise
from tfadv.defenses.trades import RobustLossTrainer, TradesTrainer, kl_divergence, trades_loss

__all__ = [
    "ABSTAIN",
    "AdversarialTrainer",
    "AwpSchedule",
    "Certification",
    "ContrastiveTrainer",
    "Distiller",
    "EpsSchedule",
    "MartTrainer",
    "NearestReferenceClassifier",
    "OverfittingGuard",
    "RobustLossTrainer",
    "TradesTrainer",
    "ReferenceLogits",
    "RegenerateAdversarialCopy",
    "SmoothedClassifier",
    "TEST_NOISES",
    "TrainingSetWithCopy",
    "certified_accuracy",
    "choose_references",
    "choose_subset",
    "clopper_pearson_lower",
    "contrastive_loss",
    "embedding_model",
    "embeddings",
    "eps_at",
    "generate",
    "generate_per_replica",
    "kl_divergence",
    "mart_loss",
    "noise_layer",
    "soft_label_loss",
    "soft_labels",
    "trades_loss",
    "with_test_noise",
]
