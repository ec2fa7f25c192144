"""Every gradient-masking check (a)-(i) fails on a case planted for it and passes on a sound one,
and a failed check runs its remedy (BPDA through `tfadv.models.straight_through`, more EOT
samples) inside the same evaluation, folded into the headline."""

import json

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tfadv import attacks, data, evaluation, models
from tfadv.evaluation import checklist
from tfadv.evaluation.sections import doubled as _doubled

EPS = 16 / 255
# a one-step gradient attack: doubling it still breaks images
MASKED_SUITE = "pgd(steps=1),square(queries=100)"


def _quantize(x):
    """4/255 steps, no gradient at all (stop_gradient), as a deployed input quantizer might."""
    return tf.stop_gradient(tf.round(x * 255 / 4) * 4 / 255)


@pytest.fixture(scope="module")
def images(trained_tiny_cnn):
    """32 synthetic images the trained tiny CNN classifies correctly."""
    test = data.make_synthetic(256, seed=4)
    x, y = test.float_images(), test.labels
    correct = attacks.predict_classes(trained_tiny_cnn, x) == y
    return x[correct][:32], y[correct][:32]


@pytest.fixture(scope="module")
def quantized(trained_tiny_cnn):
    """The trained tiny CNN behind a rounding input layer whose gradient is undefined."""
    inputs = keras.Input((32, 32, 3))
    rounded = keras.layers.Lambda(_quantize, name="quantize")(inputs)
    return keras.Model(inputs, trained_tiny_cnn(rounded), name="quantized")


@pytest.fixture(scope="module")
def masked(trained_tiny_cnn, quantized, images):
    """The plain CNN beside its quantized twin (same weights), one short gradient attack +
    Square."""
    x, y = images
    return evaluation.evaluate(
        {"twin": trained_tiny_cnn, "quantized": quantized},
        x,
        y,
        EPS,
        suite=MASKED_SUITE,
        sweep_eps=(),
        seed=0,
        progress=False,
    )


def _checks(m) -> dict:
    return {c.key: c for c in m.checks}


# ---------------------------------------------------------------------- the checks, with numbers


def test_a_iterative_vs_single_step():
    assert (
        checklist.iterative_vs_single_step(fgsm=0.30, pgd=0.45, pgd_name="PGD-20").passed is False
    )
    assert checklist.iterative_vs_single_step(fgsm=0.30, pgd=0.10, pgd_name="PGD-20").passed is True


def test_b_transfer_only_breaks_with_numbers():
    assert checklist.white_box_vs_transfer(3, 100, {"twin": 0.2}).passed is False  # 3% > 1%
    assert checklist.white_box_vs_transfer(1, 100, {"twin": 0.2}).passed is True
    assert (
        checklist.white_box_vs_transfer(5, 100, {}).passed is None
    )  # one model: nothing to compare


def test_c_square_after_gradient_attacks_with_numbers():
    assert checklist.white_box_vs_square(2, 100, True).passed is False
    assert checklist.white_box_vs_square(0, 100, True).passed is True
    assert checklist.white_box_vs_square(9, 100, False).passed is None


def test_d_accuracy_falls_to_chance():
    assert checklist.falls_to_chance(0.35, 0.5, 10).passed is False
    assert checklist.falls_to_chance(0.02, 0.5, 10).passed is True


def test_e_random_noise_weaker():
    assert (
        checklist.random_noise_weaker(
            random_sign=0.20, gradient=0.40, gradient_name="PGD-20"
        ).passed
        is False
    )
    assert (
        checklist.random_noise_weaker(
            random_sign=0.60, gradient=0.10, gradient_name="PGD-20"
        ).passed
        is True
    )


def test_f_zero_gradients_with_numbers():
    def table(zero):
        return pd.DataFrame(
            [
                {
                    "loss_on": "logits",
                    "zero_gradient_fraction": zero,
                    "nonfinite_fraction": 0.0,
                    "median_norm": 1.0,
                }
            ]
        )

    assert checklist.gradients_usable(table(0.5)).passed is False
    assert checklist.gradients_usable(table(0.0)).passed is True


def test_g_loss_gap():
    assert (
        checklist.loss_gap(
            ce_on_outputs=0.80, margin_on_logits=0.10, outputs="probabilities"
        ).passed
        is False
    )
    assert (
        checklist.loss_gap(
            ce_on_outputs=0.12, margin_on_logits=0.10, outputs="probabilities"
        ).passed
        is True
    )


def test_h_budget_with_numbers():
    assert checklist.budget_converged(2, 100, "pgd(steps=20)").passed is False
    assert checklist.budget_converged(0, 100, "pgd(steps=20)").passed is True


def test_i_randomness_with_numbers():
    steady = [0.40] * 10
    assert checklist.randomness_handled(False, 8).passed is None
    assert checklist.randomness_handled(True, 8, steady, eot=0.40, no_eot=0.40).passed is True
    lucky = [0.40] * 9 + [0.50]  # one draw 9 points above the mean of 0.41
    assert checklist.randomness_handled(True, 8, lucky, eot=0.40, no_eot=0.40).passed is False
    weaker = checklist.randomness_handled(
        True, 8, steady, eot=0.45, no_eot=0.30
    )  # EOT weaker than no EOT
    assert weaker.passed is False and "EOT weaker" in weaker.evidence
    with pytest.raises(ValueError, match="draw_accuracies"):
        checklist.randomness_handled(True, 8, [])


