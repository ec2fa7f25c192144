"""tfadv.evaluate: robust accuracy, eps sweeps and gradient-masking diagnostics."""

import keras
import numpy as np
import pytest

from tfadv import attacks, data, evaluation, models


@pytest.fixture(scope="module")
def setup(trained_tiny_cnn):
    test = data.make_synthetic(100, seed=1)
    return trained_tiny_cnn, test.float_images(), test.labels


def test_robust_accuracy_keys_and_consistency(setup):
    model, x, y = setup
    out = evaluation.robust_accuracy(model, x, y, "pgd", 4 / 255, batch_size=40, steps=3, seed=0)
    assert set(out) == {
        "clean_accuracy",
        "adversarial_accuracy",
        "adversarial_accuracy_on_correct",
        "n",
        "n_correct",
    }
    clean = attacks.logits_of(model, x).numpy().argmax(1) == y
    assert out["n"] == 100 and out["n_correct"] == clean.sum()
    assert out["clean_accuracy"] == pytest.approx(clean.mean())
    assert out["adversarial_accuracy"] < out["clean_accuracy"]
    same_fn = evaluation.robust_accuracy(
        model, x, y, attacks.pgd, 4 / 255, batch_size=40, steps=3, seed=0
    )
    assert same_fn == out


def test_eps_sweep_is_monotone_for_pgd_and_starts_at_clean_accuracy(setup):
    model, x, y = setup
    eps_values = [0.0, 1 / 255, 4 / 255, 16 / 255]
    table = evaluation.eps_sweep(model, x, y, "pgd", eps_values, steps=5, seed=0)
    assert list(table["eps"]) == eps_values and list(table["attack"]) == ["pgd(steps=5)"] * 4
    assert table["eps_255"].tolist() == pytest.approx([0, 1, 4, 16])
    assert table["adversarial_accuracy"].iloc[0] == table["clean_accuracy"].iloc[0]
    assert np.all(np.diff(table["adversarial_accuracy"]) <= 0)
    assert table["adversarial_accuracy"].iloc[-1] < table["clean_accuracy"].iloc[0]


def test_gradient_norms_expose_masking_of_a_saturated_softmax(setup):
    model, x, y = setup
    norms = evaluation.gradient_norms(model, x, y, loss_on="probabilities", batch_size=30)
    assert norms.shape == (100,) and np.all(norms > 0)
    grad = attacks.input_gradient(model, x[:5], y[:5], loss_on="probabilities").numpy()
    np.testing.assert_allclose(norms[:5], np.sqrt((grad**2).reshape(5, -1).sum(1)), rtol=1e-5)
    hot = keras.models.clone_model(model)
    hot.set_weights(model.get_weights())
    models.set_temperature(hot, 1e-3)
    report = evaluation.masking_report(hot, x, y).set_index("loss_on")
    correct = (attacks.logits_of(hot, x).numpy().argmax(1) == y).mean()
    assert (
        report.loc["probabilities", "zero_gradient_fraction"] >= correct
    )  # every confident-correct image
    assert (
        report.loc["logits", "zero_gradient_fraction"]
        < report.loc["probabilities", "zero_gradient_fraction"]
    )
    assert report.loc["logits", "median_norm"] > 0


def test_breakdowns_on_hand_made_probabilities():
    probabilities = np.array(
        [
            [0.7, 0.2, 0.1],
            [0.1, 0.6, 0.3],
            [0.35, 0.25, 0.4],
            [0.04, 0.9, 0.06],
            [0.34, 0.33, 0.32],
        ],
        np.float32,
    )
    labels = np.array([0, 1, 1, 2, 2])  # label ranks 1, 1, 3, 2, 3
    predictions = probabilities.argmax(1)
    np.testing.assert_array_equal(
        evaluation.confusion_matrix(labels, predictions, 3), [[1, 0, 0], [0, 1, 1], [1, 1, 0]]
    )
    per_class = evaluation.per_class_accuracy(labels, predictions, 3, ["a", "b", "c"])
    assert per_class["accuracy"].tolist() == [1.0, 0.5, 0.0] and per_class["n"].tolist() == [
        1,
        2,
        2,
    ]
    assert evaluation.top_k_error(probabilities, labels, 1) == pytest.approx(0.6)
    assert evaluation.top_k_error(probabilities, labels, 2) == pytest.approx(0.4)
    assert evaluation.top_k_error(probabilities, labels, 3) == 0.0
    buckets = evaluation.confidence_buckets(probabilities, labels, edges=(0.0, 0.5, 1.0))
    assert buckets["n"].tolist() == [2, 3]
    assert buckets["accuracy"].tolist() == [0.0, pytest.approx(2 / 3)]
    with pytest.raises(ValueError, match="k=4"):
        evaluation.top_k_error(probabilities, labels, 4)
    with pytest.raises(ValueError, match=r"edges=\(0.5, 0.2\)"):
        evaluation.confidence_buckets(probabilities, labels, edges=(0.5, 0.2))


def test_clean_report_agrees_with_the_model(setup):
    model, x, y = setup
    report = evaluation.clean_report(model, x, y, batch_size=64)
    predictions = attacks.logits_of(model, x).numpy().argmax(1)
    assert report["top1_error"] == pytest.approx(np.mean(predictions != y))
    assert report["top5_error"] <= report["top1_error"]
    assert report["confusion"].sum() == len(y) and np.trace(report["confusion"]) == np.sum(
        predictions == y
    )
    assert report["confidence"]["n"].sum() == len(y)
    assert report["per_class"]["n"].sum() == len(y)
