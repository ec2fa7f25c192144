"""Occlusion maps (Zeiler & Fergus 2014): cover a square at each place of a grid and record the
drop in the class's probability.

    maps = occlusion(model, images, size=8, stride=4)     # fill 0.5 (grey)
    maps.drops        # (N, rows, cols): p_c(x) - p_c(x with the square at that place covered)
    maps.upsampled    # (N, H, W): each pixel gets the mean drop of the squares covering it

Grid places are the top-left corners (r, c) with r in range(0, H - size + 1, stride) (same for
columns), so rows = (H - size) // stride + 1. The class c is each image's predicted class unless
`classes` is given. Probabilities are the model's own (`Classifier.probabilities`). For a batch
of images every covered copy is made inside one compiled function and classified in chunks of
about `chunk_size` images (a `tf.map_fn` over chunks of places): no Python loop per image or place.
"""

from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tfadv.attacks.core import classifier_of, compiled
from tfadv.data.batching import map_batches
from tfadv.explain.saliency import prepare
from tfadv.runtime import tensors, validation
from tfadv.runtime.tensors import LABELS_SPEC, SCALAR_SPEC

DEFAULT_FILL = 0.5  # grey


class OcclusionMaps(NamedTuple):
    """NumPy results of `occlusion` for N images and a rows x cols grid.

    drops: float32 (N, rows, cols), p_c(x) - p_c(covered x); > 0 where covering hurts class c.
    upsampled: float32 (N, H, W), per pixel the mean drop of the squares covering it (0 if none).
    classes: int64 (N,), the class c of each image.
    probabilities: float32 (N,), p_c(x) of the uncovered image.
    predictions: int64 (N,), the uncovered image's predicted class.
    covered_predictions: int64 (N, rows, cols), the predicted class with each square covered.
    positions: int32 (rows * cols, 2), the top-left corners (row, column), row-major.
    """

    drops: np.ndarray
    upsampled: np.ndarray
    classes: np.ndarray
    probabilities: np.ndarray
    predictions: np.ndarray
    covered_predictions: np.ndarray
    positions: np.ndarray


def grid_positions(height: int, width: int, size: int, stride: int) -> np.ndarray:
    """Top-left corners (row, column), int32 (rows * cols, 2), row-major."""
    rows, cols = np.arange(0, height - size + 1, stride), np.arange(0, width - size + 1, stride)
    return np.stack(np.meshgrid(rows, cols, indexing="ij"), axis=-1).reshape(-1, 2).astype(np.int32)


def grid_masks(height: int, width: int, size: int, stride: int) -> np.ndarray:
    """float32 (P, H, W): 1 inside the square at each grid place."""
    positions = grid_positions(height, width, size, stride)
    masks = np.zeros((len(positions), height, width), np.float32)
    for i, (r, c) in enumerate(positions):
        masks[i, r : r + size, c : c + size] = 1.0
    return masks


