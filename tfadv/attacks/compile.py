"""The compile cache: one tf.function per (model, attack, static options), traced once.

Batch size, eps and step sizes are tensor arguments (None batch dimension, scalar specs), so a
smaller last batch or a new eps never retraces; `norm`, `steps`, the loss and the like are static.
Models are held weakly: the cache never keeps a model alive.
"""

import weakref

from tfadv.models import as_classifier, counted, expectation
from tfadv.runtime import devices

_COMPILED = weakref.WeakKeyDictionary()


class _Bound:
    """`fn` with its model and static options bound. A callable object rather than a closure:
    TensorFlow's retracing-warning detector groups functions by code object, and would count
    the traces of different models and options of one attack as retracing."""

    def __init__(self, fn, model_ref, static):
        self.fn, self.model_ref, self.static = fn, model_ref, static

    def __call__(self, *tensors):
        return self.fn(*tensors, model_ref=self.model_ref, **self.static)


class _ClassifierRef:
    """How a compiled attack finds its Classifier again: the model (weakly), what it outputs,
    the number of EOT samples (0: none) and the Budget counting its passes (None: none)."""

    def __init__(self, clf):
        self.model_ref = weakref.ref(clf.model)
        self.output, self.samples = clf.output, getattr(clf, "samples", 0)
        self.budget = getattr(clf, "budget", None)

    def get(self):
        model = self.model_ref()
        if model is None:
            raise RuntimeError("The attacked model no longer exists")
        clf = as_classifier(model, self.output)
        if self.budget is not None:
            clf = counted(clf, self.budget)
        return expectation(clf, self.samples) if self.samples else clf


def compiled(clf, fn, signature, jit_compile="auto", **static):
    """The tf.function running `fn(*tensors, model_ref=..., output=..., **static)` on classifier
    `clf`: created once per (model, classifier view, fn, static options, signature, XLA choice).

    Args:
        clf: a tfadv.models.Classifier (possibly an EOT view); the cache is keyed (weakly) on
            `clf.model`.
        fn: a module-level function `fn(*tensors, model_ref, output, **static)`; it must reach
            the model only through `classifier_of(model_ref, output)`.
        signature: the tf.function input_signature.
        jit_compile: "auto" | "true" | "false" | bool (see tfadv.runtime.devices.resolve_jit_compile).
        **static: hashable Python options fixed at trace time (norm, steps, loss, ...).
    """
    import tensorflow as tf

    jit = devices.resolve_jit_compile(jit_compile)
    static = dict(static, output=clf.output)
    per_model = _COMPILED.setdefault(clf.model, {})
    shapes = tuple((tuple(s.shape.as_list()), s.dtype) for s in signature)
    views = (getattr(clf, "samples", 0), getattr(clf, "budget", None))  # EOT draws, pass counting
    key = (fn, tuple(sorted(static.items())), views, shapes, jit)
    if key not in per_model:
        bound = _Bound(fn, _ClassifierRef(clf), static)
        # autograph=False: the attacks use explicit tf.while_loop, and tracing need not re-read sources.
        per_model[key] = tf.function(
            bound, input_signature=signature, jit_compile=jit, autograph=False
        )
    return per_model[key]


def classifier_of(model_ref, output=None):
    """The Classifier a compiled attack runs on (`output` is part of the cache key only)."""
    return model_ref.get()
