"""Measuring robustness honestly: the attack suite (each attack on the points still unbroken), the
gradient-masking checklist, the full report, clean and robust metrics, figures, and robust
monitoring during training."""

from tfadv.evaluation.checklist import Check
from tfadv.evaluation.metrics import (
    CONFIDENCE_EDGES,
    clean_report,
    confidence_buckets,
    confidence_table,
    confusion_matrix,
    per_class_accuracy,
    predict_probabilities,
    top_k_error,
)
from tfadv.evaluation.monitor import RobustMonitor
from tfadv.evaluation.report import (
    EvaluationReport,
    ModelEvaluation,
    attacked_view,
    evaluate,
    suite_folder,
)
from tfadv.evaluation.robustness import eps_sweep, gradient_norms, masking_report, robust_accuracy
from tfadv.evaluation.sections import DEFAULT as DEFAULT_SECTIONS
from tfadv.evaluation.sections import probes as section_probes
from tfadv.evaluation.store import EvaluationStore
from tfadv.evaluation.suite import SUITES, SuiteResult, run_suite, suite_attacks

__all__ = [
    "CONFIDENCE_EDGES",
    "DEFAULT_SECTIONS",
    "section_probes",
    "Check",
    "EvaluationReport",
    "EvaluationStore",
    "attacked_view",
    "suite_folder",
    "ModelEvaluation",
    "RobustMonitor",
    "SUITES",
    "SuiteResult",
    "clean_report",
    "confidence_buckets",
    "confidence_table",
    "confusion_matrix",
    "eps_sweep",
    "evaluate",
    "gradient_norms",
    "masking_report",
    "per_class_accuracy",
    "predict_probabilities",
    "robust_accuracy",
    "run_suite",
    "suite_attacks",
    "top_k_error",
]
