"""Figures (matplotlib, Agg backend: no display needed), written atomically as PNG."""


import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tfadv import export  # noqa: E402


def _name(class_names, index) -> str:
    return class_names[index] if class_names is not None and 0 <= index < len(class_names) else str(index)


def adversarial_grid(
    path: str,
    clean: np.ndarray,
    adversarial: np.ndarray,
    labels: np.ndarray,
    clean_predictions: np.ndarray,
    adversarial_predictions: np.ndarray,
    class_names=None,
    title: str = "",
) -> str:
    """A PNG with one column per image: clean on top, adversarial below, perturbation
    (amplified to the full range) at the bottom, each titled with its predicted class.
    Titles of wrong predictions are red. Images are float (N, H, W, C) in [0, 1]."""
    n = len(clean)
    if n == 0:
        raise ValueError("Expected at least one image for the grid. Received: 0 images")
    fig, axes = plt.subplots(3, n, figsize=(1.6 * n, 5.2), squeeze=False)
    delta = adversarial - clean
    scale = max(float(np.abs(delta).max()), 1e-12)
    for i in range(n):
        panels = (
            (clean[i], f"{_name(class_names, clean_predictions[i])}", clean_predictions[i]),
            (adversarial[i], f"{_name(class_names, adversarial_predictions[i])}", adversarial_predictions[i]),
            (0.5 + 0.5 * delta[i] / scale, f"true: {_name(class_names, labels[i])}", labels[i]),
        )
        for row, (image, text, predicted) in enumerate(panels):
            ax = axes[row, i]
            ax.imshow(np.clip(image.squeeze(), 0, 1), cmap="gray" if image.shape[-1] == 1 else None)
            ax.set_title(text, fontsize=8, color="black" if row == 2 or predicted == labels[i] else "red")
            ax.set_xticks([])
            ax.set_yticks([])
    for row, label in enumerate(("clean", "adversarial", f"delta x{0.5 / scale:.0f}")):
        axes[row, 0].set_ylabel(label, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    try:
        return export.atomic_file(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    finally:
        plt.close(fig)
