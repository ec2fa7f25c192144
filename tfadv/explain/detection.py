"""Consistency-based detection of sticker (adversarial patch) attacks.

A clean image keeps its class when a small region is covered; a patched one usually does not,
because its prediction rests on the few pixels of the sticker. The detector covers a grid of
squares (the places of `tfadv.explain.occlusion`), one at a time, and scores how much the
uncovered prediction depends on any one of them:

| score | meaning (for the uncovered image's predicted class c) |
|---|---|
| `max_drop` (default) | the largest drop of p_c over the candidate places, in [0, 1] |
| `flip_fraction` | the share of candidate places whose covering changes the predicted class |

Candidates are every grid place (`candidates="grid"`) or the `top_k` places where the drop is
largest (`"top_k"`; the same `max_drop`, a sharper `flip_fraction`). `max_drop` is the default:
it is continuous (few ties, a smooth ROC curve) and it is large exactly when covering one
square takes the class away, which is what a sticker that decides the class looks like; a
clean image's p_c rarely rests on one square. An image is flagged when its score exceeds the
threshold (`fit_threshold` picks it for a target false-positive rate on clean images).
Use a square at least as large as the stickers expected (the attack's `size`).

    detector = ConsistencyDetector(model, size=8, stride=2)
    detector.fit_threshold(clean_val_images, fpr=0.05)
    report = detector.evaluate(clean_test_images, patched_test_images)   # TPR, FPR, AUC, ROC
"""

import dataclasses

import numpy as np

from tfadv.explain.occlusion import DEFAULT_FILL, occlusion
from tfadv.runtime import validation

SCORES = ("max_drop", "flip_fraction")
CANDIDATES = ("grid", "top_k")


def roc_curve(clean_scores, attacked_scores) -> tuple:
    """(fpr, tpr, thresholds) with the attacked images as positives, flagged when
    score >= threshold.

    thresholds start at +inf (nothing flagged, the point (0, 0)) and then run over the distinct
    scores, highest first, ending at (1, 1). NumPy only.
    """
    clean, attacked = (
        _scores_array(clean_scores, "clean_scores"),
        _scores_array(attacked_scores, "attacked_scores"),
    )
    thresholds = np.unique(np.concatenate([clean, attacked]))[::-1]
    clean_sorted, attacked_sorted = np.sort(clean), np.sort(attacked)
    # number of scores >= t for each t: n - (number of scores < t)
    fpr = (len(clean) - np.searchsorted(clean_sorted, thresholds, side="left")) / len(clean)
    tpr = (len(attacked) - np.searchsorted(attacked_sorted, thresholds, side="left")) / len(
        attacked
    )
    return np.r_[0.0, fpr], np.r_[0.0, tpr], np.r_[np.inf, thresholds]


def roc_auc(clean_scores, attacked_scores) -> float:
    """Area under the ROC curve (trapezoids): P(attacked score > clean score) + P(equal) / 2."""
    fpr, tpr, _ = roc_curve(clean_scores, attacked_scores)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def threshold_for_fpr(clean_scores, fpr: float) -> float:
    """The smallest threshold t with at most floor(fpr * n) clean scores above it (flag: score > t).

    fpr = 1 gives -inf (everything flagged)."""
    clean = _scores_array(clean_scores, "clean_scores")
    fpr = validation.check_fraction("fpr", fpr)
    allowed = int(np.floor(fpr * len(clean) + 1e-9))
    if allowed >= len(clean):
        return float("-inf")
    return float(np.sort(clean)[::-1][allowed])


def _scores_array(scores, name) -> np.ndarray:
    array = np.asarray(scores, np.float64).reshape(-1)
    if len(array) == 0:
        raise ValueError(f"Expected at least one score in {name}. Received: {name} of length 0")
    if not np.all(np.isfinite(array)):
        raise ValueError(
            f"Expected finite scores in {name}. Received: {name} with non-finite values"
        )
    return array


@dataclasses.dataclass
class DetectionReport:
    """The detector at its threshold on clean and attacked images, and its ROC curve.

    tpr: share of attacked images flagged; fpr: share of clean images flagged; auc: area under
    the ROC curve; tpr_successful: TPR on the attacked images whose prediction differs from
    their label (NaN without labels or without such images).
    """

    threshold: float
    tpr: float
    fpr: float
    auc: float
    roc_fpr: np.ndarray
    roc_tpr: np.ndarray
    clean_scores: np.ndarray
    attacked_scores: np.ndarray
    tpr_successful: float = float("nan")

    def summary(self) -> dict:
        return {
            "threshold": self.threshold,
            "tpr": self.tpr,
            "fpr": self.fpr,
            "auc": self.auc,
            "tpr_successful": self.tpr_successful,
            "n_clean": len(self.clean_scores),
            "n_attacked": len(self.attacked_scores),
        }


