"""The one-pixel attack (Su et al. 2019): differential evolution over k pixels, black-box.

Each candidate is k rows of (row, column, change of each channel, e.g. dr, dg, db): a pixel position
and the change of its channel values, |change| <= eps (eps = 1: any colour, the original attack).
The model is only queried for its output probabilities; the fitness is the probability of the true
class (minimised) or of the target class (maximised). DE/rand/1 with mutation factor F and no
crossover, as in the paper; a child replaces its parent when it is at least as fit. An image stops
mattering once one candidate succeeds; the search ends when every image has succeeded or the query
budget is spent. The whole search for a batch runs in one compiled tf.function.
"""

import numbers

import tensorflow as tf

from tfadv.attacks import checks, norms
from tfadv.attacks.checks import LABELS_SPEC, SCALAR_SPEC, SEED_SPEC
from tfadv.attacks.core import choose_targets, classifier_of, compiled, prepare


def _bounds(shape, eps, pixels):
    """Lower and upper bounds of one candidate, shape (pixels, 2 + channels)."""
    height, width, channels = shape[1], shape[2], shape[3]
    low = tf.concat([[0.0, 0.0], -eps * tf.ones([channels])], axis=0)
    high = tf.concat([[height - 1e-3, width - 1e-3], eps * tf.ones([channels])], axis=0)
    return tf.tile(low[None], [pixels, 1]), tf.tile(high[None], [pixels, 1])


def apply_candidates(x, candidates):
    """Images with each candidate's pixels changed.

    Args:
        x: (N, H, W, C) clean images.
        candidates: (N, P, k, 2 + C) per image, P candidates of k (row, column, changes).
    Returns:
        (N * P, H, W, C): image n with candidate p at index n * P + p.
    """
    n, p, k = tf.shape(candidates)[0], tf.shape(candidates)[1], tf.shape(candidates)[2]
    tiled = tf.repeat(x, p, axis=0)
    flat = tf.reshape(candidates, [-1, candidates.shape[-1]])
    image = tf.repeat(tf.range(n * p), k)
    where = tf.stack([image, tf.cast(flat[:, 0], tf.int32), tf.cast(flat[:, 1], tf.int32)], axis=1)
    values = norms.clip_pixels(tf.gather_nd(tiled, where) + flat[:, 2:])
    return tf.tensor_scatter_nd_update(tiled, where, values)


def _one_pixel_fn(
    x, y, eps, mutation, seed, *, model_ref, output, pixels, population, generations, targeted
):
    """`y` holds the true labels, or the targets when `targeted`."""
    clf = classifier_of(model_ref, output)
    n = tf.shape(x)[0]
    low, high = _bounds(x.shape, eps, pixels)

    def evaluate(candidates):
        probs = clf.probabilities(apply_candidates(x, candidates))
        probs = tf.reshape(probs, [n, population, -1])
        p_label = tf.gather(
            probs, tf.broadcast_to(y[:, None, None], [n, population, 1]), batch_dims=2
        )[..., 0]
        hit = tf.equal(tf.argmax(probs, axis=-1), y[:, None])
        return (-p_label, hit) if targeted else (p_label, ~hit)

    def uniform(shape, s):
        return low + (high - low) * tf.random.stateless_uniform(shape, s)

    pop = uniform(tf.stack([n, population, pixels, low.shape[-1]]), checks.fold_seed(seed, 0))
    fitness, success = evaluate(pop)

    def body(gen, pop, fitness, success):
        s = checks.fold_seed(seed, gen + 1)
        parents = tf.argsort(tf.random.stateless_uniform(tf.stack([n, population, population]), s))[
            ..., :3
        ]
        r1, r2, r3 = (tf.gather(pop, parents[..., i], batch_dims=1) for i in range(3))
        children = tf.clip_by_value(r1 + mutation * (r2 - r3), low, high)
        child_fitness, child_success = evaluate(children)
        better = child_fitness <= fitness
        return (
            gen + 1,
            tf.where(better[..., None, None], children, pop),
            tf.where(better, child_fitness, fitness),
            tf.where(better, child_success, success),
        )

    def cond(gen, pop, fitness, success):
        return (gen < generations) & ~tf.reduce_all(tf.reduce_any(success, axis=1))

    _, pop, fitness, success = tf.while_loop(cond, body, (tf.constant(0), pop, fitness, success))
    best = tf.argmin(
        fitness - 2.0 * tf.cast(success, fitness.dtype), axis=1
    )  # a success beats any failure
    return apply_candidates(x, tf.gather(pop, best, batch_dims=1)[:, None])