def test_h_doubles_every_gradient_attack_of_the_suite():
    doubled = {a.name: a.options for a in _doubled(evaluation.suite_attacks("standard"))}
    assert set(doubled) == {"apgd", "apgd_t", "fab_t"}  # Square has no steps: left out
    assert doubled["apgd"]["steps"] == 200 and doubled["apgd"]["restarts"] == 2
    assert doubled["apgd_t"]["steps"] == 200 and doubled["apgd_t"]["n_targets"] == 9  # targets stay
    assert doubled["fab_t"]["restarts"] == 2 and doubled["fab_t"]["n_targets"] == 9


# ----------------------------------------------------------------------------- end to end


def test_b_transfer_breaks_what_white_box_missed(masked):
    quantized, twin = masked.models["quantized"], masked.models["twin"]
    b = _checks(quantized)["b"]
    assert (
        b.passed is False and "that every white-box attack missed" in b.evidence
    )  # zero gradient: transfer wins
    assert _checks(twin)["b"].passed is True  # transfer from a gradient-free surrogate adds nothing
    # the count is taken before transfer joins the headline, which then includes it
    transfer_accuracy = masked.transfer.loc["twin", "quantized"]
    assert quantized.robust_accuracy <= transfer_accuracy + 1e-9
    assert quantized.robust_accuracy <= quantized.white_box_robust_accuracy


def test_c_f_quantized_model_and_the_bpda_remedy(masked, quantized, images):
    x, y = images
    m, twin = masked.models["quantized"], masked.models["twin"]
    checks = _checks(m)
    assert checks["c"].passed is False  # Square breaks what a zero gradient cannot
    assert checks["f"].passed is False and "100.0% exactly zero" in checks["f"].evidence
    assert _checks(twin)["f"].passed is True
    rows = m.remedies
    assert list(rows["remedy"]) == ["bpda"] and rows["attack"].iloc[0].startswith("bpda: pgd(")
    assert set(rows["trigger"].iloc[0].split(",")) == {"b", "c", "f"}
    broke = int(rows["broke"].sum())
    assert broke > 0 and rows["ran_on"].iloc[0] > 0
    assert any("straight_through" in note and "quantize" in note for note in m.remedy_notes)
    # BPDA's breaks are real on the quantized model itself, and they are in the headline
    broken = m.correct & ~m.robust
    np.testing.assert_array_equal(
        attacks.predict_classes(quantized, m.adversarial[broken]) != y[broken], True
    )
    assert np.abs(m.adversarial - x).max() <= EPS + 1e-6
    assert m.white_box_robust_accuracy == pytest.approx(rows["white_box_robust_accuracy"].iloc[-1])
    assert m.headline()["remedies"] == "bpda" and twin.headline()["remedies"] == "none"


def test_h_a_too_short_suite_is_flagged(masked):
    h = _checks(masked.models["twin"])["h"]
    assert (
        h.passed is False and "steps=2" in h.evidence and "restarts=2" in h.evidence
    )  # PGD-1 doubled breaks more


def test_remedies_in_the_report(masked):
    text = masked.markdown()
    assert "Remedies run in this evaluation" in text and "bpda: pgd(" in text
    summary = json.loads(json.dumps(masked.summary()))
    runs = summary["models"]["quantized"]["remedy_runs"]
    assert (
        runs
        and runs[0]["remedy"] == "bpda"
        and summary["models"]["quantized"]["remedies"] == "bpda"
    )
    assert summary["models"]["twin"]["remedy_runs"] == []


def test_i_a_noisy_model_is_scored_over_draws_and_gets_more_eot(trained_tiny_cnn, images):
    x, y = images
    loud = models.build("tiny_cnn", noise="input", noise_stddev=0.3, noise_at_inference=True)
    loud.set_weights(trained_tiny_cnn.get_weights())
    report = evaluation.evaluate(
        {"loud": loud},
        x,
        y,
        8 / 255,
        suite="pgd(steps=3, early_stop=True)",
        sweep_eps=(),
        eot_samples=2,
        draws=10,
        progress=False,
    )
    m = report.models["loud"]
    i = _checks(m)["i"]
    assert m.stochastic and i.passed is False and "best single draw" in i.evidence
    before = m.randomness["accuracy_per_draw_before_remedies"]
    assert len(before) == 10 and max(before) > np.mean(before) + checklist.DRAW_LIMIT
    # the headline is the mean over the draws, the share correct in all draws beside it
    assert m.draws.shape == (10, len(y))
    assert m.robust_accuracy == pytest.approx(np.mean(m.randomness["accuracy_per_draw"]))
    assert m.robust_accuracy_all_draws <= m.robust_accuracy
    assert list(m.remedies["remedy"]) == ["eot x8"] and m.remedies["attack"].iloc[0].startswith(
        "eot x8: pgd("
    )
    text = report.markdown()
    assert "fresh single draws" in text and "correct in all 10 draws" in text
    headline = json.loads(json.dumps(report.summary()))["models"]["loud"]
    assert headline["robust_accuracy"] == pytest.approx(m.robust_accuracy)
    assert headline["robust_accuracy_all_draws"] == pytest.approx(m.robust_accuracy_all_draws)


def test_evaluate_refuses_bad_draws(trained_tiny_cnn, images):
    x, y = images
    with pytest.raises(ValueError, match="draws=0"):
        evaluation.evaluate(trained_tiny_cnn, x, y, EPS, suite="fgsm", draws=0, progress=False)