class ConsistencyDetector:
    """Flags images whose prediction depends on one small covered square (see the module docstring).

    Args:
        model: any classifier `tfadv.models.as_classifier` accepts.
        size: side of the covering square, pixels (at least the sticker's).
        stride: step between squares, pixels.
        fill: value in [0, 1] written into the square (0.5 grey).
        score: "max_drop" or "flip_fraction".
        candidates: "grid" (every place) or "top_k" (the `top_k` places of largest drop).
        top_k: number of candidate places for candidates="top_k".
        threshold: flag when score > threshold; None until `fit_threshold`.
        batch_size, chunk_size, jit_compile: passed to `tfadv.explain.occlusion`.
    """

    def __init__(
        self,
        model,
        *,
        size: int = 8,
        stride: int = 4,
        fill: float = DEFAULT_FILL,
        score: str = "max_drop",
        candidates: str = "grid",
        top_k: int = 5,
        threshold=None,
        batch_size: int = 32,
        chunk_size: int = 512,
        jit_compile="auto",
    ):
        self.model = model
        self.size = validation.check_positive_int("size", size)
        self.stride = validation.check_positive_int("stride", stride)
        self.fill = validation.check_fraction("fill", fill)
        self.score = validation.check_choice("score", score, SCORES)
        self.candidates = validation.check_choice("candidates", candidates, CANDIDATES)
        self.top_k = validation.check_positive_int("top_k", top_k)
        self.threshold = None if threshold is None else float(threshold)
        self.options = dict(batch_size=batch_size, chunk_size=chunk_size, jit_compile=jit_compile)

    def __repr__(self):
        return (
            f"ConsistencyDetector(size={self.size}, stride={self.stride}, "
            f"fill={self.fill}, score={self.score!r}, candidates={self.candidates!r}, "
            f"top_k={self.top_k}, threshold={self.threshold})"
        )

    def scores(self, images) -> np.ndarray:
        """float32 (N,) consistency scores (higher: more likely attacked)."""
        return self.scores_from_maps(self.maps(images))

    def maps(self, images):
        """The occlusion maps the scores come from (`tfadv.explain.OcclusionMaps`), for the
        predicted classes."""
        return occlusion(
            self.model, images, size=self.size, stride=self.stride, fill=self.fill, **self.options
        )

    def scores_from_maps(self, maps) -> np.ndarray:
        """float32 (N,) scores from occlusion maps of the predicted classes (made with this
        detector's size, stride and fill): one set of maps serves every `score` and `candidates`
        choice."""
        n = len(maps.drops)
        drops = maps.drops.reshape(n, -1)
        flipped = maps.covered_predictions.reshape(n, -1) != maps.predictions[:, None]
        if self.candidates == "top_k":
            k = min(self.top_k, drops.shape[1])
            places = np.argsort(-drops, axis=1, kind="stable")[:, :k]
            drops, flipped = (
                np.take_along_axis(drops, places, 1),
                np.take_along_axis(flipped, places, 1),
            )
        if self.score == "max_drop":
            return np.maximum(drops.max(axis=1), 0.0).astype(np.float32)
        return flipped.mean(axis=1).astype(np.float32)

    def fit_threshold(self, clean_images, fpr: float = 0.05) -> float:
        """Sets (and returns) the threshold that flags at most a share `fpr` of `clean_images`."""
        self.threshold = threshold_for_fpr(self.scores(clean_images), fpr)
        return self.threshold

    def detect(self, images) -> np.ndarray:
        """bool (N,): score > threshold.

        Raises:
            ValueError: no threshold yet (call `fit_threshold` or pass `threshold`).
        """
        return self.flag(self.scores(images))

    def flag(self, scores) -> np.ndarray:
        """bool (N,): scores > threshold."""
        if self.threshold is None:
            raise ValueError(
                "The detector has no threshold: "
                "call fit_threshold(clean_images) first. Received: threshold=None"
            )
        return np.asarray(scores) > self.threshold

    def evaluate(self, clean_images, attacked_images, attacked_labels=None) -> DetectionReport:
        """TPR on `attacked_images`, FPR on `clean_images` at the threshold, and the ROC curve.

        With `attacked_labels` (true classes) also the TPR on the successful attacks.
        """
        attacked_maps = self.maps(attacked_images)
        successful = (
            None
            if attacked_labels is None
            else attacked_maps.predictions != np.asarray(attacked_labels)
        )
        return self.report(
            self.scores(clean_images), self.scores_from_maps(attacked_maps), successful
        )

    def report(self, clean_scores, attacked_scores, successful=None) -> DetectionReport:
        """The DetectionReport of given scores at the threshold; `successful` (bool (N,)) marks the
        attacked images whose attack succeeded."""
        clean, attacked = (
            _scores_array(clean_scores, "clean_scores"),
            _scores_array(attacked_scores, "attacked_scores"),
        )
        fpr, tpr, _ = roc_curve(clean, attacked)
        flagged = self.flag(attacked)
        tpr_successful = float("nan")
        if successful is not None and np.any(successful):
            tpr_successful = float(flagged[np.asarray(successful, bool)].mean())
        return DetectionReport(
            self.threshold,
            float(flagged.mean()),
            float(self.flag(clean).mean()),
            roc_auc(clean, attacked),
            fpr,
            tpr,
            clean,
            attacked,
            tpr_successful,
        )
