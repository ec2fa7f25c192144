"""Per-image random draws: every draw an attack makes for an image is a function of (seed, image
index, draw site, restart or query, element), never of the batch the image is attacked in.

    seeds = randomness.image_seeds(seed, indices)        # int64 (N, 2), one seed per image
    noise = randomness.uniform(seeds, [32, 32, 3], salt=randomness.PGD_START)   # (N, 32, 32, 3)
    seeds = randomness.fold(seeds, restart)              # the seeds of another restart

An attack given `seed` (None, an int, a pair, or per-image seeds (N, 2)) draws from
`per_image(seed, n)`: per-image seeds as given, else fold(seed, image's place in the batch).
`tfadv.attacks.run_attack` passes the seeds of each image's place in the data set, so an image
gets the same draws, and the same result, at any batch size, image order or subset.

The generator is counter based and vectorised (integer TF ops only, so it runs under XLA too):
murmur3's 32-bit finaliser, a bijection on uint32 with full avalanche, mixes the per-image
seed, the draw's salt and each element's counter; the top 24 bits of the result give a uniform
float32 in [0, 1), Box-Muller turns two of those into a normal.
"""

import math

import tensorflow as tf

from tfadv.attacks import checks
from tfadv.attacks.checks import SEED_SPEC, SEEDS_SPEC

# Salts: one per draw site (a site may use salt + 0, ..., salt + 15 for its several draws), so two
# sites never share draws for one image.
PGD_START = 16  # norms' random start (PGD, FGSM with random start, FAB's restarts)
APGD_START = 32  # APGD's start on the surface of the ball
SQUARE_START = 48
SQUARE_SEARCH = 64  # with the query's seeds, fold(seeds, query)
RANDOM_TARGET = 80
RANDOM_SIGN = 96

_ODD_1, _ODD_2 = 0x85EBCA6B, 0xC2B2AE35  # murmur3's fmix32 multipliers
_GOLDEN = 0x9E3779B9  # 2^32 / golden ratio: spreads consecutive counters
_SECOND = 0x68E31DA4  # starts the second word of a seed pair
_TO_UNIT = 2.0**-24
_NORMAL_RADIUS, _NORMAL_ANGLE = 1 << 20, 2 << 20  # added to a salt: a normal's two uniforms


def _u32(value):
    return tf.constant(value, tf.uint32)


def _mix(h):
    """murmur3's 32-bit finaliser: a bijection of uint32 in which every input bit flips each
    output bit with probability about 1/2."""
    h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, _u32(16)))
    h = h * _u32(_ODD_1)
    h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, _u32(13)))
    h = h * _u32(_ODD_2)
    return tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, _u32(16)))


def _words(values):
    """(low, high) 32-bit words of int64 `values`, as uint32."""
    values = tf.cast(values, tf.int64)
    low = tf.bitwise.bitwise_and(values, 0xFFFFFFFF)
    high = tf.bitwise.bitwise_and(tf.bitwise.right_shift(values, 32), 0xFFFFFFFF)
    return tf.cast(low, tf.uint32), tf.cast(high, tf.uint32)


def _absorb(start, words):
    h = _u32(start)
    for word in words:
        h = _mix(tf.bitwise.bitwise_xor(h, word) + _u32(_GOLDEN))
    return h


def _pair(words) -> tf.Tensor:
    """int64 (..., 2) seed pairs (each entry in [0, 2^32)) hashed from uint32 `words`."""
    first, second = _absorb(0, words), _absorb(_SECOND, words)
    return tf.stack([tf.cast(first, tf.int64), tf.cast(second, tf.int64)], axis=-1)


def image_seeds(seed, indices) -> tf.Tensor:
    """int64 (N, 2): the seed of each image, hashed from `seed` (None, an int, a pair or a (2,)
    tensor; see `checks.to_seed`) and its index (int (N,), e.g. its place in the data set)."""
    seed = checks.to_seed(seed)
    indices = tf.convert_to_tensor(indices)
    if not indices.dtype.is_integer or indices.shape.rank != 1:
        raise ValueError(
            f"Expected integer image indices of shape (N,). Received: indices={indices!r}"
        )
    return _hashed_seeds(seed, tf.cast(indices, tf.int64))


@tf.function(input_signature=[SEED_SPEC, tf.TensorSpec([None], tf.int64)], autograph=False)
def _hashed_seeds(seed, indices):  # compiled: one call instead of ~100 small eager ops
    return _pair([*_words(seed[0]), *_words(seed[1]), *_words(indices)])  # scalars, then (N,)


