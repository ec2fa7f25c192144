"""Figures of the explain tools (on `tfadv.runtime.figures`): map overlays of clean and adversarial
images side by side, ROC curves of a detector. Each returns a figure; write it with `save_png`
(atomic, closes the figure). Certified-accuracy curves are in `tfadv.defenses.smoothing_figures`,
embedding projections in `tfadv.explain.embedding_figures`.

    fig = map_overlays(clean, adversarial, saliency(model, clean), saliency(model, adversarial))
    save_png(fig, "saliency.png")
"""

import textwrap

import numpy as np

from tfadv.runtime.figures import class_name, plt, save_png, show_image

__all__ = ["map_overlays", "roc_figure", "save_png"]


def map_overlays(
    clean,
    adversarial,
    clean_maps,
    adversarial_maps,
    *,
    labels=None,
    clean_predictions=None,
    adversarial_predictions=None,
    class_names=None,
    map_name: str = "map",
    title: str = "",
):
    """One row per image: clean | clean with its map | adversarial | adversarial with its map.

    Images are float (N, H, W, C) in [0, 1]; maps (N, H, W) (saliency, or
    `OcclusionMaps.upsampled`). A row's two maps share one colour scale (its largest |value|); maps
    with negative values use a diverging scale (red: covering hurts the class, blue: it helps).
    Titles give the predicted class when given, red when it differs from `labels`.
    """
    clean, adversarial = np.asarray(clean, np.float32), np.asarray(adversarial, np.float32)
    clean_maps, adversarial_maps = (
        np.asarray(clean_maps, np.float32),
        np.asarray(adversarial_maps, np.float32),
    )
    n = len(clean)
    if n == 0:
        raise ValueError("Expected at least one image for the overlays. Received: 0 images")
    signed = bool((clean_maps < 0).any() or (adversarial_maps < 0).any())
    fig, axes = plt.subplots(n, 4, figsize=(6.4, 1.7 * n + 0.4), squeeze=False)
    for i in range(n):
        limit = max(
            float(np.abs(clean_maps[i]).max()), float(np.abs(adversarial_maps[i]).max()), 1e-12
        )
        for col, (image, heat, predictions, kind) in enumerate(
            (
                (clean[i], None, clean_predictions, "clean"),
                (clean[i], clean_maps[i], clean_predictions, "clean"),
                (adversarial[i], None, adversarial_predictions, "adversarial"),
                (adversarial[i], adversarial_maps[i], adversarial_predictions, "adversarial"),
            )
        ):
            text, color = kind if heat is None else f"{map_name} (max {limit:.3g})", "black"
            if predictions is not None and heat is None:
                text = f"{kind}: {class_name(class_names, predictions[i])}"
                if labels is not None and int(predictions[i]) != int(labels[i]):
                    color = "red"
            show_image(axes[i, col], image, heat, limit, signed, text, color)
        if labels is not None:
            axes[i, 0].set_ylabel(f"true: {class_name(class_names, labels[i])}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def roc_figure(fpr, tpr, auc: float, title: str = "", operating_point=None):
    """The ROC curve (false-positive rate on x, true-positive rate on y) with its area in the
    legend; `operating_point` (fpr, tpr) marks the detector's threshold."""
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    ax.plot(fpr, tpr, drawstyle="default", label=f"AUC = {auc:.3f}")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="chance")
    if operating_point is not None:
        ax.plot(
            *operating_point,
            "o",
            color="red",
            label=f"threshold (FPR {operating_point[0]:.2f}, TPR {operating_point[1]:.2f})",
        )
    ax.set_xlabel("false-positive rate (clean flagged)")
    ax.set_ylabel("true-positive rate (attacked flagged)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend(fontsize=7, loc="lower right")
    if title:
        ax.set_title("\n".join(textwrap.wrap(title, 48)), fontsize=9)
    fig.tight_layout()
    return fig
