"""The catastrophic-overfitting guard: a model whose robust accuracy collapses at a known epoch
stops there with the previous epoch's weights; a steady one trains to the end; the recipe option."""

import os
import types

import keras
import numpy as np
import pytest
from absl import flags

from tfadv.data import ImageSet
from tfadv.defenses import OverfittingGuard
from tfadv.experiment import flags as cli
from tfadv.experiment import resume
from tfadv.experiment.config import TrainConfig
from tfadv.experiment.recipes import adversarial

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPS = 0.03
COLLAPSE = 3  # 0-based epoch whose weights are not robust


def _held_batch():
    """Class 0: every pixel 0.2; class 1: every pixel 0.8 (4x4x1 images)."""
    labels = np.array([0, 1] * 4)
    images = np.where(labels[:, None, None, None] == 0, 0.2, 0.8) * np.ones((8, 4, 4, 1))
    return images.astype(np.float32), labels


def _robust(scale):
    """logit_1 - logit_0 = 2 * scale * (sum of pixels - 8): the sums 3.2 / 12.8 are far from 8."""
    kernel = np.tile(np.array([[-scale, scale]], np.float32), (16, 1))
    return [kernel, np.array([8 * scale, -8 * scale], np.float32)]


def _fragile():
    """logit_1 - logit_0 = 2 * (pixel_0 - 0.21): class 0 (0.2) is correct but flips at eps 0.03."""
    kernel = np.zeros((16, 2), np.float32)
    kernel[0] = [-1.0, 1.0]
    return [kernel, np.array([0.21, -0.21], np.float32)]


class SetWeightsEachEpoch(keras.callbacks.Callback):
    """Stands in for training: at each epoch end the model gets the weights of that epoch."""

    def __init__(self, weights_of_epoch):
        super().__init__()
        self.weights_of_epoch = weights_of_epoch

    def on_epoch_end(self, epoch, logs=None):
        self.model.set_weights(self.weights_of_epoch(epoch))


