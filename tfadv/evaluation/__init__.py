"""Measuring robustness honestly: clean and robust accuracy, eps sweeps, gradient-masking checks,
per-class and confidence breakdowns, figures, and robust monitoring during training."""

from tfadv.evaluation.metrics import (
    CONFIDENCE_EDGES,
    clean_report,
    confidence_buckets,
    confusion_matrix,
    per_class_accuracy,
    predict_probabilities,
    top_k_error,
)
from tfadv.evaluation.monitor import RobustMonitor
from tfadv.evaluation.robustness import eps_sweep, gradient_norms, masking_report, robust_accuracy

__all__ = [
    "CONFIDENCE_EDGES", "RobustMonitor", "clean_report", "confidence_buckets", "confusion_matrix", "eps_sweep",
    "gradient_norms", "masking_report", "per_class_accuracy", "predict_probabilities", "robust_accuracy",
    "top_k_error",
]  # fmt: skip
