"""Norms as strategies: everything an attack does differently in L-inf, L2 and L1 is asked of
the norm object, so no attack branches on the norm's name.

    norm = norms.get("inf")            # or "2", np.inf, 2, "linf", "l2", a Norm
    norm.check_eps(eps)                # its range of eps (L-inf: [0, 1]; L2: >= 0), pixel scale
    adv = norms.project(adv + norm.step(grad, alpha), x, eps, norm)
    norms.get("1", norms.ALL, "fmn")   # L1, where the caller allows it

A norm owns its name and threat-model label, its eps range, its dual, PGD's random start in the
ball, APGD's random start on the surface, the steepest step (DeepFool's per image too), the
projection (FMN's onto per-image radii too), the length, Square's squares
(`tfadv.attacks.squares`) and FAB's move onto a hyperplane. L1 has the pieces of the
minimum-norm attacks (length, dual, projection); the eps-ball attacks take "inf" and "2" only
(`get`'s default `allowed`).

The L-inf and L2 pieces use the same operations as CleverHans 4.0 (`optimize_linear`, `clip_eta`),
so FGSM, BIM and PGD agree with it bit for bit (L-inf).
"""

import tensorflow as tf

from tfadv.attacks import randomness, squares
from tfadv.runtime import choices, validation

AVOID_ZERO_DIV = 1e-12  # as in CleverHans' optimize_linear and clip_eta
LENGTH_FLOOR = 1e-12  # FMN's floor under an L2 length before dividing (as Foolbox's)


def _per_example_sum(t):
    return tf.reduce_sum(t, axis=list(range(1, t.shape.rank)), keepdims=True)


def _image_shape(shape):
    """One image's shape, a list, from a batch shape (N, H, W, C): a TensorShape (use x.shape,
    whose H, W, C are known) or a rank-1 tensor."""
    if isinstance(shape, tf.Tensor):
        return [shape[i] for i in range(1, shape.shape[0])]
    return list(tf.TensorShape(shape))[1:]


def _l2_length(t):
    return tf.sqrt(tf.maximum(AVOID_ZERO_DIV, _per_example_sum(tf.square(t))))


class Norm:
    """One norm's pieces. `name` is "inf", "2" or "1"; `threat_model` "Linf", "L2" or "L1"
    (RobustBench's label); `eps_max` the largest eps in pixel scale (None: unbounded)."""

    name = ""
    threat_model = ""
    eps_max = None

    @property
    def dual(self) -> "Norm":
        """The dual norm: a linear function with gradient g rises by eps * ||g||_dual at most
        over this norm's eps-ball."""
        return _BY_NAME[_DUAL[self.name]]

    def check_eps(self, eps, name: str = "eps") -> None:
        """Raises ValueError unless `eps` (or the argument called `name`) is a finite scalar
        >= 0 within this norm's range; not checked for symbolic tensors inside a graph."""
        validation.check_eps(eps, name, at_most=self.eps_max)

    def step(self, grad, size):
        """The steepest-ascent step of length `size` for a linear loss with gradient `grad`."""
        raise NotImplementedError

    def step_each(self, grad, distances, floor):
        """DeepFool's steepest step per row of `grad` (m, D): of length `distances` (m,) in this
        norm; `floor` is added to the gradient's length before dividing."""
        raise NotImplementedError

    def project(self, delta, eps):
        """`delta` scaled or clipped back into the eps-ball."""
        raise NotImplementedError

    def project_each(self, delta, radii):
        """FMN's projection: `delta` (m, H, W, C) into the ball of each image's radius, float
        (m,) (inf: unbounded)."""
        raise NotImplementedError

    def random(self, shape, eps, seeds):
        """A uniform random point of the eps-ball per image, drawn from its seed: `seeds` int64
        (N, 2) per-image seeds (see `tfadv.attacks.randomness`), `shape` (N, H, W, C)."""
        raise NotImplementedError

    def length(self, delta):
        """Per-example size of `delta` (any shape, the batch first), float32 (N,)."""
        return self.lengths(tf.reshape(delta, [tf.shape(delta)[0], -1]))

    def lengths(self, t):
        """The size of `t` along its last axis (one less dimension)."""
        raise NotImplementedError

    def surface_noise(self, seeds, image_shape):
        """APGD's random direction per image (not yet of unit length), drawn from its seed."""
        raise NotImplementedError

    def square_side(self, side):
        """Square Attack's square side (int32 scalar) from the rounded side covering fraction p."""
        raise NotImplementedError

    def check_square_images(self, shape) -> None:
        """Raises ValueError when Square's start cannot tile images of batch `shape`."""

    def square_start(self, x, eps, seeds):
        """Square Attack's first point per image (see `tfadv.attacks.squares`)."""
        raise NotImplementedError

    def square_candidate(self, x, best, eps, side, draws):
        """Square Attack's next candidate per image (see `tfadv.attacks.squares`)."""
        raise NotImplementedError

    def hyperplane_terms(self, room, size):
        """FAB's projection onto a hyperplane inside the box: per coordinate, (the move length
        at which it saturates, its slope in w . d) for `room` to its bound and `size` = |w|."""
        raise NotImplementedError

    def hyperplane_move(self, lam, size):
        """FAB's move per coordinate for the multiplier `lam` (before clipping to the room)."""
        raise NotImplementedError

    def __repr__(self):
        return f"norms.get({self.name!r})"


