"""Figures of embeddings (on `tfadv.runtime.figures`): 2-D principal-axis projections and
scatter plots coloured by class, with arrows where an attack moved points.

    pca = fit_pca_2d(embeddings)
    fig = embedding_figure([{"title": "clean", "points": project_2d(embeddings, pca), "labels": y}])
"""

import numpy as np

from tfadv.runtime.figures import class_name, plt, save_png

__all__ = ["embedding_figure", "fit_pca_2d", "project_2d", "save_png"]


def fit_pca_2d(embeddings) -> tuple:
    """(mean (D,), components (D, 2)): the first two principal axes of float (N, D) embeddings
    (NumPy SVD)."""
    e = np.asarray(embeddings, np.float64)
    if e.ndim != 2 or len(e) < 2:
        raise ValueError(f"Expected embeddings of shape (N >= 2, D). Received: shape={e.shape}")
    mean = e.mean(axis=0)
    _, _, vt = np.linalg.svd(e - mean, full_matrices=False)
    components = np.zeros((e.shape[1], 2))
    components[:, : min(2, len(vt))] = vt[:2].T
    return mean, components


def project_2d(embeddings, pca=None) -> np.ndarray:
    """float32 (N, 2) coordinates on the principal axes `pca`
    (from `fit_pca_2d`; default: fit on these)."""
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
                label=class_name(class_names, c),
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
