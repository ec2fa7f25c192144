"""Attack losses as small values: per-example objectives an attacker raises.

    loss = losses.get("margin")             # "ce", "margin", "dlr", "ce_t", a Loss, or a callable
    value = loss.untargeted(logits, labels)             # (N,), the attacker ascends it
    value = loss.targeted(logits, labels, targets)      # (N,), toward `targets`

A user loss is any callable `loss(logits, labels) -> per-example loss` that an untargeted
attacker raises; toward a target the attacker lowers it on the target (`-loss(logits, targets)`).

| name | untargeted | targeted (toward t) |
|---|---|---|
| `ce` | cross-entropy of the label | minus cross-entropy of t |
| `margin` | max_{j != y} z_j - z_y (Carlini-Wagner) | z_t - max_{j != t} z_j |
| `dlr` | -(z_y - max_{j != y} z_j) / (z_pi1 - z_pi3) | -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4)/2) |
| `ce_t` | cross-entropy of softmax(z / T), T the model's softmax temperature | minus that of t |

z are the scores the loss sees (`loss_on`): the logits (default), or log-probabilities of the
model's own output ("probabilities", the naive view). pi1 >= pi2 >= ... are the sorted scores. DLR
is from Croce & Hein 2020. Margin and DLR do not depend on the scale of the logits, so a model
trained at a high temperature, whose inflated logits saturate the cross-entropy, cannot hide behind
it.
"""

import dataclasses
from collections.abc import Callable

import tensorflow as tf

from tfadv.models.callable import require_gradients
from tfadv.runtime.choices import LOSS_ALIASES as _ALIASES
from tfadv.runtime.choices import LOSS_ON

DLR_EPSILON = 1e-12  # as in the AutoAttack reference


def cross_entropy(scores, labels):
    """Sparse softmax cross-entropy per example."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=scores)


def _label_score(scores, labels):
    return tf.gather(scores, labels, batch_dims=1)


def _best_other(scores, labels):
    """max_{j != label} scores_j."""
    mask = tf.one_hot(labels, tf.shape(scores)[-1], on_value=True, off_value=False)
    return tf.reduce_max(tf.where(mask, tf.constant(-float("inf"), scores.dtype), scores), axis=-1)


def margin(scores, labels):
    """Carlini-Wagner margin: max_{j != y} z_j - z_y (> 0 once misclassified)."""
    return _best_other(scores, labels) - _label_score(scores, labels)


def _check_classes(scores, needed: int, name: str):
    classes = scores.shape[-1]
    if classes is not None and classes < needed:
        raise ValueError(
            f"The {name} loss needs at least {needed} classes. Received: {classes} classes"
        )


def dlr(scores, labels):
    """Difference of logits ratio (untargeted): -(z_y - max_{j != y} z_j) / (z_pi1 - z_pi3)."""
    _check_classes(scores, 3, "dlr")
    top = tf.math.top_k(scores, k=3).values
    return -(_label_score(scores, labels) - _best_other(scores, labels)) / (
        top[:, 0] - top[:, 2] + DLR_EPSILON
    )


def dlr_targeted(scores, labels, targets):
    """Targeted DLR: -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)."""
    _check_classes(scores, 4, "targeted dlr")
    top = tf.math.top_k(scores, k=4).values
    scale = top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + DLR_EPSILON
    return -(_label_score(scores, labels) - _label_score(scores, targets)) / scale


@dataclasses.dataclass(frozen=True)
class Loss:
    """A per-example objective.

    Attributes:
        name: short name (reports, `describe`).
        fn: (scores, labels) -> (N,) raised by an untargeted attacker.
        targeted_fn: (scores, labels, targets) -> (N,) raised toward the targets;
            None: -fn(scores, targets).
        divide_by_temperature: the scores are divided by the model's softmax temperature first.
    """

    name: str
    fn: Callable
    targeted_fn: Callable | None = None
    divide_by_temperature: bool = False

    def untargeted(self, scores, labels):
        return self.fn(scores, labels)

    def targeted(self, scores, labels, targets):
        if self.targeted_fn is not None:
            return self.targeted_fn(scores, labels, targets)
        return -self.fn(scores, targets)

    def __repr__(self):
        return self.name


CE = Loss("ce", cross_entropy)
MARGIN = Loss("margin", margin)
DLR = Loss("dlr", dlr, dlr_targeted)
CE_T = Loss("ce_t", cross_entropy, divide_by_temperature=True)
LOSSES = {loss.name: loss for loss in (CE, MARGIN, DLR, CE_T)}


def get(loss) -> Loss:
    """A Loss by name ("ce", "margin", "dlr", "ce_t"), a Loss, or a callable (logits, labels) ->
    (N,)."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str):
        key = _ALIASES.get(loss, loss)
        if key not in LOSSES:
            raise ValueError(
                f"Expected loss to be one of {tuple(LOSSES)} or a callable. Received: loss={loss!r}"
            )
        return LOSSES[key]
    if callable(loss):
        return Loss(getattr(loss, "__name__", "custom"), loss)
    raise ValueError(
        f"Expected loss to be one of {tuple(LOSSES)} or a callable. Received: loss={loss!r}"
    )