def is_per_image(seed) -> bool:
    """True for per-image seeds: an integer array or tensor of shape (N, 2)."""
    if isinstance(seed, (list, tuple)):
        return bool(seed) and all(isinstance(part, (list, tuple)) for part in seed)
    shape = getattr(seed, "shape", None)
    return shape is not None and tf.TensorShape(shape).rank == 2


def per_image(seed, n) -> tf.Tensor:
    """int64 (n, 2) per-image seeds for an attack on n images given `seed`: per-image seeds
    (N, 2) as they are (N must be n), else fold(seed, place in the batch) for each image."""
    if not is_per_image(seed):
        return image_seeds(seed, tf.range(tf.cast(n, tf.int64)))
    seeds = tf.convert_to_tensor(seed)
    if not seeds.dtype.is_integer or seeds.shape[-1] != 2:
        raise ValueError(
            "Expected per-image seeds: integers of shape (N, 2). "
            f"Received: seed.shape={tuple(seeds.shape)}"
        )
    rows = seeds.shape[0]
    if isinstance(n, int) and rows is not None and rows != n:
        raise ValueError(
            f"Expected per-image seeds of shape ({n}, 2), one per image. "
            f"Received: seed.shape={tuple(seeds.shape)}"
        )
    return tf.cast(seeds, tf.int64)


def fold(seeds, data) -> tf.Tensor:
    """int64 (N, 2): new per-image seeds from `seeds` (N, 2) and an integer `data` (a restart,
    run or query number; a Python int or a scalar tensor)."""
    return _folded(tf.cast(seeds, tf.int64), tf.cast(data, tf.int64))


@tf.function(input_signature=[SEEDS_SPEC, tf.TensorSpec([], tf.int64)], autograph=False)
def _folded(seeds, data):
    return _pair([*_words(seeds[:, 0]), *_words(seeds[:, 1]), *_words(data)])


def bits(seeds, shape, salt: int) -> tf.Tensor:
    """uint32 (N, *shape): random words, element k of image i a hash of (seeds[i], salt, k).

    `shape` is a list of ints (or scalar int tensors) for one image; `salt` a Python int."""
    seeds = tf.cast(seeds, tf.int64)
    shape = list(shape)
    if all(isinstance(d, int) for d in shape):
        size = math.prod(shape)
    else:
        size = tf.reduce_prod(tf.stack([tf.cast(d, tf.int32) for d in shape]))
    counter = _mix(
        tf.cast(tf.range(size), tf.uint32) * _u32(_GOLDEN) + _mix(_u32(salt) + _u32(_ODD_2))
    )
    counter = tf.reshape(counter, [1, *shape])  # the same for every image: hashed once
    row = _absorb(_SECOND, [*_words(seeds[:, 0]), *_words(seeds[:, 1])])  # one word per image
    return _mix(tf.bitwise.bitwise_xor(counter, tf.reshape(row, [-1] + [1] * len(shape))))


def uniform(seeds, shape, salt) -> tf.Tensor:
    """float32 (N, *shape), uniform in [0, 1) (multiples of 2^-24)."""
    return tf.cast(tf.bitwise.right_shift(bits(seeds, shape, salt), _u32(8)), tf.float32) * _TO_UNIT


def normal(seeds, shape, salt) -> tf.Tensor:
    """float32 (N, *shape), standard normal (Box-Muller on two uniforms)."""
    radius = tf.sqrt(
        -2.0 * tf.math.log(1.0 - uniform(seeds, shape, salt + _NORMAL_RADIUS))
    )  # 1 - u in (0, 1]
    return radius * tf.cos((2.0 * math.pi) * uniform(seeds, shape, salt + _NORMAL_ANGLE))


def signs(seeds, shape, salt) -> tf.Tensor:
    """float32 (N, *shape): +1.0 or -1.0 with equal probability."""
    top = tf.bitwise.right_shift(bits(seeds, shape, salt), _u32(31))
    return 2.0 * tf.cast(top, tf.float32) - 1.0


def integers(seeds, shape, maxval, salt) -> tf.Tensor:
    """int32 (N, *shape), uniform in [0, maxval) (maxval a scalar >= 1, at most 2^24; the bias
    is below maxval / 2^24)."""
    maxval = tf.cast(maxval, tf.int32)
    scaled = tf.floor(uniform(seeds, shape, salt) * tf.cast(maxval, tf.float32))
    return tf.minimum(tf.cast(scaled, tf.int32), maxval - 1)
