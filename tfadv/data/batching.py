"""One way to walk a data set in batches: arrays, an ImageSet or a tf.data dataset."""

import numpy as np
import tensorflow as tf


def batches(data, batch_size: int):
    """(iterator of (images, labels) batches, number of images or None if unknown).

    Args:
        data: (images, labels) arrays, an ImageSet (images become float32 in [0, 1]) or a
            tf.data dataset of (images, labels), batched or not.
        batch_size: images per batch (for arrays, ImageSets and unbatched datasets).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(
            f"Expected batch_size to be an integer > 0. Received: batch_size={batch_size!r}"
        )
    if isinstance(data, tf.data.Dataset):
        if data.element_spec[0].shape.rank == 3:
            data = data.batch(batch_size)
        return iter(data), None
    if hasattr(data, "float_images"):  # tfadv.data.ImageSet
        data = (data.float_images(), data.labels)
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise ValueError(
            "Expected (images, labels), an ImageSet or a tf.data.Dataset. Received: "
            f"{type(data).__name__}"
        )
    images, labels = data
    n = len(labels)
    if len(images) != n:
        raise ValueError(
            f"Expected as many labels as images. Received: {len(images)} images, {n} labels"
        )
    return (
        (images[i : i + batch_size], labels[i : i + batch_size]) for i in range(0, n, batch_size)
    ), n


def map_batches(fn, *arrays, batch_size: int = 256) -> np.ndarray:
    """fn(*batch) over aligned arrays in batches, concatenated as a NumPy array.

    `fn` returns a tensor or array whose first axis is the batch.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(
            f"Expected batch_size to be an integer > 0. Received: batch_size={batch_size!r}"
        )
    n = len(arrays[0])
    parts = [
        np.asarray(fn(*(a[i : i + batch_size] for a in arrays))) for i in range(0, n, batch_size)
    ]
    if not parts:
        raise ValueError("Expected at least one image. Received: an empty set")
    return np.concatenate(parts)
