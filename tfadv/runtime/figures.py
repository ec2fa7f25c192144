"""What every figure of tfadv shares (matplotlib, Agg backend: no display needed): writing a figure
as PNG bytes or file (atomically), an image panel with an optional heat-map overlay, a grid of
panels, and class names in titles.

    fig, axes = panel_grid(rows=2, columns=8)
    show_image(axes[0, 0], image, title="cat", color="red")
    save_png(fig, "grid.png")

Used by `tfadv.evaluation.plots` (example grids, curves, heatmaps) and the explain, smoothing and
embedding figures.
"""

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tfadv.runtime.files import atomic_file  # noqa: E402

__all__ = ["class_name", "panel_grid", "plt", "png_bytes", "save_png", "show_image", "to_array"]


def class_name(class_names, index) -> str:
    """The name of class `index` ("abstain" for -1, the index where no name is given)."""
    index = int(index)
    if index < 0:
        return "abstain"
    if class_names is not None and index < len(class_names):
        return class_names[index]
    return str(index)


def png_bytes(fig, dpi: int = 100) -> bytes:
    """The figure as PNG bytes; closes it."""
    try:
        buffer = io.BytesIO()
        fig.savefig(buffer, dpi=dpi, format="png")
        return buffer.getvalue()
    finally:
        plt.close(fig)


def save_png(fig, path: str, dpi: int = 100) -> str:
    """Writes the figure as a PNG, atomically, and closes it."""
    data = png_bytes(fig, dpi)

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)

    return atomic_file(path, write)


def to_array(fig, dpi: int = 80) -> np.ndarray:
    """The figure as a uint8 (1, H, W, 4) RGBA array (for tf.summary.image); closes it."""
    return (plt.imread(io.BytesIO(png_bytes(fig, dpi)), format="png")[None] * 255).astype(np.uint8)


def panel_grid(rows: int, columns: int, width: float = 1.6, height: float = 1.8):
    """(figure, axes (rows, columns)) for image panels of `width` x `height` inches."""
    size = (width * columns, height * rows)
    return plt.subplots(rows, columns, figsize=size, squeeze=False)


def show_image(ax, image, heat=None, limit=1.0, signed=False, title="", color="black"):
    """One image panel: `image` float (H, W, C) in [0, 1] (clipped), optionally overlaid with a
    heat map (H, W) on [0, limit] (or [-limit, limit] with `signed`), titled, without ticks."""
    image = np.asarray(image)
    ax.imshow(np.clip(image.squeeze(), 0, 1), cmap="gray" if image.shape[-1] == 1 else None)
    if heat is not None:
        if signed:
            ax.imshow(heat, cmap="RdBu_r", vmin=-limit, vmax=limit, alpha=0.6)
        else:
            ax.imshow(heat, cmap="inferno", vmin=0, vmax=limit, alpha=0.6)
    ax.set_title(title, fontsize=7, color=color)
    ax.set_xticks([])
    ax.set_yticks([])
