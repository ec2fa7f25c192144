"""Minimum-norm attacks (DeepFool, Carlini-Wagner L2, FMN): DeepFool's closed form on a linear
model, no larger than a successful PGD, inside [0, 1], failures as inf and the clean image,
the eps answer of the shared signature, argument checks, one trace across batch sizes."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfadv import attacks, data
from tfadv.attacks import core as attack_compile

# few steps, so some images fail; shared by the tests so each is traced once for the file
DEEPFOOL_2, DEEPFOOL_INF = dict(norm="2", steps=3), dict(norm="inf", steps=3)
CW_FEW = dict(steps=5, binary_search_steps=2)
FMN_2, FMN_INF, FMN_1 = dict(norm="2", steps=1), dict(norm="inf", steps=1), dict(norm="1", steps=1)


@pytest.fixture(scope="module")
def linear():
    """A two-class linear model on 4x4x3 images, and 16 images in [0.4, 0.6] (far from the box
    edges) labelled with its own predictions (so each is correctly classified)."""
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [keras.Input((4, 4, 3)), keras.layers.Flatten(), keras.layers.Dense(2)]
    )
    rng = np.random.default_rng(3)
    x = rng.uniform(0.4, 0.6, (16, 4, 4, 3)).astype(np.float32)
    y = np.argmax(model.predict(x, verbose=0), axis=1)
    return model, x, y


@pytest.fixture(scope="module")
def trained(trained_tiny_cnn):
    test = data.make_synthetic(32, seed=7)
    return trained_tiny_cnn, test.float_images(), test.labels


def _lengths(delta, norm):
    flat = np.asarray(delta, np.float64).reshape(len(delta), -1)
    return {"inf": np.abs(flat).max(1), "2": np.sqrt((flat**2).sum(1)), "1": np.abs(flat).sum(1)}[
        norm
    ]


@pytest.mark.parametrize("norm, dual", [("2", 2), ("inf", 1)])
def test_deepfool_distance_on_a_linear_model_is_the_closed_form(linear, norm, dual):
    model, x, y = linear
    w, b = (v.numpy() if hasattr(v, "numpy") else np.asarray(v) for v in model.layers[-1].weights)
    logits = x.reshape(len(x), -1) @ w + b
    other = 1 - y
    margin = np.abs(logits[np.arange(len(y)), y] - logits[np.arange(len(y)), other])
    expected = margin / np.linalg.norm((w[:, y] - w[:, other]).T, ord=dual, axis=1)
    result = attacks.deepfool_search(model, x, y, norm=norm, overshoot=0.0)
    assert np.all(result.success.numpy())
    adv = result.adversarial.numpy()
    assert adv.min() > 0 and adv.max() < 1  # the box did not bind
    np.testing.assert_allclose(result.distances.numpy(), expected, atol=1e-4)
    np.testing.assert_allclose(_lengths(adv - x, norm), result.distances.numpy(), atol=1e-6)


@pytest.mark.parametrize(
    "search, norm, eps, options",
    [
        (
            attacks.carlini_wagner_l2_search,
            "2",
            0.4,
            dict(steps=60, binary_search_steps=7, stepsize=0.02),
        ),
        (attacks.fmn_search, "2", 0.4, dict(norm="2", steps=60)),
        (attacks.fmn_search, "inf", 4 / 255, dict(norm="inf", steps=60)),
    ],
)
def test_no_larger_than_a_successful_pgd_at_the_same_norm(trained, search, norm, eps, options):
    model, x, y = trained
    pgd = attacks.pgd(model, x, y, eps, steps=10, norm=norm, seed=0).numpy()
    broken = np.argmax(attacks.logits_of(model, pgd).numpy(), axis=1) != y
    assert 0 < broken.sum() < len(y)  # a case where the comparison means something
    result = search(model, x, y, **options)
    d = result.distances.numpy()
    assert np.all(d[broken] <= eps + 1e-6), (d[broken], eps)


@pytest.mark.parametrize(
    "search, options, norm",
    [
        (attacks.deepfool_search, DEEPFOOL_2, "2"),
        (attacks.deepfool_search, DEEPFOOL_INF, "inf"),
        (attacks.carlini_wagner_l2_search, CW_FEW, "2"),
        (attacks.fmn_search, FMN_2, "2"),
        (attacks.fmn_search, FMN_INF, "inf"),
        (attacks.fmn_search, FMN_1, "1"),
    ],
)
def test_results_in_the_box_failures_inf_and_unchanged(trained, search, options, norm):
    """Some images fail: those keep the clean image and an infinite distance;
    the others are misclassified at exactly their reported distance."""
    model, x, y = trained
    result = search(model, x, y, **options)
    adv, d, ok = result.adversarial.numpy(), result.distances.numpy(), result.success.numpy()
    assert result.norm == norm and adv.min() >= 0 and adv.max() <= 1
    assert ok.any() and not ok.all(), d
    np.testing.assert_array_equal(np.isinf(d), ~ok)
    np.testing.assert_array_equal(adv[~ok], x[~ok])
    assert np.all(np.argmax(attacks.logits_of(model, adv[ok]).numpy(), axis=1) != y[ok])
    np.testing.assert_allclose(_lengths(adv[ok] - x[ok], norm), d[ok], rtol=1e-5, atol=1e-6)


def test_images_misclassified_already_have_distance_zero(trained):
    model, x, y = trained
    wrong = (np.argmax(attacks.logits_of(model, x).numpy(), axis=1) + 1) % 10  # every label wrong
    for name, options in (("deepfool", DEEPFOOL_2), ("cw_l2", CW_FEW), ("fmn", FMN_2)):
        result = attacks.minimum_norm(model, x[:4], wrong[:4], attack=name, **options)
        np.testing.assert_array_equal(result.distances.numpy(), np.zeros(4))
        np.testing.assert_array_equal(result.adversarial.numpy(), x[:4])


def test_registered_attacks_answer_eps_and_the_curve(trained):
    model, x, y = trained
    result = attacks.minimum_norm(model, x, y, attack="deepfool", **DEEPFOOL_2)
    d = result.distances.numpy()
    eps = float(np.median(d[np.isfinite(d) & (d > 0)]))
    adv = attacks.Attack("deepfool", steps=3)(model, x, y, eps).numpy()
    inside = d <= eps
    assert inside.any() and not inside.all()
    np.testing.assert_array_equal(adv[~inside], x[~inside])
    np.testing.assert_allclose(adv[inside], result.adversarial.numpy()[inside])
    np.testing.assert_allclose(
        attacks.Attack("deepfool", steps=3)(model, x, y).numpy(), result.adversarial.numpy()
    )
    assert result.robust_accuracy(eps) == pytest.approx(np.mean(d > eps))
    np.testing.assert_allclose(
        result.robust_accuracy([0.0, eps, np.inf]), [np.mean(d > 0), np.mean(d > eps), 0.0]
    )
    assert attacks.Attack("fmn", norm="l1", steps=2).describe() == "fmn(norm=1, steps=2)"
    assert {"deepfool", "cw_l2", "fmn"} <= set(attacks.names())


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m, x, y: attacks.deepfool(m, x, y, norm="1"), "Received: norm='1'"),
        (lambda m, x, y: attacks.deepfool(m, x, y, candidates=1), "Received: candidates=1"),
        (lambda m, x, y: attacks.deepfool(m, x, y, overshoot=-0.5), "Received: overshoot=-0.5"),
        (lambda m, x, y: attacks.deepfool(m, x, y, steps=0), "Received: steps=0"),
        (lambda m, x, y: attacks.deepfool(m, x, y, 1.5, norm="inf"), "Received: eps=1.5"),
        (
            lambda m, x, y: attacks.carlini_wagner_l2(m, x, y, stepsize=0.0),
            "Received: stepsize=0.0",
        ),
        (
            lambda m, x, y: attacks.carlini_wagner_l2(m, x, y, confidence=-1.0),
            "Received: confidence=-1.0",
        ),
        (
            lambda m, x, y: attacks.carlini_wagner_l2(m, x, y, binary_search_steps=0),
            "Received: binary_search_steps=0",
        ),
        (
            lambda m, x, y: attacks.carlini_wagner_l2(m, x, y, abort_early="yes"),
            "Received: abort_early='yes'",
        ),
        (lambda m, x, y: attacks.carlini_wagner_l2(m, x, y, -1.0), "Received: eps=-1.0"),
        (lambda m, x, y: attacks.fmn(m, x, y, norm="0"), "Received: norm='0'"),
        (lambda m, x, y: attacks.fmn(m, x, y, gamma=1.5), "Received: gamma=1.5"),
        (lambda m, x, y: attacks.fmn(m, x, y, min_stepsize=2.0), "Received: min_stepsize=2.0"),
        (
            lambda m, x, y: attacks.fmn(m, x, y, max_stepsize=float("nan")),
            "Received: max_stepsize=nan",
        ),
        (lambda m, x, y: attacks.minimum_norm(m, x, y, attack="pgd"), "Received: attack='pgd'"),
        (
            lambda m, x, y: attacks.minimum_norm(m, x, y, attack="cw_l2", norm="inf"),
            "Received: norm='inf'",
        ),
        (lambda m, x, y: attacks.Attack("fmn", norm="3"), "Received: norm='3'"),
    ],
)
def test_invalid_arguments_raise_value_errors_echoing_the_value(trained, call, message):
    model, x, y = trained
    with pytest.raises(ValueError, match=re.escape(message)):
        call(model, x[:2], y[:2])


def test_one_trace_across_batch_sizes(trained):
    model, x, y = trained
    for start, size in ((0, 8), (8, 5), (13, 3)):
        batch = slice(start, start + size)
        attacks.deepfool(model, x[batch], y[batch], 0.1 * (start + 1), **DEEPFOOL_2)
        attacks.carlini_wagner_l2(model, x[batch], y[batch], **CW_FEW)
        attacks.fmn(model, x[batch], y[batch], tf.constant(0.01 * (start + 1)), **FMN_INF)
    counts = [
        (key[0].__name__, fn.experimental_get_tracing_count())
        for key, fn in attack_compile._COMPILED[model].items()
        if key[0].__name__ in ("_deepfool_fn", "_cw_fn", "_fmn_fn")
    ]
    assert {name for name, _ in counts} == {"_deepfool_fn", "_cw_fn", "_fmn_fn"}
    assert all(count == 1 for _, count in counts), counts


def test_inside_a_tf_function(trained):
    model, x, y = trained

    @tf.function
    def run(images, labels):
        return attacks.fmn(model, images, labels, **FMN_2)

    adv = run(tf.constant(x[:4]), tf.constant(y[:4])).numpy()
    assert adv.shape == x[:4].shape and adv.min() >= 0 and adv.max() <= 1


def test_attack_cli_without_eps_reports_each_images_distance(tmp_path):
    import json
    import os
    import subprocess
    import sys

    import pandas as pd

    from conftest import REPO_ROOT, tiny_config
    from tfadv.experiment.run import run_training

    run = tmp_path / "run"
    run_training(tiny_config(run, epochs=2, train_limit=320, test_limit=24))
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tfadv.attack",
            f"--model={run}",
            "--attack=deepfool",
            "--norm=2",
            "--verbose=0",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = run / "attacks" / "deepfool-test"
    summary = json.loads((out / "summary.json").read_text())
    table = pd.read_csv(out / "distances.csv")
    correct = table["label"] == table["clean_prediction"]
    assert len(table) == 24 and summary["n"] == 24
    assert summary["median_distance_clean_correct"] == pytest.approx(
        table["distance"][correct].median(), rel=1e-5
    )
    assert (table["distance"][~correct] == 0).all()
    assert f"{summary['median_distance_clean_correct']:.4g}" in result.stdout
    curve = pd.read_csv(out / "curve.csv")
    assert (
        curve["adversarial_accuracy"].iloc[0] == pytest.approx(correct.mean())
        and curve["adversarial_accuracy"].is_monotonic_decreasing
    )
    assert (out / "curve.png").read_bytes()[:4] == b"\x89PNG"
