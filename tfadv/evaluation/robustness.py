"""Robust accuracy, eps sweeps and input-gradient statistics (the gradient-masking symptoms).

Images are float32 in [0, 1]; eps is in that pixel scale; `model` is any classifier
`tfadv.models.as_classifier` accepts; `attack` an `tfadv.attacks.Attack`, a name or a spec string.
"""

import numpy as np
import pandas as pd

from tfadv import attacks
from tfadv.data.batching import map_batches
from tfadv.models import as_classifier


def robust_accuracy(
    model, images, labels, attack, eps, batch_size: int = 256, **attack_options
) -> dict:
    """Accuracy before and after `attack` at budget `eps`.

    Returns:
        dict with clean_accuracy, adversarial_accuracy (over all images),
        adversarial_accuracy_on_correct (over the images classified correctly when clean),
        n and n_correct.
    """
    result = attacks.run_attack(
        model, (images, labels), attack, eps, batch_size=batch_size, **attack_options
    )
    return result.summary()


def eps_sweep(
    model, images, labels, attack, eps_values, batch_size: int = 256, **attack_options
) -> pd.DataFrame:
    """One `robust_accuracy` row per eps (columns: attack, eps, eps_255 and the summary keys)."""
    name = attacks.get(attack, **attack_options).describe()
    rows = []
    for eps in eps_values:
        row = robust_accuracy(model, images, labels, attack, eps, batch_size, **attack_options)
        rows.append({"attack": name, "eps": float(eps), "eps_255": float(eps) * 255, **row})
    return pd.DataFrame(rows)


def gradient_norms(
    model, images, labels, loss_on: str = "probabilities", batch_size: int = 256, loss="ce"
) -> np.ndarray:
    """Per-example L2 norm of the input gradient of the loss (cross-entropy by default), float32
    (N,).

    On `loss_on="probabilities"` a saturated softmax (e.g. a distilled student deployed
    at T=1) gives norms of exactly 0: gradient masking, not robustness. Non-finite
    gradients give NaN or inf norms.
    """

    def norms(x, y):
        grad = attacks.input_gradient(model, x, y, loss=loss, loss_on=loss_on).numpy()
        return np.sqrt(np.square(grad.reshape(len(grad), -1).astype(np.float64)).sum(axis=1))

    return map_batches(norms, images, labels, batch_size=batch_size).astype(np.float32)


def masking_report(model, images, labels, batch_size: int = 256) -> pd.DataFrame:
    """Gradient-masking symptoms: one row per view of the loss ("probabilities" only for models
    that output probabilities, then "logits") with the fraction of examples whose input gradient
    is exactly zero, the fraction that is not finite, and the median and mean L2 norms."""
    views = attacks.LOSS_ON if as_classifier(model).output == "probabilities" else ("logits",)
    rows = []
    for loss_on in views:
        norms = gradient_norms(model, images, labels, loss_on, batch_size)
        finite = norms[np.isfinite(norms)]
        rows.append(
            {
                "loss_on": loss_on,
                "zero_gradient_fraction": float((norms == 0).mean()),
                "nonfinite_fraction": float((~np.isfinite(norms)).mean()),
                "median_norm": float(np.median(finite)) if len(finite) else float("nan"),
                "mean_norm": float(finite.mean()) if len(finite) else float("nan"),
            }
        )
    return pd.DataFrame(rows)