def _model():
    inputs = keras.Input((4, 4, 1))
    model = keras.Model(
        inputs, keras.layers.Dense(2, name="logits")(keras.layers.Flatten()(inputs))
    )  # outputs logits
    model.compile(
        optimizer=keras.optimizers.SGD(0.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def _guard(drop):
    images, labels = _held_batch()
    return OverfittingGuard(images, labels, EPS, drop=drop, attack="pgd(steps=3)", seed=0)


def _fit_with_guard(drop, epochs=5, model=None, guard=None, initial_epoch=0, callbacks=()):
    keras.utils.set_random_seed(0)
    model = model or _model()
    guard = guard or _guard(drop)
    images, labels = _held_batch()
    weights = lambda epoch: _fragile() if epoch == COLLAPSE else _robust(epoch + 1.0)  # noqa: E731
    history = model.fit(
        images,
        labels,
        batch_size=4,
        epochs=epochs,
        initial_epoch=initial_epoch,
        verbose=0,
        callbacks=[SetWeightsEachEpoch(weights), guard, *callbacks],
    )
    return model, guard, history


def test_collapse_stops_training_and_restores_the_previous_epoch():
    model, guard, history = _fit_with_guard(drop=0.2)
    assert guard.history == [1.0, 1.0, 1.0, 0.5]
    assert len(history.history["loss"]) == COLLAPSE + 1  # stopped at the collapsing epoch
    assert (guard.stopped_epoch, guard.restored_epoch, guard.best_epoch) == (
        COLLAPSE,
        COLLAPSE - 1,
        0,
    )
    for got, expected in zip(
        model.get_weights(), _robust(float(COLLAPSE)), strict=True
    ):  # epoch COLLAPSE - 1 had scale COLLAPSE
        np.testing.assert_array_equal(got, expected)
    assert history.history["guard_robust_accuracy"] == [1.0, 1.0, 1.0, 0.5]
    assert guard.summary()["stopped_epoch"] == COLLAPSE


def test_a_drop_within_the_tolerance_trains_to_the_end():
    model, guard, history = _fit_with_guard(drop=0.6)
    assert guard.history == [1.0, 1.0, 1.0, 0.5, 1.0]
    assert len(history.history["loss"]) == 5 and guard.stopped_epoch is None
    for got, expected in zip(model.get_weights(), _robust(5.0), strict=True):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    "kwargs", [{"drop": 0.0}, {"drop": 1.5}, {"eps": 2.0}, {"images": np.zeros((0, 4, 4, 1))}]
)
def test_bad_arguments_raise(kwargs):
    images, labels = _held_batch()
    arguments = {"images": images, "labels": labels, "eps": EPS, **kwargs}
    if len(arguments["images"]) == 0:
        arguments["labels"] = labels[:0]
    with pytest.raises(ValueError):
        OverfittingGuard(**arguments)


def test_the_fast_config_and_the_recipe_option():
    values = flags.FlagValues()
    cli.define_flags_from_dataclass(TrainConfig, {}, flag_values=values)
    values(["test", f"--flagfile={os.path.join(REPO, 'configs', 'adversarial_batch_fast.flags')}"])
    config = cli.dataclass_from_flags(TrainConfig, values).validate()
    assert (config.recipe, config.attack, config.guard_images, config.guard_drop) == (
        "adversarial_batch",
        "fgsm_random",
        128,
        0.2,
    )
    with pytest.raises(ValueError, match="guard_images"):
        TrainConfig(recipe="standard", guard_images=64).validate()
    with pytest.raises(ValueError, match="guard_drop"):
        TrainConfig(recipe="adversarial_batch", guard_images=64, guard_drop=0.0).validate()
    images, labels = _held_batch()
    train = ImageSet((images * 255).astype(np.uint8), labels)
    ctx = types.SimpleNamespace(config=config, data=types.SimpleNamespace(train=train))
    (guard,) = adversarial.guard_callbacks(ctx, classifier=None)
    assert len(guard.labels) == 8 and (guard.eps, guard.drop) == (0.03, 0.2)  # 128 asked, 8 held
    assert (
        adversarial.guard_callbacks(
            types.SimpleNamespace(config=TrainConfig(), data=ctx.data), None
        )
        == []
    )


def test_state_goes_through_the_backup_and_a_resumed_fit_stops_where_the_whole_fit_stops(tmp_path):
    """Fit to the epoch before the collapse with the run's Backup, restore into a new model and
    guard, fit on: the guard stops at the collapse with the whole fit's history and weights. A
    guard that starts afresh instead takes the collapsed epoch as its best and trains on."""
    _, whole, _ = _fit_with_guard(drop=0.2)
    backup_dir = str(tmp_path / "backup")
    first = _guard(0.2)
    _fit_with_guard(
        drop=0.2, epochs=COLLAPSE, guard=first, callbacks=[resume.Backup(backup_dir, [first])]
    )
    assert first.stopped_epoch is None and len(first.history) == COLLAPSE

    model, guard = _model(), _guard(0.2)
    assert resume.restore(model, backup_dir, callbacks=[guard]) == COLLAPSE
    assert guard.history == first.history and guard.best_epoch == first.best_epoch
    _, guard, history = _fit_with_guard(drop=0.2, model=model, guard=guard, initial_epoch=COLLAPSE)
    assert (
        len(history.history["loss"]) == 1
    )  # stopped at the collapse, the first epoch after the resume
    assert guard.summary() | {"seconds": 0} == whole.summary() | {"seconds": 0}
    for got, expected in zip(model.get_weights(), _robust(float(COLLAPSE)), strict=True):
        np.testing.assert_array_equal(got, expected)

    _, afresh, history = _fit_with_guard(drop=0.2, initial_epoch=COLLAPSE)
    assert afresh.stopped_epoch is None and len(history.history["loss"]) == 5 - COLLAPSE


def test_set_state_refuses_a_state_it_did_not_write():
    with pytest.raises(ValueError, match="previous_weights"):
        _guard(0.2).set_state({"history": [], "best": None})


def test_backup_refuses_states_of_other_callbacks(tmp_path):
    model = _model()
    guard = _guard(0.2)
    _fit_with_guard(
        drop=0.2,
        epochs=1,
        model=model,
        guard=guard,
        callbacks=[resume.Backup(str(tmp_path / "b"), [guard])],
    )
    with pytest.raises(ValueError, match="OverfittingGuard"):
        resume.restore(_model(), str(tmp_path / "b"), callbacks=[])
