"""The evaluation's figures (on `tfadv.runtime.figures`): example grids, accuracy-vs-eps curves,
heatmaps, gradient histograms; written atomically as PNG (`save_png`) or turned into an image array
for TensorBoard (`to_array`).

    fig = plots.example_grid(clean, adversarial, labels, clean_pred, adv_pred, class_names)
    plots.save_png(fig, "grid.png")
"""

import numpy as np

from tfadv.runtime.figures import (
    class_name,
    panel_grid,
    plt,
    png_bytes,
    save_png,
    show_image,
    to_array,
)

__all__ = [
    "adversarial_grid",
    "eps_curves",
    "example_grid",
    "gradient_histograms",
    "heatmaps",
    "plt",
    "png_bytes",
    "save_png",
    "to_array",
]


def example_grid(
    clean,
    adversarial,
    labels,
    clean_predictions,
    adversarial_predictions,
    class_names=None,
    title: str = "",
    clean_confidence=None,
    adversarial_confidence=None,
):
    """One column per image: clean on top, adversarial below, the perturbation (amplified to the
    full range) at the bottom, each titled with its predicted class (and confidence when given).
    Wrong predictions are titled in red. Images are float (N, H, W, C) in [0, 1]. Returns the
    figure."""
    clean, adversarial = np.asarray(clean, np.float32), np.asarray(adversarial, np.float32)
    n = len(clean)
    if n == 0:
        raise ValueError("Expected at least one image for the grid. Received: 0 images")
    fig, axes = panel_grid(3, n, height=1.8)
    delta = adversarial - clean
    scale = max(float(np.abs(delta).max()), 1e-12)

    def caption(predictions, confidence, i):
        text = class_name(class_names, predictions[i])
        return text if confidence is None else f"{text}\n{100 * confidence[i]:.0f}%"

    for i in range(n):
        panels = (
            (clean[i], caption(clean_predictions, clean_confidence, i), clean_predictions[i]),
            (
                adversarial[i],
                caption(adversarial_predictions, adversarial_confidence, i),
                adversarial_predictions[i],
            ),
            (
                0.5 + 0.5 * delta[i] / scale,
                f"true: {class_name(class_names, labels[i])}",
                labels[i],
            ),
        )
        for row, (image, text, predicted) in enumerate(panels):
            wrong = row != 2 and predicted != labels[i]
            show_image(axes[row, i], image, title=text, color="red" if wrong else "black")
    for row, label in enumerate(("clean", "adversarial", f"delta x{0.5 / scale:.0f}")):
        axes[row, 0].set_ylabel(label, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def adversarial_grid(
    path: str,
    clean,
    adversarial,
    labels,
    clean_predictions,
    adversarial_predictions,
    class_names=None,
    title="",
):
    """`example_grid` written as a PNG at `path`."""
    fig = example_grid(
        clean, adversarial, labels, clean_predictions, adversarial_predictions, class_names, title
    )
    return save_png(fig, path)


def eps_curves(sweep, title: str = ""):
    """Accuracy vs eps, one line per attack: `sweep` has columns attack, eps, adversarial_accuracy
    (and a `model` column for several models). Returns the figure."""
    fig, ax = plt.subplots(figsize=(6, 4))
    group_keys = ["model", "attack"] if "model" in sweep else ["attack"]
    for key, rows in sweep.groupby(group_keys, sort=False):
        label = " / ".join(key) if isinstance(key, tuple) else key
        ax.plot(rows["eps"], rows["adversarial_accuracy"], marker="o", label=label)
    ax.set_xscale("symlog", linthresh=1e-3)
    ax.set_xlabel("eps (pixel scale)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def heatmaps(
    matrices: dict,
    row_labels,
    column_labels,
    title: str = "",
    fmt: str = "d",
    row_title="",
    column_title="",
):
    """Side-by-side annotated heatmaps, one per {panel title: 2-D array}. Returns the figure."""
    n = len(matrices)
    size = max(3.5, 0.45 * len(column_labels) + 1.5)
    fig, axes = plt.subplots(1, n, figsize=(size * n, size), squeeze=False)
    for ax, (name, matrix) in zip(axes[0], matrices.items(), strict=True):
        matrix = np.asarray(matrix)
        ax.imshow(matrix, cmap="Blues")
        ax.set_xticks(
            range(len(column_labels)), [str(c) for c in column_labels], rotation=90, fontsize=7
        )
        ax.set_yticks(range(len(row_labels)), [str(r) for r in row_labels], fontsize=7)
        high = np.nanmax(matrix) if matrix.size else 0
        for (i, j), value in np.ndenumerate(matrix):
            text = format(value, fmt) if np.isfinite(value) else ""
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=6,
                color="white" if value > 0.6 * high else "black",
            )
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(column_title, fontsize=8)
        ax.set_ylabel(row_title, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def gradient_histograms(norms: dict, correct, title: str = ""):
    """Histograms of per-image input-gradient L2 norms, one panel per {view: norms}, images
    classified correctly in one colour and incorrectly in another; exact zeros are counted in
    the legend (a log axis cannot show them). Returns the figure."""
    correct = np.asarray(correct, bool)
    fig, axes = plt.subplots(1, len(norms), figsize=(5 * len(norms), 3.6), squeeze=False)
    for ax, (view, values) in zip(axes[0], norms.items(), strict=True):
        values = np.asarray(values, np.float64)
        positive = values[np.isfinite(values) & (values > 0)]
        low, high = (positive.min(), positive.max()) if len(positive) else (1e-8, 1.0)
        bins = np.logspace(np.log10(low) - 0.1, np.log10(high) + 0.1, 40)
        for mask, label, colour in (
            (correct, "correct", "tab:blue"),
            (~correct, "incorrect", "tab:red"),
        ):
            chosen = values[mask]
            zeros = int(np.sum(chosen == 0))
            ax.hist(
                chosen[chosen > 0],
                bins=bins,
                alpha=0.6,
                color=colour,
                label=f"{label} (n={mask.sum()}, {zeros} exactly 0)",
            )
        ax.set_xscale("log")
        ax.set_xlabel(f"||grad_x loss|| on {view}")
        ax.set_ylabel("images")
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