class LInf(Norm):
    name, threat_model, eps_max = "inf", "Linf", choices.NORM_EPS_MAX["inf"]

    def step(self, grad, size):
        return size * tf.stop_gradient(tf.sign(grad))

    def step_each(self, grad, distances, floor):
        return distances[:, None] * tf.sign(grad)

    def project(self, delta, eps):
        return tf.clip_by_value(delta, -eps, eps)

    def project_each(self, delta, radii):
        return tf.clip_by_value(delta, -radii[:, None, None, None], radii[:, None, None, None])

    def random(self, shape, eps, seeds):
        return (
            2.0 * randomness.uniform(seeds, _image_shape(shape), randomness.PGD_START) - 1.0
        ) * eps

    def lengths(self, t):
        return tf.reduce_max(tf.abs(t), axis=-1)

    def surface_noise(self, seeds, image_shape):
        return 2.0 * randomness.uniform(seeds, image_shape, randomness.APGD_START) - 1.0

    def square_side(self, side):
        return tf.maximum(side, 1)

    def square_start(self, x, eps, seeds):
        return squares.linf_start(x, eps, seeds)

    def square_candidate(self, x, best, eps, side, draws):
        return squares.linf_candidate(x, best, eps, side, draws)

    def hyperplane_terms(self, room, size):
        return room, size

    def hyperplane_move(self, lam, size):
        return lam


class L2(Norm):
    name, threat_model, eps_max = "2", "L2", choices.NORM_EPS_MAX["2"]

    def step(self, grad, size):
        return size * (grad / _l2_length(grad))

    def step_each(self, grad, distances, floor):
        return (distances / (self.lengths(grad) + floor))[:, None] * grad

    def project(self, delta, eps):
        return delta * tf.minimum(1.0, eps / _l2_length(delta))

    def project_each(self, delta, radii):
        length = tf.maximum(self.length(delta), LENGTH_FLOOR)
        return delta * tf.minimum(1.0, radii / length)[:, None, None, None]

    def random(self, shape, eps, seeds):
        image_shape = _image_shape(shape)
        direction = randomness.normal(seeds, image_shape, randomness.PGD_START)
        direction /= _l2_length(direction)
        dim = tf.cast(tf.reduce_prod(image_shape), tf.float32)
        radius = randomness.uniform(seeds, [1] * len(image_shape), randomness.PGD_START) ** (
            1.0 / dim
        )
        return direction * radius * eps

    def lengths(self, t):
        return tf.sqrt(tf.reduce_sum(tf.square(t), axis=-1))

    def surface_noise(self, seeds, image_shape):
        return randomness.normal(seeds, image_shape, randomness.APGD_START)

    def square_side(self, side):
        side = tf.maximum(side, 3)
        return side + (1 - side % 2)

    def check_square_images(self, shape) -> None:
        if min(shape[1], shape[2]) < squares.L2_GRID:
            raise ValueError(
                "Square's L2 start needs images of at least 5 x 5 pixels. "
                f"Received: images.shape={tuple(shape)}"
            )

    def square_start(self, x, eps, seeds):
        return squares.l2_start(x, eps, seeds)

    def square_candidate(self, x, best, eps, side, draws):
        return squares.l2_candidate(x, best, eps, side, draws)

    def hyperplane_terms(self, room, size):
        # coordinates the hyperplane ignores add nothing: sorted first, never in the slope
        return tf.where(size > 0, room / tf.maximum(size, 1e-30), 0.0), tf.square(size)

    def hyperplane_move(self, lam, size):
        return lam * size


