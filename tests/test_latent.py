"""Latent-space defence: the contrastive loss by hand, one training step, the nearest-reference
classifier (labels of its references, logits = -distance, attackable, save/load), config round
trip, reference choice, and the 2-D projection."""

import os
import re

import keras
import numpy as np
import pytest

from tfadv import attacks, models
from tfadv.defenses import (
    ContrastiveTrainer,
    NearestReferenceClassifier,
    choose_references,
    contrastive_loss,
    embeddings,
)
from tfadv.explain import embedding_figures as figures


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    return rng.random((32, 16, 16, 3), dtype=np.float32), np.arange(32) % 4


def _model(seed=1):
    keras.utils.set_random_seed(seed)
    return models.build("tiny_cnn", (16, 16, 3), 4)


def test_contrastive_loss_by_hand():
    e = np.array([[0.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, 0.5]], np.float32)
    y = np.array([0, 0, 1, 2])
    # same class: the pair (0, 1) at distance 1; different: (0,2)=3, (0,3)=.5, (1,2)=sqrt(10),
    # (1,3)=.5, (2,3)=sqrt(9.25)
    pull = 1.0
    push = np.mean(
        [0.0, 1.5**2, 0.0, 1.5**2, 0.0]
    )  # max(0, 2 - d)^2 over the five pairs (both orders: the same mean)
    expected = 0.5 * pull + 0.5 * push
    np.testing.assert_allclose(
        float(contrastive_loss(e, y, margin=2.0, normalize=False)), expected, rtol=1e-5
    )
    np.testing.assert_allclose(
        float(contrastive_loss(e, np.zeros(4), margin=2.0, normalize=False)),
        0.5 * np.mean([1, 9, 0.25, 10, 0.25, 9.25]),
        rtol=1e-5,
    )


def test_normalized_contrastive_loss_by_hand_ignores_the_embedding_scale():
    e = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0], [-0.5, 0.0]], np.float32)
    y = np.array([0, 0, 1, 1])
    # unit vectors: (1,0), (1,0), (0,1), (-1,0); same class: (0,1) at 0, (2,3) at sqrt(2);
    # different: (0,2), (1,2) at sqrt(2), (0,3), (1,3) at 2
    pull = np.mean([0.0, 2.0])
    push = np.mean([max(0, 1.5 - np.sqrt(2)) ** 2] * 2 + [0.0] * 2)
    expected = 0.5 * pull + 0.5 * push
    np.testing.assert_allclose(float(contrastive_loss(e, y, margin=1.5)), expected, rtol=1e-5)
    np.testing.assert_allclose(float(contrastive_loss(10 * e, y, margin=1.5)), expected, rtol=1e-5)
    assert float(contrastive_loss(10 * e, y, margin=1.5, normalize=False)) > 10 * expected


def test_one_training_step_lowers_the_contrastive_loss_and_updates_the_classifier(batch):
    x, y = batch
    model = _model()
    trainer = ContrastiveTrainer(model, margin=2.0, weight=1.0)
    trainer.compile(optimizer=keras.optimizers.SGD(0.05))
    before = trainer.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    weights_before = [w.numpy().copy() for w in model.trainable_weights]
    logs = trainer.fit(x, y, batch_size=32, epochs=1, verbose=0).history
    after = trainer.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "ce_loss", "contrastive_loss", "accuracy"}
    assert after["contrastive_loss"] < before["contrastive_loss"]
    np.testing.assert_allclose(
        before["loss"], before["ce_loss"] + before["contrastive_loss"], rtol=1e-5
    )
    assert all(
        not np.array_equal(a, w.numpy())
        for a, w in zip(weights_before, model.trainable_weights, strict=True)
    )
    np.testing.assert_allclose(
        trainer(x[:4]), model(x[:4])
    )  # calling the trainer calls the classifier


def test_config_round_trip():
    trainer = ContrastiveTrainer(_model(), margin=3.0, weight=0.5, name="latent")
    clone = ContrastiveTrainer.from_config(trainer.get_config())
    assert (clone.margin, clone.weight, clone.normalize, clone.name) == (3.0, 0.5, True, "latent")
    defaults = ContrastiveTrainer(_model())
    assert (defaults.margin, defaults.weight, defaults.normalize) == (1.0, 0.5, True)
    assert [layer.name for layer in clone.classifier.layers] == [
        layer.name for layer in trainer.classifier.layers
    ]
    with pytest.raises(ValueError, match=re.escape("margin=0")):
        ContrastiveTrainer(_model(), margin=0)
    with pytest.raises(ValueError, match="'logits'"):
        ContrastiveTrainer(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))


