"""Hardening classifiers: adversarial training (per batch, per epoch, pre-generated noise),
defensive distillation, noise preprocessing at test time, randomized-smoothing certification,
and a latent-space (contrastive embedding, nearest reference) defence."""

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
from tfadv.defenses.latent import (
    ContrastiveTrainer,
    NearestReferenceClassifier,
    ReferenceLogits,
    choose_references,
    contrastive_loss,
    embedding_model,
    embeddings,
)
from tfadv.defenses.overfitting_guard import OverfittingGuard
from tfadv.defenses.smoothing import (
    ABSTAIN,
    Certification,
    SmoothedClassifier,
    certified_accuracy,
    clopper_pearson_lower,
)
from tfadv.defenses.test_noise import TEST_NOISES, noise_layer, with_test_noise

__all__ = [
    "ABSTAIN", "AdversarialTrainer", "Certification", "ContrastiveTrainer", "Distiller", "EpsSchedule",
    "NearestReferenceClassifier", "OverfittingGuard", "ReferenceLogits", "RegenerateAdversarialCopy", "SmoothedClassifier",
    "TEST_NOISES", "TrainingSetWithCopy", "certified_accuracy", "choose_references", "choose_subset", "clopper_pearson_lower",
    "contrastive_loss", "embedding_model", "embeddings", "eps_at", "generate", "generate_per_replica", "noise_layer",
    "soft_label_loss", "soft_labels", "with_test_noise",
]  # fmt: skip
