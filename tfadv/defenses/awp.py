"""Adversarial weight perturbation (AWP, Wu et al. 2020) and the optimiser step it wraps.

    loss = awp.train_step(network, optimizer, loss_fn, gamma)   # inside a train step

`loss_fn(forward)` returns the replica-local mean loss of a batch, where `forward(x)` runs the
network in training mode. With gamma > 0 the step first takes one ascent direction g on that
loss at the current weights w, perturbs every kernel (the trainable weights of rank >= 2;
biases and batch-normalisation scales and offsets are left alone, as in the paper's code) by

    v_l = gamma * ||w_l|| * g_l / ||g_l||          (layer-wise, relative to each kernel's norm)

computes the loss gradient at w + v and hands it to the optimiser, which updates w: the
perturbation exists only for that gradient and the weights after the step are w plus the
update computed at the perturbed point. Both passes run the network statelessly
(`stateless_call`), so the ascent pass leaves the batch-normalisation statistics alone and the
training pass updates them once, as an ordinary step does. Under a tf.distribute strategy the
ascent gradient is summed over the replicas, so every replica perturbs the same way: that of
the global batch. Cost: one more forward-backward evaluation of the loss per step (two passes
of the batch for TRADES and MART, whose loss runs the network on x and x'), also while gamma is 0.
"""

import keras
import tensorflow as tf

from tfadv.defenses.reduction import replica_share

NORM_EPSILON = 1e-20  # as the paper's code (EPS = 1e-20)


def perturbable(variable) -> bool:
    """Whether AWP perturbs `variable`: kernels (rank >= 2), not biases or normalisation weights."""
    return len(variable.shape) >= 2


def relative_perturbation(weights, gradients, gamma, mask):
    """[gamma * ||w|| * g / ||g||] per weight where `mask` is True, zeros elsewhere (tensors)."""
    out = []
    for w, g, on in zip(weights, gradients, mask, strict=True):
        if not on or g is None:
            out.append(tf.zeros_like(w))
            continue
        g = tf.cast(g, w.dtype)
        scale = tf.cast(gamma, w.dtype) * tf.norm(w) / (tf.norm(g) + NORM_EPSILON)
        out.append(scale * g)
    return out


def _forward(network, trainable_values, state):
    """x -> network(x, training=True) at `trainable_values`; state[0] carries the non-trainable
    values (batch-norm statistics, seed states) from call to call."""

    def forward(x):
        outputs, state[0] = network.stateless_call(trainable_values, state[0], x, training=True)
        return outputs

    return forward


def _values(variables):
    return [tf.identity(tf.convert_to_tensor(v)) for v in variables]


def perturbation(network, loss_fn, gamma):
    """The AWP perturbation of `network.trainable_variables` (list of tensors) for `loss_fn`:
    one ascent direction at the current weights (all-reduced over replicas), scaled per kernel."""
    weights = _values(network.trainable_variables)
    mask = [perturbable(v) for v in network.trainable_variables]
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(weights)
        loss = loss_fn(_forward(network, weights, [_values(network.non_trainable_variables)]))
    gradients = tape.gradient(loss, weights)
    gradients = [
        tf.zeros_like(w) if g is None else g for w, g in zip(weights, gradients, strict=True)
    ]
    replica = tf.distribute.get_replica_context()
    if replica is not None and replica.num_replicas_in_sync > 1:
        gradients = replica.all_reduce("sum", gradients)
    return relative_perturbation(weights, gradients, gamma, mask)


def train_step(network, optimizer, loss_fn, gamma=None):
    """One optimiser step of `network` on `loss_fn(forward)` (a replica-local mean); returns the
    loss.

    gamma None: a plain step. Otherwise a scalar (a variable, read at run time): the gradient is
    taken at the AWP-perturbed weights (see the module docstring); at gamma 0 that is w itself.
    """
    trainable = network.trainable_variables
    if gamma is None:
        with tf.GradientTape() as tape:
            loss = loss_fn(lambda x: network(x, training=True))
            scaled = optimizer.scale_loss(replica_share(loss))
        optimizer.apply(tape.gradient(scaled, trainable), trainable)
        return loss
    non_trainable = network.non_trainable_variables
    gamma = tf.convert_to_tensor(
        gamma.value if isinstance(gamma, keras.Variable) else gamma, tf.float32
    )
    weights = _values(trainable)
    # No tf.cond on gamma: synchronised batch norm and the all-reduce cannot sit in a branch under
    # a multi-replica strategy, so the ascent pass also runs (and gives a zero perturbation) at
    # gamma 0.
    delta = perturbation(network, loss_fn, gamma)
    perturbed = [w + d for w, d in zip(weights, delta, strict=True)]
    state = [_values(non_trainable)]
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(perturbed)
        loss = loss_fn(_forward(network, perturbed, state))
        scaled = optimizer.scale_loss(replica_share(loss))
    optimizer.apply(tape.gradient(scaled, perturbed), trainable)
    for variable, value in zip(non_trainable, state[0], strict=True):
        variable.assign(value)
    return loss


class AwpSchedule(keras.callbacks.Callback):
    """Sets the AWP size variable at every epoch start: 0 for the first `warmup_epochs`, then
    gamma."""

    def __init__(self, variable, gamma: float, warmup_epochs: int = 0):
        super().__init__()
        self.variable, self.gamma, self.warmup_epochs = variable, float(gamma), int(warmup_epochs)

    def on_epoch_begin(self, epoch, logs=None):
        self.variable.assign(0.0 if epoch < self.warmup_epochs else self.gamma)


def check_gamma(gamma) -> float:
    """gamma as a float >= 0 (0: no perturbation)."""
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0 <= gamma < 1:
        raise ValueError(
            f"Expected awp_gamma to be a number in [0, 1). Received: awp_gamma={gamma!r}"
        )
    return float(gamma)
