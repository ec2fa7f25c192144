"""Square Attack's squares (Andriushchenko et al. 2020): the start and the candidate of each norm,
the windows they move and the L2 patterns they paint. `tfadv.attacks.norms` hands these out
(`norm.square_start`, `norm.square_candidate`); `tfadv.attacks.square` runs the search.

Shapes: images (n, H, W, C) in [0, 1]; eps in pixel scale; `seeds` int64 (n, 2) per image.
"""

import tensorflow as tf

from tfadv.attacks import randomness

L2_GRID = 5  # the L2 start tiles the image with 5 x 5 squares of side min(H, W) // 5
LENGTH_FLOOR = 1e-12  # added to lengths before dividing (as the reference does)


def _clip_pixels(x):
    return tf.clip_by_value(x, 0.0, 1.0)


def _l2_length(delta):
    """Per-image L2 length, shaped (n, 1, 1, 1)."""
    flat = tf.reshape(delta, [tf.shape(delta)[0], -1])
    return tf.reshape(tf.sqrt(tf.reduce_sum(tf.square(flat), axis=1)), [-1, 1, 1, 1])


def _window(offset_h, offset_w, side, height: int, width: int):
    """(n, H, W, 1) float mask of the side x side squares at per-example offsets."""
    rows = tf.range(height)[None, :]
    cols = tf.range(width)[None, :]
    in_rows = (rows >= offset_h[:, None]) & (rows < offset_h[:, None] + side)
    in_cols = (cols >= offset_w[:, None]) & (cols < offset_w[:, None] + side)
    return tf.cast(in_rows[:, :, None, None] & in_cols[:, None, :, None], tf.float32)


def _inverse_square_sums(size: int):
    """T[m] = sum_{k=1}^{m} 1 / k^2 for m = 0..size."""
    return tf.constant(
        [0.0] + [sum(1.0 / k**2 for k in range(1, m + 1)) for m in range(1, size + 1)]
    )