class L1(Norm):
    """L1: the minimum-norm attacks' pieces (length, dual, FMN's projection); no steps, random
    starts or squares (the eps-ball attacks do not take it)."""

    name, threat_model, eps_max = "1", "L1", choices.NORM_EPS_MAX["1"]

    def lengths(self, t):
        return tf.reduce_sum(tf.abs(t), axis=-1)

    def project(self, delta, eps):
        radii = tf.fill([tf.shape(delta)[0]], tf.cast(eps, delta.dtype))
        return self.project_each(delta, radii)

    def project_each(self, delta, radii):
        flat = project_l1(tf.reshape(delta, [tf.shape(delta)[0], -1]), radii)
        return tf.reshape(flat, tf.shape(delta))


MICHELOT_ROUNDS = 100  # the L1 projection's cap (it takes ~5-15 rounds in practice)


def project_l1(delta, radius):
    """Euclidean projection of each row of float (m, D) `delta` onto the L1 ball of its
    `radius` (m,); rows already inside are unchanged. Michelot's algorithm (1986; Condat 2016):
    the soft threshold theta = (sum of the kept |delta| - radius) / their count, keeping the
    entries above theta, repeated until the kept set is stable (exact, as the sort of Duchi et
    al. 2008 but without sorting whole rows: a few passes over the batch instead of a sort)."""
    size = tf.abs(delta)
    finite = tf.where(tf.math.is_finite(radius), radius, 0.0)
    # Both start values are (sum of a set of entries - radius) / its size: lower bounds of theta.
    count = tf.cast(tf.shape(delta)[1], delta.dtype)
    start = tf.maximum(
        (tf.reduce_sum(size, axis=1) - finite) / count, tf.reduce_max(size, 1) - finite
    )

    def body(i, theta, _):
        kept = size > theta[:, None]
        n = tf.reduce_sum(tf.cast(kept, delta.dtype), axis=1)
        total = tf.reduce_sum(tf.where(kept, size, 0.0), axis=1)
        return i + 1, tf.where(n > 0, (total - finite) / tf.maximum(n, 1.0), theta), theta

    def cond(i, theta, previous):
        return (i < MICHELOT_ROUNDS) & tf.reduce_any(theta != previous)

    _, theta, _ = tf.while_loop(cond, body, (tf.constant(0), start, start - 1.0))
    theta = tf.maximum(theta, 0.0)[:, None]
    projected = delta - tf.clip_by_value(delta, -theta, theta)
    inside = tf.reduce_sum(size, axis=1) <= radius
    return tf.where(inside[:, None], delta, projected)


LINF, L2_NORM, L1_NORM = LInf(), L2(), L1()
_BY_NAME = {"inf": LINF, "2": L2_NORM, "1": L1_NORM}
_DUAL = {"inf": "1", "2": "2", "1": "inf"}
ALL = tuple(_BY_NAME)  # ("inf", "2", "1")
EPS_BALL = choices.NORMS  # ("inf", "2"): the norms of the eps-ball attacks, `get`'s default
NORMS = {name: _BY_NAME[name] for name in EPS_BALL}  # the eps-ball attacks' norms


def get(norm, allowed=EPS_BALL, attack: str = "") -> Norm:
    """The Norm named by `norm` if its name is one of `allowed`: "inf" (also np.inf, "linf"),
    "2" (also 2, "l2"), "1" (also 1, "l1") or a Norm; else a ValueError (naming `attack` if
    given)."""
    name = choices.norm_name(norm)
    if name not in allowed:
        where = f" for {attack}" if attack else " (or np.inf, 2)"
        raise ValueError(
            f"Expected norm to be one of {tuple(allowed)}{where}. Received: norm={norm!r}"
        )
    return norm if isinstance(norm, Norm) else _BY_NAME[name]


def clip_pixels(x):
    return tf.clip_by_value(x, 0.0, 1.0)


def project(adv, x, eps, norm: Norm):
    """Back into the eps-ball around x, then into [0, 1] (CleverHans' order of operations)."""
    return clip_pixels(x + norm.project(adv - x, eps))
