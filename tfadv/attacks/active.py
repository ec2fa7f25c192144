"""The examples still being attacked inside a compiled loop: a per-example state that
shrinks as examples finish, and full-batch outputs their results are written to.

    state = {"rows": tf.range(n), "x": x, ...}          # rows: each example's place in the batch
    state, out = drop_finished(state, out, state["won"], record)

An attack that drops its finished examples evaluates the model only on the others; without
dropping (XLA needs static shapes) the same loop keeps every example and masks the finished.
"""

import tensorflow as tf


def write_rows(full, rows, values):
    """`full` (the whole batch) with the entries at `rows` (int64 (k,)) replaced by `values`."""
    return tf.tensor_scatter_nd_update(full, rows[:, None], values)


def drop_finished(state: dict, out, finished, record):
    """(state, out) with the examples where `finished` (bool, one per example of `state`)
    written out by `record(out, finished_state)` and removed from every entry of `state`
    (all batch-major, with `state["rows"]` among them). A no-op when none finished."""

    def drop():
        done = {k: tf.boolean_mask(v, finished) for k, v in state.items()}
        return {k: tf.boolean_mask(v, ~finished) for k, v in state.items()}, record(out, done)

    return tf.cond(tf.reduce_any(finished), drop, lambda: (state, out))
