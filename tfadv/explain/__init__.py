"""Seeing why a classifier decides: saliency and occlusion maps, their figures, and sticker
detection."""

from tfadv.explain import embedding_figures, figures
from tfadv.explain.detection import (
    CANDIDATES,
    SCORES,
    ConsistencyDetector,
    DetectionReport,
    roc_auc,
    roc_curve,
    threshold_for_fpr,
)
from tfadv.explain.occlusion import DEFAULT_FILL, OcclusionMaps, grid_positions, occlusion
from tfadv.explain.saliency import saliency

__all__ = [
    "CANDIDATES",
    "ConsistencyDetector",
    "DEFAULT_FILL",
    "DetectionReport",
    "OcclusionMaps",
    "SCORES",
    "embedding_figures",
    "figures",
    "grid_positions",
    "occlusion",
    "roc_auc",
    "roc_curve",
    "saliency",
    "threshold_for_fpr",
]
