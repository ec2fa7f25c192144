"""Figures of the explain tools and the studies (matplotlib, Agg): map overlays of clean and
adversarial images side by side, ROC curves, certified accuracy over radius, 2-D projections of
embeddings. Each returns a figure; write it with `save_png` (atomic, closes the figure).

    fig = map_overlays(clean, adversarial, saliency(model, clean), saliency(model, adversarial))
    save_png(fig, "saliency.png")
"""

import textwrap

import numpy as np

from tfadv.evaluation.plots import plt, save_png

__all__ = [
    "certified_accuracy_figure",
    "embedding_figure",
    "fit_pca_2d",
    "map_overlays",
    "project_2d",
    "roc_figure",
    "save_png",
]


def _name(class_names, index) -> str:
    index = int(index)
    if index < 0:
        return "abstain"
    return (
        class_names[index] if class_names is not None and index < len(class_names) else str(index)
    )


def _show(ax, image, heat=None, limit=1.0, signed=False, title="", color="black"):
    ax.imshow(np.clip(image.squeeze(), 0, 1), cmap="gray" if image.shape[-1] == 1 else None)
    if heat is not None:
        if signed:
            ax.imshow(heat, cmap="RdBu_r", vmin=-limit, vmax=limit, alpha=0.6)
        else:
            ax.imshow(heat, cmap="inferno", vmin=0, vmax=limit, alpha=0.6)
    ax.set_title(title, fontsize=7, color=color)
    ax.set_xticks([])
    ax.set_yticks([])


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

    Images are float (N, H, W, C) in [0, 1]; maps (N, H, W) (saliency, or `OcclusionMaps.upsampled`).
    A row's two maps share one colour scale (its largest |value|); maps with negative values use a
    diverging scale (red: covering hurts the class, blue: it helps). Titles give the predicted
    class when given, red when it differs from `labels`.
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
                text = f"{kind}: {_name(class_names, predictions[i])}"
                if labels is not None and int(predictions[i]) != int(labels[i]):
                    color = "red"
            _show(axes[i, col], image, heat, limit, signed, text, color)
        if labels is not None:
            axes[i, 0].set_ylabel(f"true: {_name(class_names, labels[i])}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def roc_figure(fpr, tpr, auc: float, title: str = "", operating_point=None):
    """The ROC curve (false-positive rate on x, true-positive rate on y) with its area in the legend;
    `operating_point` (fpr, tpr) marks the detector's threshold."""
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


def certified_accuracy_figure(radius_grid, curves: dict, title: str = ""):
    """Certified accuracy (y) over L2 radius (x, pixel scale); `curves` maps a label to accuracies on the grid."""
    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    for label, accuracies in curves.items():
        ax.plot(radius_grid, accuracies, drawstyle="steps-post", label=label)
    ax.set_xlabel("L2 radius (pixel scale)")
    ax.set_ylabel("certified accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if title:
        ax.set_title("\n".join(textwrap.wrap(title, 48)), fontsize=9)
    fig.tight_layout()
    return fig


def fit_pca_2d(embeddings) -> tuple:
    """(mean (D,), components (D, 2)): the first two principal axes of float (N, D) embeddings (NumPy SVD)."""
    e = np.asarray(embeddings, np.float64)
    if e.ndim != 2 or len(e) < 2:
        raise ValueError(f"Expected embeddings of shape (N >= 2, D). Received: shape={e.shape}")
    mean = e.mean(axis=0)
    _, _, vt = np.linalg.svd(e - mean, full_matrices=False)
    components = np.zeros((e.shape[1], 2))
    components[:, : min(2, len(vt))] = vt[:2].T
    return mean, components


def project_2d(embeddings, pca=None) -> np.ndarray:
    """float32 (N, 2) coordinates on the principal axes `pca` (from `fit_pca_2d`; default: fit on these)."""
    e = np.asarray(embeddings, np.float64)
    mean, components = fit_pca_2d(e) if pca is None else pca
    return ((e - mean) @ components).astype(np.float32)


def embedding_figure(panels, class_names=None, title: str = ""):
    """Side-by-side scatter plots of 2-D points coloured by class.

    Args:
        panels: list of dicts with "title", "points" (N, 2), "labels" (N,), and optionally
            "moved_to" (M, 2) with "moved_from" (M, 2): arrows from clean to attacked points,
            coloured by "moved_labels" (M,) (e.g. the attacked prediction).
        class_names: legend names.
    """
    if not panels:
        raise ValueError("Expected at least one panel. Received: panels=[]")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.0), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax, panel in zip(axes[0], panels, strict=True):
        points, labels = np.asarray(panel["points"]), np.asarray(panel["labels"])
        for c in np.unique(labels):
            chosen = labels == c
            ax.scatter(
                points[chosen, 0],
                points[chosen, 1],
                s=6,
                color=cmap(int(c) % 10),
                alpha=0.6,
                label=_name(class_names, c),
            )
        if panel.get("moved_to") is not None:
            start, end = np.asarray(panel["moved_from"]), np.asarray(panel["moved_to"])
            moved = np.asarray(panel.get("moved_labels", np.zeros(len(end), int)))
            for (x0, y0), (x1, y1), c in zip(start, end, moved, strict=True):
                ax.annotate(
                    "",
                    (x1, y1),
                    (x0, y0),
                    arrowprops=dict(arrowstyle="->", color=cmap(int(c) % 10), lw=0.8),
                )
            ax.scatter(
                end[:, 0],
                end[:, 1],
                s=18,
                marker="x",
                color="black",
                linewidths=0.8,
                label="attacked",
            )
        ax.set_title(panel.get("title", ""), fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, -1].legend(fontsize=6, markerscale=2, loc="best")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