def check_loss_on(clf, loss_on: str) -> str:
    """`loss_on` checked against what the classifier can offer (see Classifier.scores)."""
    if loss_on not in LOSS_ON:
        raise ValueError(f"Expected loss_on to be one of {LOSS_ON}. Received: loss_on={loss_on!r}")
    if loss_on == "probabilities" and clf.output != "probabilities":
        clf.scores(None, loss_on)  # raises the adapter's error
    return loss_on


class Objective:
    """What an attack raises on a classifier: scores -> per-example loss, untargeted or toward
    targets.

    Args:
        clf: a tfadv.models.Classifier.
        loss: a Loss.
        loss_on: "logits" or "probabilities".
        targeted: raise `loss.targeted(scores, labels, targets)` instead of `loss.untargeted`.

    For the expectation view of a randomised model (`tfadv.models.expectation(model, k)`: noise on
    at inference), `gradient` follows expectation over transformation (Athalye et al. 2018): the
    objective is computed on each of k draws of the underlying model (the batch tiled k times, one
    pass) and averaged, so its gradient is the mean gradient over the draws; `scores` are the
    view's own averaged scores.
    """

    def __init__(self, clf, loss: Loss, loss_on: str, targeted: bool):
        self.clf, self.loss, self.loss_on, self.targeted = clf, loss, loss_on, targeted
        self.samples = getattr(clf, "samples", 1)

    def scores(self, x, clf=None):
        clf = clf or self.clf
        scores = clf.scores(x, self.loss_on)
        if self.loss.divide_by_temperature:
            scores = scores / tf.cast(clf.temperature(), scores.dtype)
        return scores

    def value(self, scores, labels, targets):
        if self.targeted:
            return self.loss.targeted(scores, labels, targets)
        return self.loss.untargeted(scores, labels)

    def gradient(self, x, labels, targets):
        """(scores at x, per-example objective, gradient of the summed objective w.r.t. x);
        with samples > 1, the scores and objective are means over the samples."""
        require_gradients(self.clf)  # a TFLite model or a callable: a one-line ValueError
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(x)
            if self.samples == 1:
                scores = self.scores(x)
                values = self.value(scores, labels, targets)
            else:
                k, n = self.samples, tf.shape(x)[0]
                tiled = self.scores(
                    tf.tile(x, [k] + [1] * (x.shape.rank - 1)), self.clf.base
                )  # draw j of image i: row j * n + i
                values = self.value(tiled, tf.tile(labels, [k]), tf.tile(targets, [k]))
                values = tf.reduce_mean(tf.reshape(values, [k, n]), axis=0)
                scores = tf.reduce_mean(tf.reshape(tiled, [k, n, -1]), axis=0)
        # an input the loss does not reach (a stop_gradient or rounding layer) has gradient zero,
        # not None
        return (
            scores,
            values,
            tape.gradient(values, x, unconnected_gradients=tf.UnconnectedGradients.ZERO),
        )

    def success(self, scores, labels, targets):
        """Per example: misclassified (untargeted) or predicted as the target (targeted)."""
        predicted = tf.argmax(scores, axis=-1)
        if self.targeted:
            return tf.equal(predicted, targets)
        return tf.not_equal(predicted, labels)
