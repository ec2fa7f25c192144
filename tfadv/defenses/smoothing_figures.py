"""Figures of randomized smoothing (on `tfadv.runtime.figures`): certified accuracy over radius.

fig = certified_accuracy_figure(radii, {"sigma 0.25": accuracies})
save_png(fig, "certified.png")
"""

import textwrap

from tfadv.runtime.figures import plt, save_png

__all__ = ["certified_accuracy_figure", "save_png"]


def certified_accuracy_figure(radius_grid, curves: dict, title: str = ""):
    """Certified accuracy (y) over L2 radius (x, pixel scale); `curves` maps a label to accuracies
    on the grid."""
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
