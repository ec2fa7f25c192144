"""Classifiers without gradients: any Python callable images -> probabilities (a served model,
a TFLite interpreter) seen as a tfadv Classifier.

    clf = tfadv.models.from_callable(fn, (None, 32, 32, 3), 10, name="served")
    clf.probabilities(images)            # eagerly or inside the attacks' tf.functions
    tfadv.attacks.square(clf, images, labels, eps=8 / 255)     # score-based: works
    tfadv.attacks.pgd(clf, images, labels, eps=8 / 255)        # ValueError: no gradients

`fn` takes a float32 NumPy array (N, H, W, C) in [0, 1] and returns (N, classes) scores
(probabilities, or logits with output="logits"). Inside a tf.function it runs through
`tf.numpy_function` (so: CPU graphs, not XLA). The Classifier's `differentiable` is False:
every gradient taken through it is a one-line ValueError naming the gradient-free attacks.
"""

import numpy as np
import tensorflow as tf

from tfadv.models.adapter import CACHE_ATTRIBUTE, OUTPUTS, Classifier, _declared

GRADIENT_FREE_ATTACKS = ("square", "one_pixel", "random_sign", "hop_skip_jump")


def no_gradient_error(name, what: str = "a gradient attack") -> ValueError:
    """The one-line error for a gradient asked of a model without gradients."""
    return ValueError(
        f"Expected a model with gradients for {what}. Received: "
        f"model {name!r} has none (a TFLite interpreter or a Python callable); "
        f"use a gradient-free attack ({', '.join(GRADIENT_FREE_ATTACKS)}) "
        "or transfer adversarial images from a differentiable model"
    )


def require_gradients(clf, what: str = "a gradient attack") -> None:
    """Raises `no_gradient_error` when `clf` (a Classifier) has `differentiable = False`."""
    if not getattr(clf, "differentiable", True):
        raise no_gradient_error(clf.name, what)


class CallableModel:
    """The model object behind a `from_callable` Classifier: `fn` with its shapes.

    Calling it on a batch returns float32 scores (NumPy in, NumPy out; a tensor in: a tensor
    out, through tf.numpy_function). An empty batch returns (0, classes) without calling `fn`.
    """

    def __init__(self, fn, input_shape, num_classes: int, name: str):
        self.fn, self.input_shape, self.num_classes, self.name = fn, input_shape, num_classes, name

    def numpy(self, images) -> np.ndarray:
        images = np.asarray(images, np.float32)
        if images.shape[0] == 0:
            return np.zeros((0, self.num_classes), np.float32)
        out = np.asarray(self.fn(images), np.float32)
        if out.shape != (images.shape[0], self.num_classes):
            raise ValueError(
                f"Expected {self.name!r} to return scores of shape "
                f"({images.shape[0]}, {self.num_classes}). Received: shape {out.shape}"
            )
        return out

    def __call__(self, images, training=False):
        if isinstance(images, np.ndarray):
            return self.numpy(images)
        return self.tensor(images)

    def tensor(self, images):
        """float32 (N, classes) tensor of `fn(images)`; its gradient is a ValueError."""
        name = self.name

        @tf.custom_gradient
        def scores(x):
            out = tf.numpy_function(self.numpy, [x], tf.float32, name="callable_model")
            out.set_shape([x.shape[0], self.num_classes])

            def gradient(upstream):
                raise no_gradient_error(name)

            return out, gradient

        return scores(tf.cast(tf.convert_to_tensor(images), tf.float32))


def from_callable(
    fn, input_shape, num_classes: int, name: str | None = None, output: str = "probabilities"
) -> Classifier:
    """A Classifier (no gradients) for a Python function images -> scores.

    Args:
        fn: NumPy float32 (N, H, W, C) in [0, 1] -> (N, num_classes); called from whichever
            thread runs the query (make it thread-safe, or guard it with a lock).
        input_shape: (H, W, C) or (None, H, W, C).
        num_classes: number of classes (>= 2).
        name: the name in messages and reports (default: fn's name).
        output: what fn returns: "probabilities" (then logits = log(probabilities), as for any
            opaque model) or "logits".

    Raises:
        ValueError: a bad shape, class count or output.
    """
    if not callable(fn):
        raise ValueError(f"Expected a callable images -> probabilities. Received: fn={fn!r}")
    if output not in OUTPUTS:
        raise ValueError(f"Expected output to be one of {OUTPUTS}. Received: output={output!r}")
    shape = tuple(input_shape)
    if len(shape) == 3:
        shape = (None, *shape)
    if len(shape) != 4 or not all(isinstance(s, int) and s > 0 for s in shape[1:]):
        raise ValueError(
            "Expected input_shape (H, W, C) or (None, H, W, C). "
            f"Received: input_shape={input_shape!r}"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(
            f"Expected num_classes to be an integer >= 2. Received: num_classes={num_classes!r}"
        )
    name = name or getattr(fn, "__name__", None) or type(fn).__name__
    model = CallableModel(fn, (None, *shape[1:]), num_classes, name)
    clf = _declared(model, model.tensor, output, name)
    clf._shapes = (model.input_shape, num_classes)
    clf.differentiable = False
    # as_classifier(model) finds this Classifier again (the compiled attacks look it up so)
    object.__setattr__(model, CACHE_ATTRIBUTE, {None: clf, output: clf})
    return clf
