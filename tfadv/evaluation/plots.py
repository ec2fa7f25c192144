"""Figures (matplotlib, Agg backend: no display needed): built as figures, then written
atomically as PNG (`save_png`) or turned into an image array for TensorBoard (`to_array`).

    fig = plots.example_grid(clean, adversarial, labels, clean_pred, adv_pred, class_names)
    plots.save_png(fig, "grid.png")
"""

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tfadv.runtime.files import atomic_file  # noqa: E402


def _name(class_names, index) -> str:
    index = int(index)
    return class_names[index] if class_names is not None and 0 <= index < len(class_names) else str(index)


def save_png(fig, path: str, dpi: int = 100) -> str:
    """Writes the figure as a PNG, atomically, and closes it."""
    try:
        return atomic_file(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
    finally:
        plt.close(fig)


def to_array(fig, dpi: int = 80) -> np.ndarray:
    """The figure as a uint8 (1, H, W, 4) RGBA array (for tf.summary.image); closes it."""
    try:
        buffer = io.BytesIO()
        fig.savefig(buffer, dpi=dpi, format="png")
        buffer.seek(0)
        return (plt.imread(buffer, format="png")[None] * 255).astype(np.uint8)
    finally:
        plt.close(fig)


def example_grid(
    clean, adversarial, labels, clean_predictions, adversarial_predictions, class_names=None, title: str = "",
    clean_confidence=None, adversarial_confidence=None,
):  # fmt: skip
    """One column per image: clean on top, adversarial below, the perturbation (amplified to the
    full range) at the bottom, each titled with its predicted class (and confidence when given).
    Wrong predictions are titled in red. Images are float (N, H, W, C) in [0, 1]. Returns the figure."""
    clean, adversarial = np.asarray(clean, np.float32), np.asarray(adversarial, np.float32)
    n = len(clean)
    if n == 0:
        raise ValueError("Expected at least one image for the grid. Received: 0 images")
    fig, axes = plt.subplots(3, n, figsize=(1.6 * n, 5.4), squeeze=False)
    delta = adversarial - clean
    scale = max(float(np.abs(delta).max()), 1e-12)

    def caption(predictions, confidence, i):
        text = _name(class_names, predictions[i])
        return text if confidence is None else f"{text}\n{100 * confidence[i]:.0f}%"

    for i in range(n):
        panels = (
            (clean[i], caption(clean_predictions, clean_confidence, i), clean_predictions[i]),
            (adversarial[i], caption(adversarial_predictions, adversarial_confidence, i), adversarial_predictions[i]),
            (0.5 + 0.5 * delta[i] / scale, f"true: {_name(class_names, labels[i])}", labels[i]),
        )
        for row, (image, text, predicted) in enumerate(panels):
            ax = axes[row, i]
            ax.imshow(np.clip(image.squeeze(), 0, 1), cmap="gray" if image.shape[-1] == 1 else None)
            ax.set_title(text, fontsize=7, color="black" if row == 2 or predicted == labels[i] else "red")
            ax.set_xticks([])
            ax.set_yticks([])
    for row, label in enumerate(("clean", "adversarial", f"delta x{0.5 / scale:.0f}")):
        axes[row, 0].set_ylabel(label, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def adversarial_grid(path: str, clean, adversarial, labels, clean_predictions, adversarial_predictions, class_names=None, title=""):
    """`example_grid` written as a PNG at `path`."""
    fig = example_grid(clean, adversarial, labels, clean_predictions, adversarial_predictions, class_names, title)
    return save_png(fig, path)