def test_nearest_reference_classifier(batch, tmp_path):
    x, y = batch
    model = _model()
    refs = choose_references(y, per_class=5, seed=0)
    assert len(refs) == 20 and np.all(np.bincount(y[refs]) == 5)
    nearest = NearestReferenceClassifier(model, x[refs], y[refs], normalize=False)
    clf = models.as_classifier(nearest)
    assert clf.output == "logits" and clf.num_classes == 4
    np.testing.assert_array_equal(attacks.predict_classes(nearest, x[refs]), y[refs])
    # logits are minus the distance to the nearest reference of each class
    e, r = embeddings(model, x), embeddings(model, x[refs])
    distances = np.sqrt(((e[:, None] - r[None]) ** 2).sum(-1))
    expected = -np.stack([distances[:, y[refs] == c].min(1) for c in range(4)], 1)
    np.testing.assert_allclose(attacks.logits_of(nearest, x), expected, rtol=1e-4, atol=1e-3)
    adv = attacks.pgd(nearest, x, y, 8 / 255, steps=3, seed=0).numpy()
    assert np.abs(adv - x).max() <= 8 / 255 + 1e-6
    path = str(tmp_path / "nearest.keras")
    nearest.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), nearest.predict(x, verbose=0), rtol=1e-5, atol=1e-5
    )
    # the default measures distances between unit-length embeddings
    unit = NearestReferenceClassifier(model, x[refs], y[refs])
    e, r = (
        e / np.linalg.norm(e, axis=1, keepdims=True),
        r / np.linalg.norm(r, axis=1, keepdims=True),
    )
    distances = np.sqrt(((e[:, None] - r[None]) ** 2).sum(-1))
    expected = -np.stack([distances[:, y[refs] == c].min(1) for c in range(4)], 1)
    np.testing.assert_allclose(attacks.logits_of(unit, x), expected, rtol=1e-4, atol=1e-3)
    reloaded = NearestReferenceClassifier.from_config(unit.get_config())
    assert reloaded.get_layer("logits").normalize
    with pytest.raises(ValueError, match=re.escape("per_class=9")):
        choose_references(y, per_class=9)


def test_pca_projection_and_embedding_figure(tmp_path):
    rng = np.random.default_rng(0)
    points = rng.normal(size=(200, 3)) * [5.0, 1.0, 0.1] + [1.0, 2.0, 3.0]
    mean, components = figures.fit_pca_2d(points)
    np.testing.assert_allclose(np.abs(components[:, 0]), [1, 0, 0], atol=0.05)
    np.testing.assert_allclose(np.abs(components[:, 1]), [0, 1, 0], atol=0.05)
    projected = figures.project_2d(points, (mean, components))
    np.testing.assert_allclose(projected.mean(0), 0, atol=1e-6)
    labels = (points[:, 0] > 1).astype(int)
    fig = figures.embedding_figure(
        [
            {"title": "plain", "points": projected, "labels": labels},
            {
                "title": "moved",
                "points": projected,
                "labels": labels,
                "moved_from": projected[:5],
                "moved_to": projected[5:10],
                "moved_labels": labels[5:10],
            },
        ]
    )
    assert os.path.getsize(figures.save_png(fig, str(tmp_path / "emb.png"))) > 1000


def test_the_contrastive_recipe_trains_the_defence_and_resumes_exactly(tmp_path):
    """Recipe contrastive (python -m tfadv.train --recipe=contrastive): a run killed after epoch 1
    of 2 and resumed ends with the uninterrupted run's weights; the run notes the loss it
    trained."""
    from conftest import tiny_config
    from tfadv.experiment import resume_check, run_folder

    config = tiny_config(
        tmp_path / "run", recipe="contrastive", epochs=2, contrastive_margin=0.8, seed=2
    )
    rows = resume_check.check(config, [resume_check.KillPoint("model", "epoch", 1)], tmp_path)
    assert len(rows) == 1 and rows[0].equal and rows[0].resumed_epochs == {"model": 1}, rows
    summary = run_folder.read_json(os.path.join(str(tmp_path), "uninterrupted", "summary.json"))
    assert "margin 0.8" in summary["notes"]["contrastive"], summary["notes"]
    with pytest.raises(ValueError, match="contrastive_margin=0"):
        tiny_config(tmp_path / "bad", recipe="contrastive", contrastive_margin=0.0).check_values()
