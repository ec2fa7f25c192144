"""Counting what an attack costs: model forward passes and input gradients, per image.

    budget = tfadv.models.Budget()
    x_adv = tfadv.attacks.apgd(tfadv.models.counted(model, budget), images, labels, eps=8 / 255)
    budget.read()          # {"forwards": ..., "gradients": ...}: images x passes

The counted view adds the batch size to `forwards` on every call of the model (logits or
probabilities) and to `gradients` on every backward pass through it, inside compiled attacks too
(the counters are variables the compiled functions update). A gradient includes its forward pass,
so `forwards` counts it as well. Under expectation over transformation each draw counts.
"""

import tensorflow as tf

from tfadv.models.adapter import Classifier, as_classifier, expectation


class Budget:
    """Two counters, `forwards` and `gradients` (int64 variables), in images x passes."""

    def __init__(self):
        with tf.init_scope():  # made outside any graph, also when first asked for inside one
            self.forwards = tf.Variable(0, dtype=tf.int64, trainable=False, name="forwards")
            self.gradients = tf.Variable(0, dtype=tf.int64, trainable=False, name="gradients")

    def reset(self) -> None:
        self.forwards.assign(0)
        self.gradients.assign(0)

    def read(self) -> dict:
        return {"forwards": int(self.forwards.numpy()), "gradients": int(self.gradients.numpy())}

    def __repr__(self):
        return f"Budget({self.read()})"


def _counted_output(fn, budget):
    """images -> fn(images), counting the images forward and, when differentiated, backward."""

    def wrapped(x):
        n = tf.cast(tf.shape(x)[0], tf.int64)
        with tf.control_dependencies([budget.forwards.assign_add(n)]):
            out = fn(x)

        @tf.custom_gradient
        def mark(t):
            def grad(dy):
                with tf.control_dependencies([budget.gradients.assign_add(n)]):
                    return tf.identity(dy)

            return tf.identity(t), grad

        return mark(out)

    return wrapped


def counted(model, budget: Budget) -> Classifier:
    """A view of `model` (anything `as_classifier` takes) whose passes are added to `budget`."""
    if not isinstance(budget, Budget):
        raise ValueError(f"Expected a tfadv.models.Budget. Received: budget={budget!r}")
    clf = as_classifier(model)
    if getattr(clf, "samples", 0):  # an EOT view: count every draw of the model beneath it
        return expectation(counted(clf.base, budget), clf.samples)
    probabilities = (
        None if clf._probabilities is None else _counted_output(clf._probabilities, budget)
    )
    view = Classifier(
        clf.model,
        clf.output,
        _counted_output(clf._logits, budget),
        probabilities,
        clf.logits_source,
        clf._temperature,
        name=clf.name,
        shapes=(clf.input_shape, clf.num_classes),
    )
    view.budget, view.base = budget, clf
    if hasattr(clf, "differentiable"):
        view.differentiable = clf.differentiable
    return view