def _occlusion_fn(x, classes, fill, *, model_ref, output, size, stride, places_per_chunk):
    clf = classifier_of(model_ref, output)
    height, width, channels = x.shape[1:]
    masks = grid_masks(height, width, size, stride)
    places = len(masks)
    chunks = -(-places // places_per_chunk)
    padded = np.zeros((chunks * places_per_chunk, height, width), np.float32)
    padded[:places] = masks
    chunked = tf.constant(padded.reshape(chunks, places_per_chunk, height, width, 1))

    probabilities = clf.probabilities(x)
    predictions = tf.argmax(probabilities, axis=-1)
    chosen = tf.where(classes < 0, predictions, classes)
    n = tf.shape(x)[0]

    def covered(m):  # m: (k, H, W, 1) -> p_c and predicted class of every image under each square
        copies = x[:, None] * (1.0 - m[None]) + fill * m[None]  # (n, k, H, W, C)
        p = clf.probabilities(tf.reshape(copies, [-1, height, width, channels]))
        p = tf.reshape(p, [n, places_per_chunk, -1])
        return tf.gather(p, chosen, axis=2, batch_dims=1), tf.argmax(p, axis=-1)

    p_covered, predicted = tf.map_fn(
        covered, chunked, fn_output_signature=(tf.float32, tf.int64), parallel_iterations=1
    )  # (chunks, n, k) each
    p_covered = tf.reshape(tf.transpose(p_covered, [1, 0, 2]), [n, -1])[:, :places]
    predicted = tf.reshape(tf.transpose(predicted, [1, 0, 2]), [n, -1])[:, :places]
    p_clean = tf.gather(probabilities, chosen, batch_dims=1)
    drops = p_clean[:, None] - p_covered
    flat_masks = masks.reshape(places, -1)
    coverage = flat_masks.sum(axis=0)
    per_pixel = tf.matmul(drops, tf.constant(flat_masks)) / tf.constant(np.maximum(coverage, 1.0))
    upsampled = tf.reshape(per_pixel, [n, height, width])
    return drops, upsampled, chosen, p_clean, predictions, predicted


def check_grid(size, stride, fill, height: int, width: int) -> tuple:
    """(size, stride, fill) checked against the image side."""
    size = validation.check_positive_int("size", size)
    if size > min(height, width):
        raise ValueError(
            f"Expected size <= {min(height, width)} (the image side). Received: size={size}"
        )
    stride = validation.check_positive_int("stride", stride)
    fill = validation.check_fraction("fill", fill)
    return size, stride, fill


def occlusion(
    model,
    images,
    classes=None,
    *,
    size: int = 8,
    stride: int = 4,
    fill: float = DEFAULT_FILL,
    batch_size: int = 32,
    chunk_size: int = 512,
    jit_compile="auto",
) -> OcclusionMaps:
    """Drop in the class's probability when a size x size square is covered, at each grid place.

    Args:
        model: any classifier `tfadv.models.as_classifier` accepts.
        images: float (N, H, W, C) in [0, 1].
        classes: int (N,) class per image; None: each image's predicted class.
        size: side of the covering square, pixels.
        stride: step between grid places, pixels.
        fill: value in [0, 1] written into the square (every channel); 0.5 is grey.
        batch_size: images per compiled call.
        chunk_size: covered copies classified per forward pass (memory bound), about
            batch_size * places per chunk.
        jit_compile: "auto" | "true" | "false" (XLA).

    Returns:
        OcclusionMaps (NumPy arrays).
    """
    clf, x, c = prepare(model, images, classes)
    height, width = x.shape[1], x.shape[2]
    size, stride, fill = check_grid(size, stride, fill, height, width)
    batch_size = validation.check_batch_size(batch_size)
    chunk_size = validation.check_positive_int("chunk_size", chunk_size)
    positions = grid_positions(height, width, size, stride)
    places_per_chunk = int(min(len(positions), max(1, chunk_size // batch_size)))
    fn = compiled(
        clf,
        _occlusion_fn,
        [tensors.image_spec(x), LABELS_SPEC, SCALAR_SPEC],
        jit_compile,
        size=size,
        stride=stride,
        places_per_chunk=places_per_chunk,
    )
    fill_tensor = tensors.to_scalar(fill)
    rest = []

    def run(xb, cb):
        out = [t.numpy() for t in fn(xb, cb, fill_tensor)]
        rest.append(out[1:])
        return out[0]

    drops = map_batches(run, x.numpy(), c.numpy(), batch_size=batch_size)
    upsampled, chosen, p_clean, predictions, covered = (
        np.concatenate(p) for p in zip(*rest, strict=True)
    )
    rows = len(np.unique(positions[:, 0]))
    grid = (len(drops), rows, len(positions) // rows)
    return OcclusionMaps(
        drops.reshape(grid).astype(np.float32),
        upsampled.astype(np.float32),
        chosen,
        p_clean.astype(np.float32),
        predictions,
        covered.reshape(grid),
        positions,
    )
