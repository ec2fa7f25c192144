"""tf.data pipelines from in-memory ImageSets: float32 [0, 1], cached, prefetched."""

import tensorflow as tf

from tfadv.data.augment import make_augment_fn
from tfadv.data.types import ImageSet


def to_dataset(data: ImageSet, batch_size: int, shuffle: bool = False, augment=(), seed: int = 0, replicas: int = 1):
    """Batched (images float32 [0,1], labels int64) dataset.

    Decoding to float is cached; shuffling (per epoch) and augmentation happen after
    the cache so that every epoch sees new draws.

    With `replicas` > 1 (a MirroredStrategy), the set is trimmed to a multiple of
    `replicas` images (after shuffling, so the few left out change every epoch):
    with Keras 3.15 / TF 2.21, fit fails when a batch does not split evenly over
    replicas, and batch_size must itself be a multiple of `replicas`.
    """
    if batch_size <= 0:
        raise ValueError(f"Expected batch_size > 0. Received: batch_size={batch_size!r}")
    ds = tf.data.Dataset.from_tensor_slices((data.images, data.labels))
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(min(len(data), 50_000), seed=seed, reshuffle_each_iteration=True)
    if replicas > 1:
        if batch_size % replicas:
            raise ValueError(f"Expected batch_size to be a multiple of replicas={replicas}. Received: batch_size={batch_size}")
        ds = ds.take(len(data) - len(data) % replicas)
    if augment:
        fn = make_augment_fn(tuple(augment))
        ds = ds.map(lambda x, y: (fn(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