def _rings(r, c, rows, cols, sums):
    """Weights of a rows x cols rectangle at (r, c): concentric squares around its centre
    (rows // 2, cols // 2), the k-th (k = 0, 1, ...) adding 1 / (k + 1)^2 to the points
    within Chebyshev distance k, out to max(rows, cols) // 2."""
    distance = tf.maximum(tf.abs(r - rows // 2), tf.abs(c - cols // 2))
    rings = tf.maximum(rows // 2, cols // 2) + 1
    return tf.gather(sums, rings) - tf.gather(sums, tf.minimum(distance, rings))


def _unit(values, axis=(1, 2)):
    length = tf.sqrt(tf.reduce_sum(tf.square(values), axis=axis, keepdims=True))
    return values / tf.maximum(length, LENGTH_FLOOR)


def centred_pattern(offset_h, offset_w, side, transposed, height: int, width: int):
    """(n, H, W) L2 pattern of unit length on each example's side x side window (zero
    elsewhere): ring weights over the top half (side // 2 rows) and minus them over the
    bottom half, each half of equal length; transposed where `transposed`."""
    sums = _inverse_square_sums(max(height, width) + 1)
    r = tf.range(height)[None, :, None] - offset_h[:, None, None]
    c = tf.range(width)[None, None, :] - offset_w[:, None, None]
    r, c = r + tf.zeros_like(c), c + tf.zeros_like(r)
    inside = (r >= 0) & (r < side) & (c >= 0) & (c < side)
    flip = transposed[:, None, None]
    r, c = tf.where(flip, c, r), tf.where(flip, r, c)
    half = side // 2
    top = tf.where(inside & (r < half), _rings(r, c, half, side, sums), 0.0)
    bottom = tf.where(inside & (r >= half), _rings(r - half, c, side - half, side, sums), 0.0)
    return _unit(_unit(top) - _unit(bottom))


def draws(seeds, side, height: int, width: int, channels: int):
    """Per example, from its seed (`seeds` int64 (n, 2), this query's): two square offsets
    (rows, columns) uniform over every position where a side x side square fits, a sign per
    channel, and a coin for transposing the pattern."""
    fits_h, fits_w = height - side + 1, width - side + 1
    offsets = randomness.uniform(seeds, [4], randomness.SQUARE_SEARCH)
    limits = tf.cast(tf.stack([fits_h, fits_w, fits_h, fits_w]), tf.float32)
    offsets = tf.minimum(
        tf.cast(tf.floor(offsets * limits), tf.int32),
        tf.stack([fits_h, fits_w, fits_h, fits_w]) - 1,
    )
    signs = randomness.signs(seeds, [1, 1, channels], randomness.SQUARE_SEARCH + 1)
    coin = randomness.uniform(seeds, [], randomness.SQUARE_SEARCH + 2) < 0.5
    return offsets[:, 0], offsets[:, 1], offsets[:, 2], offsets[:, 3], signs, coin


def linf_start(x, eps, seeds):
    """Vertical stripes: every column of each channel moved by +eps or -eps (each image's signs
    drawn from its seed, `seeds` int64 (n, 2))."""
    signs = randomness.signs(seeds, [1, x.shape[2], x.shape[3]], randomness.SQUARE_START)
    return _clip_pixels(x + eps * signs)


def linf_candidate(x, best, eps, side, draws):
    """The current point with one square of each example moved to +-eps (a sign per channel)."""
    offset_h, offset_w, _, _, signs, _ = draws
    mask = _window(offset_h, offset_w, side, x.shape[1], x.shape[2])
    return _clip_pixels(x + tf.clip_by_value(best + mask * 2.0 * eps * signs - x, -eps, eps))


def _per_channel_length(values):
    return tf.sqrt(tf.reduce_sum(tf.square(values), axis=(1, 2), keepdims=True))


def _l2_unit_image(delta):
    return delta / (_l2_length(delta) + LENGTH_FLOOR)


def l2_start(x, eps, seeds):
    """A 5 x 5 grid of squares of side min(H, W) // 5 (centred in the image), each a centred
    pattern (randomly transposed) with a random sign per channel; scaled to length eps (each
    image's signs and coins drawn from its seed, `seeds` int64 (n, 2))."""
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    side = min(height, width) // L2_GRID
    blocks = L2_GRID * L2_GRID
    tops = [(height - L2_GRID * side) // 2 + (k // L2_GRID) * side for k in range(blocks)]
    lefts = [(width - L2_GRID * side) // 2 + (k % L2_GRID) * side for k in range(blocks)]
    n = tf.shape(x)[0]
    signs = randomness.signs(seeds, [blocks, 1, 1, channels], randomness.SQUARE_START)
    transposed = tf.reshape(
        randomness.uniform(seeds, [blocks], randomness.SQUARE_START + 1) < 0.5, [-1]
    )
    patterns = centred_pattern(
        tf.tile(tf.constant(tops), [n]),
        tf.tile(tf.constant(lefts), [n]),
        side,
        transposed,
        height,
        width,
    )  # one per (example, block), example-major
    patterns = tf.reshape(patterns, tf.stack([n, blocks, height, width, 1]))
    return _clip_pixels(x + eps * _l2_unit_image(tf.reduce_sum(patterns * signs, axis=1)))


def l2_candidate(x, best, eps, side, draws):
    """Moves the perturbation's mass out of window 2 and window 1 into a fresh centred
    pattern in window 1 (per channel, keeping the total length at most eps), then rescales
    to length eps (the reference's L2 step)."""
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    offset_h, offset_w, offset_h2, offset_w2, signs, transposed = draws
    first = _window(offset_h, offset_w, side, height, width)
    both = tf.maximum(first, _window(offset_h2, offset_w2, side, height, width))
    delta = best - x
    length = _l2_length(delta)
    old = delta * first / (_per_channel_length(delta * first) + LENGTH_FLOOR)
    fresh = (
        centred_pattern(offset_h, offset_w, side, transposed, height, width)[..., None] * signs
        + old
    )
    room = tf.maximum(eps**2 - length**2, 0.0) / channels + tf.square(
        _per_channel_length(delta * both)
    )
    fresh = fresh / (_per_channel_length(fresh) + LENGTH_FLOOR) * tf.sqrt(room)
    delta = delta * (1.0 - both) + fresh
    return _clip_pixels(x + eps * _l2_unit_image(delta))
