"""The attack core every attack runs on: inputs checked and converted, per-image seeds, targets,
the compile cache, a compiled attack run over a batch, and the shrinking active batch.

    clf, x, y = core.prepare(model, images, labels, eps, norm)     # checked, converted
    attack = core.compiled_attack(clf, _my_fn, x, jit_compile, norm=norm, steps=steps)
    adv = attack(x, y, targets, eps, alpha, core.seeds_for(seed, x))

or all in one: `core.run(model, _my_fn, images, labels, eps, alpha, seed, target, jit_compile,
**static)`. A compiled attack is one tf.function per (model, classifier view, attack, static
options), traced once: batch size, eps and step sizes are tensor arguments (None batch
dimension, scalar specs), so a smaller last batch or a new eps never retraces; `norm`, `steps`,
the loss and the like are static. Models are held weakly: the cache never keeps a model alive.

Inside a compiled loop, `drop_finished` removes the examples that are done from a per-example
state (keeping their rows) and `write_rows` writes results back into the full batch: attacks
then evaluate the model only on the examples still being attacked.
"""

import weakref

import tensorflow as tf

from tfadv.attacks import losses, norms, randomness, targets
from tfadv.models import as_classifier
from tfadv.models.adapter import ClassifierRef, logits_of, view_key
from tfadv.runtime import devices, validation
from tfadv.runtime.tensors import LABELS_SPEC, SCALAR_SPEC, SEEDS_SPEC, image_spec, to_scalar

_COMPILED = weakref.WeakKeyDictionary()


# ------------------------------------------------------------------------------ compile cache


class _Bound:
    """`fn` with its model and static options bound. A callable object rather than a closure:
    TensorFlow's retracing-warning detector groups functions by code object, and would count
    the traces of different models and options of one attack as retracing."""

    def __init__(self, fn, model_ref, static):
        self.fn, self.model_ref, self.static = fn, model_ref, static

    def __call__(self, *tensors):
        return self.fn(*tensors, model_ref=self.model_ref, **self.static)


def compiled(clf, fn, signature, jit_compile="auto", **static):
    """The tf.function running `fn(*tensors, model_ref=..., output=..., **static)` on classifier
    `clf`: created once per (model, classifier view, fn, static options, signature, XLA choice).

    Args:
        clf: a tfadv.models.Classifier (possibly an EOT or counted view); the cache is keyed
            (weakly) on `clf.model`.
        fn: a module-level function `fn(*tensors, model_ref, output, **static)`; it must reach
            the model only through `classifier_of(model_ref, output)`.
        signature: the tf.function input_signature.
        jit_compile: "auto" | "true" | "false" | bool (see
            tfadv.runtime.devices.resolve_jit_compile).
        **static: hashable Python options fixed at trace time (norm, steps, loss, ...).
    """
    jit = devices.resolve_jit_compile(jit_compile)
    static = dict(static, output=clf.output)
    per_model = _COMPILED.setdefault(clf.model, {})
    shapes = tuple((tuple(s.shape.as_list()), s.dtype) for s in signature)
    key = (fn, tuple(sorted(static.items())), view_key(clf)[1:], shapes, jit)
    if key not in per_model:
        bound = _Bound(fn, ClassifierRef(clf), static)
        # autograph=False: the attacks use explicit tf.while_loop, and tracing need not re-read
        # sources.
        per_model[key] = tf.function(
            bound, input_signature=signature, jit_compile=jit, autograph=False
        )
    return per_model[key]


def classifier_of(model_ref, output=None):
    """The Classifier a compiled attack runs on (`output` is part of the cache key only)."""
    return model_ref.get()


class _PerImageSeeds:
    """A compiled attack that also takes one seed for the batch (None, an int, a pair, a (2,)
    tensor) in place of per-image seeds: image i then draws from fold(seed, i)."""

    def __init__(self, fn):
        self.fn = fn

    @tf.autograph.experimental.do_not_convert  # inside a caller's tf.function: a plain call
    def __call__(self, x, y, t, eps, alpha, seed):
        return self.fn(x, y, t, eps, alpha, seeds_for(seed, x))