def one_pixel(
    model,
    images,
    labels,
    eps=1.0,
    *,
    pixels=1,
    population=100,
    max_queries=10_000,
    mutation=0.5,
    target=None,
    seed=None,
    chunk_queries=4096,
    jit_compile="auto",
) -> tf.Tensor:
    """Changes at most `pixels` pixels per image to flip (or, targeted, set) the prediction.

    Args:
        model: any classifier `tfadv.models.as_classifier` accepts; only its probabilities are used.
        images: float (N, H, W, C) in [0, 1].
        labels: int (N,) true classes.
        eps: largest change of a channel value of a changed pixel (1.0: any colour).
        pixels: k, the number of pixels changed (L0 budget).
        population: candidates per image.
        max_queries: model evaluations per image (>= 2 * population); the search runs
            max_queries // population - 1 generations after the initial population.
        mutation: differential weight F of DE/rand/1.
        target: None (lower the true class's probability) or a target (maximise its
            probability; see `tfadv.attacks.targets`).
        seed: None, an int or a pair (see `tfadv.attacks.checks.to_seed`).
        chunk_queries: images evaluated at once (memory bound): the batch is attacked in
            chunks of chunk_queries // population images.
    Returns:
        float32 (N, H, W, C): each image with its best candidate applied.
    """
    pixels = checks.check_positive_int("pixels", pixels)
    population = checks.check_positive_int("population", population)
    if population < 4:
        raise ValueError(
            "Expected population >= 4 (DE/rand/1 draws three others). "
            f"Received: population={population}"
        )
    max_queries = checks.check_positive_int("max_queries", max_queries)
    if max_queries < 2 * population:
        raise ValueError(
            f"Expected max_queries >= 2 * population ({2 * population}). "
            f"Received: max_queries={max_queries}"
        )
    if not isinstance(mutation, numbers.Real) or not 0 < mutation <= 2:
        raise ValueError(f"Expected mutation in (0, 2]. Received: mutation={mutation!r}")
    clf, x, y = prepare(model, images, labels, eps)
    chunk = max(1, checks.check_positive_int("chunk_queries", chunk_queries) // population)
    seed = checks.to_seed(seed)
    chosen = None if target is None else choose_targets(clf, x, y, target, seed=seed)
    y = y if chosen is None else chosen
    signature = [checks.image_spec(x), LABELS_SPEC, SCALAR_SPEC, SCALAR_SPEC, SEED_SPEC]
    attack = compiled(
        clf,
        _one_pixel_fn,
        signature,
        jit_compile,
        pixels=pixels,
        population=population,
        generations=max_queries // population - 1,
        targeted=chosen is not None,
    )
    eps, mutation = checks.to_scalar(eps), checks.to_scalar(mutation)
    if x.shape[0] == 0:
        return tf.stop_gradient(x)
    if x.shape[0] is None:  # symbolic batch inside a graph: one chunk
        return tf.stop_gradient(attack(x, y, eps, mutation, seed))
    parts = []
    for start in range(0, x.shape[0], chunk):
        part_seed = checks.fold_seed(seed, start)
        parts.append(
            attack(x[start : start + chunk], y[start : start + chunk], eps, mutation, part_seed)
        )
    return tf.stop_gradient(tf.concat(parts, axis=0))
