"""The one tf.data builder: indexed elements, an order and random draws that are functions of
(seed, epoch, index), batched for the replicas of a tf.distribute strategy.

    ds = tfadv.data.to_dataset(data.train, batch_size=128, shuffle=True, augment=("flip", "crop"))

Nothing in a pipeline depends on how many times the process has iterated it once `epoch` is
given: epoch e visits the elements in the order `index_shuffle(position, seed(seed, e))` and
element i draws its augmentation from `seed(seed, e, i)`. A run that resumes at epoch e (the
training loop sets `epoch` at every epoch start) sees the same batches as the run it continues.
"""

import tensorflow as tf

from tfadv.data.augment import make_augment_fn
from tfadv.data.types import ImageSet

SHUFFLE_SALT = 0x5EED  # the order of epoch e comes from (seed, SHUFFLE_SALT) folded with e


def epoch_variable(initial: int = 0) -> tf.Variable:
    """An int64 variable a training loop sets at every epoch start (see `build`'s `epoch`).

    Create it outside any `strategy.scope()`: it is input-pipeline state, read on the host.
    """
    check_outside_strategy()
    with tf.init_scope():
        return tf.Variable(int(initial), dtype=tf.int64, trainable=False, name="pipeline_epoch")


def check_outside_strategy() -> None:
    """Raises ValueError inside a `strategy.scope()`: pipeline variables there would be mirrored."""
    if tf.distribute.has_strategy() and tf.distribute.in_cross_replica_context():
        raise ValueError(
            "Expected the input pipeline to be made outside strategy.scope() (its variables are "
            "host data). "
            f"Received: a call inside the scope of {type(tf.distribute.get_strategy()).__name__}"
        )


def epoch_seed(seed, epoch) -> tf.Tensor:
    """The (2,) int64 stateless seed of one epoch: a function of (seed, epoch) only."""
    base = tf.stack([tf.cast(seed, tf.int64), tf.constant(SHUFFLE_SALT, tf.int64)])
    return tf.cast(
        tf.random.experimental.stateless_fold_in(base, tf.cast(epoch, tf.int64)), tf.int64
    )


def element_seed(seed_of_epoch, index) -> tf.Tensor:
    """The (2,) int64 stateless seed of one element in an epoch."""
    return tf.cast(
        tf.random.experimental.stateless_fold_in(seed_of_epoch, tf.cast(index, tf.int64)), tf.int64
    )


def check_batching(batch_size, replicas) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(
            f"Expected batch_size to be an integer > 0. Received: batch_size={batch_size!r}"
        )
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas <= 0:
        raise ValueError(f"Expected replicas to be an integer > 0. Received: replicas={replicas!r}")
    if batch_size % replicas:
        raise ValueError(
            f"Expected batch_size to be a multiple of replicas={replicas}. Received: "
            f"batch_size={batch_size}"
        )


def _epoch_source(epoch):
    """A one-element dataset holding the epoch of the pass that is starting.

    epoch: a tf.Variable (read when the pass starts), an int (every pass is that epoch) or None
    (passes are counted: the k-th iteration over the dataset in this process is epoch k).
    """
    if isinstance(epoch, int):
        return tf.data.Dataset.from_tensors(tf.constant(epoch, tf.int64))
    if epoch is None:
        epoch = epoch_variable(-1)
        return tf.data.Dataset.from_tensors(0).map(lambda _: epoch.assign_add(1))
    return tf.data.Dataset.from_tensors(0).map(lambda _: epoch.read_value())


def build(size: int, element, batch_size: int, *, shuffle=False, seed=0, epoch=None, replicas=1):
    """Batched dataset of `element(index, seed)` over indices 0..size-1.

    Args:
        size: number of elements (>= 0).
        element: `(index int64 scalar, seed (2,) int64) -> (image, label)`; `seed` is a function
            of (seed, epoch, index) for the element's random draws (augmentation).
        batch_size: global batch size (a multiple of `replicas`).
        shuffle: visit the elements in a new seeded order every epoch.
        seed: seeds the order and the elements' draws.
        epoch: a tf.Variable holding the epoch (see `epoch_variable`), an int (a fixed epoch),
            or None to count passes (the k-th iteration over the dataset is epoch k).
        replicas: replicas of the tf.distribute strategy. Each epoch keeps a multiple of
            `replicas` elements (the few left out change every epoch when shuffling): with
            Keras 3.15 / TF 2.21, fit fails when a batch does not split evenly over replicas.
    """
    check_batching(batch_size, replicas)
    kept = size - size % replicas
    last = tf.constant(max(size - 1, 0), tf.int64)

    def one(epoch_value, position):
        seed_of_epoch = epoch_seed(seed, epoch_value)
        index = (
            tf.random.experimental.index_shuffle(position, seed_of_epoch, last)
            if shuffle
            else position
        )
        return element(index, element_seed(seed_of_epoch, index))

    def pass_over(epoch_value):
        return tf.data.Dataset.range(kept).map(
            lambda p: one(epoch_value, p), num_parallel_calls=tf.data.AUTOTUNE
        )

    ds = _epoch_source(epoch).flat_map(pass_over)
    ds = ds.apply(tf.data.experimental.assert_cardinality(kept))
    options = tf.data.Options()
    # several workers: each takes its part of every global batch (there are no files to shard)
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE).with_options(options)


def image_element(images, labels, augment=()):
    """`element(index, seed)` over uint8 images: float32 in [0, 1], augmented with `augment` ops."""
    images = tf.convert_to_tensor(images)
    labels = tf.convert_to_tensor(labels, tf.int64)
    augment_fn = make_augment_fn(tuple(augment)) if augment else None

    def element(index, seed):
        image = tf.cast(tf.gather(images, index), tf.float32) / 255.0
        return (augment_fn(image, seed) if augment_fn else image), tf.gather(labels, index)

    return element


def to_dataset(
    data: ImageSet,
    batch_size: int,
    shuffle: bool = False,
    augment=(),
    seed: int = 0,
    replicas: int = 1,
    epoch=None,
):
    """Batched (images float32 [0,1], labels int64) dataset of an ImageSet (see `build`).

    Shuffling and augmentation are new every epoch and repeatable: functions of (seed, epoch,
    image). With `epoch` None the k-th pass over the dataset is epoch k.
    """
    check_batching(batch_size, replicas)
    element = image_element(data.images, data.labels, augment)
    if epoch is None and not (shuffle or augment):
        epoch = 0  # nothing random: no epoch counter needed
    return build(
        len(data), element, batch_size, shuffle=shuffle, seed=seed, epoch=epoch, replicas=replicas
    )