def compiled_attack(clf, fn, x, jit_compile="auto", **static):
    """The compiled `fn` with the shared signature (x, y, targets, eps, alpha, seeds) for
    images shaped like `x` (any batch size): for attacks that call it more than once. `fn`
    receives int64 (N, 2) per-image seeds (see `tfadv.attacks.randomness`); the returned
    callable takes those or any seed `seeds_for` accepts."""
    signature = [image_spec(x), LABELS_SPEC, LABELS_SPEC, SCALAR_SPEC, SCALAR_SPEC, SEEDS_SPEC]
    return _PerImageSeeds(compiled(clf, fn, signature, jit_compile, **static))


# ------------------------------------------------------------------------- inputs and seeds


def prepare(model, images, labels, eps=0.0, norm=norms.LINF):
    """(Classifier, images, labels) checked and converted; eps checked in `norm`'s range."""
    clf = as_classifier(model)
    x = validation.to_images(images, clf.input_shape)
    clf.ensure_built(x)
    y = validation.to_labels(labels, x, clf.num_classes)
    norms.get(norm).check_eps(eps)
    return clf, x, y


def seeds_for(seed, x) -> tf.Tensor:
    """int64 (N, 2): the per-image seeds of an attack on images `x` given `seed` (None, an int,
    a pair, or per-image seeds (N, 2); see `tfadv.attacks.randomness.per_image`)."""
    n = x.shape[0]
    return randomness.per_image(seed, n if n is not None else tf.shape(x)[0])


def resolve_targets(clf, x, y, target, seeds, jit_compile):
    """The targets an attack with per-image `seeds` (int64 (N, 2)) uses; None when untargeted."""

    def logits(images):
        return logits_of(clf, images, jit_compile=jit_compile)

    return targets.resolve(clf, x, y, target, seeds, logits)


def choose_targets(
    model, images, labels, target="least_likely", *, seed=None, jit_compile="auto"
) -> tf.Tensor:
    """The int64 (N,) target classes `target` picks (see `tfadv.attacks.targets`): the same an
    attack given the same `seed` (None, an int, a pair or per-image seeds (N, 2)) uses."""
    clf, x, y = prepare(model, images, labels)
    if target is None:
        raise ValueError(
            "Expected a target strategy, class id or per-image ids. Received: target=None"
        )
    return resolve_targets(clf, x, y, target, seeds_for(seed, x), jit_compile)


def run(
    model, fn, images, labels, eps, alpha=0.0, seed=0, target=None, jit_compile="auto", **static
):
    """Checks the arguments, resolves the targets, fetches the compiled attack and runs it (eagerly
    or inside a graph). `fn(x, y, targets, eps, alpha, seed, *, model_ref, output, **static)`; eps
    is checked against `static["norm"]` (L-inf when absent)."""
    clf, x, y = prepare(model, images, labels, eps, static.get("norm", norms.LINF))
    if "loss_on" in static:
        losses.check_loss_on(clf, static["loss_on"])
    seeds = seeds_for(seed, x)
    chosen = resolve_targets(clf, x, y, target, seeds, jit_compile)
    if "targeted" in static:
        static["targeted"] = chosen is not None
    attack = compiled_attack(clf, fn, x, jit_compile, **static)
    t = y if chosen is None else chosen
    return tf.stop_gradient(attack(x, y, t, to_scalar(eps), to_scalar(alpha), seeds))


# ---------------------------------------------------------------------- the active batch


def write_rows(full, rows, values):
    """`full` (the whole batch) with the entries at `rows` (int64 (k,)) replaced by `values`."""
    return tf.tensor_scatter_nd_update(full, rows[:, None], values)


def drop_finished(state: dict, out, finished, record):
    """(state, out) with the examples where `finished` (bool, one per example of `state`)
    written out by `record(out, finished_state)` and removed from every entry of `state`
    (all batch-major, with `state["rows"]` among them). A no-op when none finished.

    An attack that drops its finished examples evaluates the model only on the others; without
    dropping (XLA needs static shapes) the same loop keeps every example and masks the finished.
    """

    def drop():
        done = {k: tf.boolean_mask(v, finished) for k, v in state.items()}
        return {k: tf.boolean_mask(v, ~finished) for k, v in state.items()}, record(out, done)

    return tf.cond(tf.reduce_any(finished), drop, lambda: (state, out))
