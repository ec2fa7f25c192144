"""Clean metrics: probabilities, confusion matrices, per-class accuracy, top-k error, confidence
buckets.

Images are float32 in [0, 1]; `model` is any classifier `tfadv.models.as_classifier` accepts.
"""

import numpy as np
import pandas as pd

from tfadv import attacks
from tfadv.data.batching import map_batches

CONFIDENCE_EDGES = (0.0, 0.5, 0.7, 0.9, 0.99, 1.0)


def predict_probabilities(model, images, batch_size: int = 256) -> np.ndarray:
    """The model's output probabilities (at its deployed temperature), float32 (N, classes)."""
    return map_batches(
        lambda x: attacks.probabilities_of(model, x), images, batch_size=batch_size
    ).astype(np.float32)


def confusion_matrix(labels, predictions, num_classes: int) -> np.ndarray:
    """Counts (num_classes, num_classes): row = true class, column = predicted class."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if labels.shape != predictions.shape:
        raise ValueError(
            "Expected labels and predictions of one shape. "
            f"Received: {labels.shape} and {predictions.shape}"
        )
    return np.bincount(
        labels * num_classes + predictions, minlength=num_classes * num_classes
    ).reshape(num_classes, num_classes)


def per_class_accuracy(labels, predictions, num_classes: int, class_names=None) -> pd.DataFrame:
    """One row per class: class, name, n (true examples) and accuracy (recall; NaN if n = 0)."""
    matrix = confusion_matrix(labels, predictions, num_classes)
    n = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.diag(matrix) / n
    names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
    return pd.DataFrame(
        {"class": np.arange(num_classes), "name": names, "n": n, "accuracy": accuracy}
    )


def top_k_error(probabilities, labels, k: int = 1) -> float:
    """Share of examples whose true class is not among the k most probable classes."""
    probabilities = np.asarray(probabilities)
    if not 1 <= k <= probabilities.shape[-1]:
        raise ValueError(f"Expected 1 <= k <= {probabilities.shape[-1]}. Received: k={k!r}")
    top = np.argsort(-probabilities, axis=-1, kind="stable")[:, :k]
    return float(1.0 - np.mean(np.any(top == np.asarray(labels)[:, None], axis=1)))


def confidence_buckets(probabilities, labels, edges=CONFIDENCE_EDGES) -> pd.DataFrame:
    """Examples grouped by top-1 probability: one row per bucket [low, high) (the last one
    closed) with n, accuracy and mean confidence; confident mistakes show up as high
    buckets with low accuracy."""
    probabilities, labels = np.asarray(probabilities), np.asarray(labels)
    given, edges = edges, np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or len(edges) < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"Expected increasing bucket edges. Received: edges={given!r}")
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    bucket = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, len(edges) - 2)
    rows = []
    for b in range(len(edges) - 1):
        inside = bucket == b
        rows.append(
            {
                "low": edges[b],
                "high": edges[b + 1],
                "n": int(inside.sum()),
                "accuracy": float(correct[inside].mean()) if inside.any() else float("nan"),
                "mean_confidence": float(confidence[inside].mean())
                if inside.any()
                else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def clean_report(model, images, labels, class_names=None, batch_size: int = 256) -> dict:
    """top1_error, top5_error (None with fewer than 5 classes), per_class (DataFrame),
    confusion (array) and confidence (DataFrame) of the model on clean images."""
    probabilities = predict_probabilities(model, images, batch_size)
    labels = np.asarray(labels)
    num_classes = probabilities.shape[-1]
    predictions = probabilities.argmax(axis=1)
    return {
        "top1_error": top_k_error(probabilities, labels, 1),
        "top5_error": top_k_error(probabilities, labels, 5) if num_classes >= 5 else None,
        "per_class": per_class_accuracy(labels, predictions, num_classes, class_names),
        "confusion": confusion_matrix(labels, predictions, num_classes),
        "confidence": confidence_buckets(probabilities, labels),
    }


POSSAS_BUCKETS = (
    ("high", 0.30, 1.01),
    ("medium", 0.15, 0.30),
    ("low", 0.0, 0.15),
)  # clean top-1 probability


def confidence_table(clean_probabilities, labels, adversarial_probabilities: dict) -> pd.DataFrame:
    """Top-1 and top-5 error per clean-confidence bucket (the Possas layout).

    Rows: buckets of the clean top-1 probability (high >= 30%, medium 15-30%, low < 15%) and
    "all"; columns: n, then for "clean" and every perturbation named in
    `adversarial_probabilities` ({name: (N, classes) probabilities on the perturbed images}),
    `<name> top1` and `<name> top5` errors (top-5 only with >= 5 classes).
    """
    clean = np.asarray(clean_probabilities)
    labels = np.asarray(labels)
    confidence = clean.max(axis=1)
    views = {"clean": clean, **{k: np.asarray(v) for k, v in adversarial_probabilities.items()}}
    rows = []
    for bucket, low, high in (*POSSAS_BUCKETS, ("all", 0.0, 1.01)):
        inside = (confidence >= low) & (confidence < high)
        row = {"bucket": bucket, "n": int(inside.sum())}
        for name, probabilities in views.items():
            for k in (1, 5):
                if k <= probabilities.shape[-1]:
                    row[f"{name} top{k}"] = (
                        top_k_error(probabilities[inside], labels[inside], k)
                        if inside.any()
                        else float("nan")
                    )
        rows.append(row)
    return pd.DataFrame(rows)
