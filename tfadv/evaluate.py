"""Honest evaluation: clean and robust accuracy, eps sweeps, gradient masking, per-class metrics.

Images are float32 in [0, 1]; eps is in that pixel scale. `model` is a Keras model ending
in TemperatureSoftmax or a `tfadv.export.ExportedModel`.
"""

import numpy as np
import pandas as pd

from tfadv import attacks
from tfadv.attacks import runner


def robust_accuracy(model, images, labels, attack, eps, batch_size: int = 256, **attack_options) -> dict:
    """Accuracy before and after `attack` at budget `eps`.

    Returns:
        dict with clean_accuracy, adversarial_accuracy (over all images),
        adversarial_accuracy_on_correct (over the images classified correctly when clean),
        n and n_correct.
    """
    result = runner.run_attack(model, (images, labels), attack, eps, batch_size=batch_size, **attack_options)
    return result.summary()


def eps_sweep(model, images, labels, attack, eps_values, batch_size: int = 256, **attack_options) -> pd.DataFrame:
    """One `robust_accuracy` row per eps (columns: attack, eps, eps_255 and the summary keys)."""
    name = attack if isinstance(attack, str) else getattr(attack, "__name__", str(attack))
    rows = []
    for eps in eps_values:
        row = robust_accuracy(model, images, labels, attack, eps, batch_size, **attack_options)
        rows.append({"attack": name, "eps": float(eps), "eps_255": float(eps) * 255, **row})
    return pd.DataFrame(rows)


def gradient_norms(model, images, labels, loss_on: str = "probabilities", batch_size: int = 256) -> np.ndarray:
    """Per-example L2 norm of the input gradient of the cross-entropy, float32 (N,).

    On `loss_on="probabilities"` a saturated softmax (e.g. a distilled student deployed
    at T=1) gives norms of exactly 0: gradient masking, not robustness.
    """
    iterator, _ = runner.batches((images, labels), batch_size)
    norms = []
    for x, y in iterator:
        grad = attacks.input_gradient(model, x, y, loss_on=loss_on).numpy()
        norms.append(np.sqrt(np.square(grad.reshape(len(grad), -1)).sum(axis=1)))
    return np.concatenate(norms).astype(np.float32)


def masking_report(model, images, labels, batch_size: int = 256) -> pd.DataFrame:
    """Gradient-masking symptoms on both losses: one row per loss_on with the fraction of
    examples whose input gradient is exactly zero, and the median and mean L2 norms."""
    rows = []
    for loss_on in attacks.LOSS_ON:
        norms = gradient_norms(model, images, labels, loss_on, batch_size)
        rows.append(
            {
                "loss_on": loss_on,
                "zero_gradient_fraction": float((norms == 0).mean()),
                "median_norm": float(np.median(norms)),
                "mean_norm": float(norms.mean()),
            }
        )
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- clean-accuracy breakdowns

CONFIDENCE_EDGES = (0.0, 0.5, 0.7, 0.9, 0.99, 1.0)


def predict_probabilities(model, images, batch_size: int = 256) -> np.ndarray:
    """The model's output probabilities (at its deployed temperature), float32 (N, classes)."""
    if batch_size <= 0:
        raise ValueError(f"Expected batch_size > 0. Received: batch_size={batch_size!r}")
    parts = [np.asarray(model(images[i : i + batch_size], training=False)) for i in range(0, len(images), batch_size)]
    return np.concatenate(parts).astype(np.float32)


def confusion_matrix(labels, predictions, num_classes: int) -> np.ndarray:
    """Counts (num_classes, num_classes): row = true class, column = predicted class."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if labels.shape != predictions.shape:
        raise ValueError(f"Expected labels and predictions of one shape. Received: {labels.shape} and {predictions.shape}")
    return np.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def per_class_accuracy(labels, predictions, num_classes: int, class_names=None) -> pd.DataFrame:
    """One row per class: class, name, n (true examples) and accuracy (recall; NaN if n = 0)."""
    matrix = confusion_matrix(labels, predictions, num_classes)
    n = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.diag(matrix) / n
    names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
    return pd.DataFrame({"class": np.arange(num_classes), "name": names, "n": n, "accuracy": accuracy})


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
                "mean_confidence": float(confidence[inside].mean()) if inside.any() else float("nan"),
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
