"""The attack suite (early exit, worst case), the masking checklist and the report, and
`python -m tfadv.evaluate` end to end with its one-line errors."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tfadv import attacks, data, evaluation, models

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPS = 8 / 255
QUICK_SUITE = "pgd(steps=3, early_stop=True),pgd(steps=3, loss=margin, early_stop=True)"


@pytest.fixture(scope="module")
def setup(trained_tiny_cnn):
    test = data.make_synthetic(64, seed=4)
    return trained_tiny_cnn, test.float_images(), test.labels


def _hot(model, temperature=1e-3):
    """The same network deployed with a saturated softmax (like a distilled student at T=1)."""
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    models.set_temperature(clone, temperature)
    return clone


def test_suite_attacks_only_the_unbroken_and_keeps_the_worst_case(setup):
    model, x, y = setup
    result = evaluation.run_suite(
        model, x, y, 2 / 255, "fgsm,pgd(steps=5, early_stop=True)", seed=0
    )
    clean_correct = attacks.predict_classes(model, x) == y
    assert result.ran_on[0] == clean_correct.sum()  # misclassified images are never attacked
    assert result.ran_on[1] == np.sum(result.broken_by == -1) + np.sum(
        result.broken_by == 1
    )  # FGSM survivors only
    assert np.all(result.broken_by[~clean_correct] == -2) and np.all(
        result.broken_by[clean_correct] >= -1
    )
    broken = result.broken_by >= 0
    np.testing.assert_array_equal(
        attacks.predict_classes(model, result.adversarial[broken]) != y[broken], True
    )
    assert np.abs(result.adversarial - x).max() <= 2 / 255 + 1e-6
    # worst case: no weaker than either attack alone
    alone = [
        attacks.run_attack(model, (x, y), a, 2 / 255, seed=0).summary()["adversarial_accuracy"]
        for a in ("fgsm", "pgd(steps=5)")
    ]
    assert result.robust_accuracy <= min(alone)
    table = result.table()
    assert table["broke"].sum() == broken.sum() and table["robust_accuracy"].iloc[
        -1
    ] == pytest.approx(result.robust_accuracy)


def test_named_suites_and_bad_specs():
    assert [a.name for a in evaluation.suite_attacks("standard")] == [
        "apgd",
        "apgd_t",
        "fab_t",
        "square",
    ]
    assert [a.options["norm"] for a in evaluation.suite_attacks("pgd,fgsm", norm="2")] == ["2", "2"]
    for bad in ("", "nope", "pgd(steps=0"):
        with pytest.raises(ValueError):
            evaluation.suite_attacks(bad)
    with pytest.raises(ValueError, match="threat model"):
        evaluation.suite_attacks("patch")


@pytest.fixture(scope="module")
def report(setup):
    model, x, y = setup
    return evaluation.evaluate(
        {"plain": model, "saturated": _hot(model)},
        x,
        y,
        EPS,
        suite=QUICK_SUITE,
        sweep_eps=(0.01,),
        seed=0,
        progress=False,
    )


def test_a_saturated_softmax_is_flagged_and_its_headline_is_the_worst_case(report):
    plain, saturated = report.models["plain"], report.models["saturated"]
    checks = {c.key: c for c in saturated.checks}
    assert checks["f"].passed is False and "probabilities" in checks["f"].evidence
    assert (
        checks["g"].passed is False
    )  # CE on the outputs sees nothing; the margin loss sees through
    assert {c.key: c.passed for c in plain.checks}["f"] is True and {
        c.key: c.passed for c in plain.checks
    }["g"] is True
    # the remedy of (g): the margin/DLR attacks already ran, and the report says so
    assert any(
        note.startswith("(g) failed") and "margin" in note for note in saturated.remedy_notes
    )
    for m in (plain, saturated):
        assert m.robust_accuracy <= m.suite.robust_accuracy
        assert m.robust_accuracy <= min(m.attack_accuracy.values())
        assert not np.any(
            m.robust & (m.suite.broken_by == -2)
        )  # a misclassified image is never robust
    headline = report.headline().set_index("model")
    assert headline.loc["saturated", "masking_checks_failed"] != "none"
    assert headline.loc["saturated", "robust_accuracy"] == pytest.approx(saturated.robust_accuracy)
    # the same logits: the honest robust accuracy of the saturated copy is that of the plain model
    # or lower
    assert saturated.robust_accuracy <= plain.robust_accuracy + 1 / 64


def test_report_tables_are_consistent(report, setup):
    _, x, y = setup
    m = report.models["plain"]
    assert m.confusion_clean.sum() == len(y) and np.trace(m.confusion_clean) / len(
        y
    ) == pytest.approx(m.clean["accuracy"])
    assert m.confusion_adversarial.sum() == len(y)
    assert m.per_class["n"].sum() == len(y)
    all_row = m.confidence.set_index("bucket").loc["all"]
    assert all_row["n"] == len(y) and all_row["clean top1"] == pytest.approx(m.clean["top1_error"])
    assert all_row["iterative inverse top1"] >= all_row["clean top1"]
    assert set(m.sweep["attack"]) == {"fgsm", "pgd-20"} and {0.01, round(EPS, 7), 0.5} <= set(
        np.round(m.sweep["eps"], 7)
    )
    transfer = report.transfer
    assert (
        transfer.shape == (2, 2)
        and transfer.loc["plain", "plain"] <= transfer.loc["saturated", "plain"] + 1e-9
    )


def test_report_files(report, tmp_path):
    out = report.write(str(tmp_path / "report"))
    names = set(os.listdir(out))
    assert {
        "report.md",
        "summary.json",
        "headline.csv",
        "transfer.csv",
        "transfer.png",
        "plain",
        "saturated",
        "tensorboard",
    } <= names
    assert (tmp_path / "report" / "saturated" / "remedies.csv").exists()
    for png in ("eps_curves", "confusion", "gradient_norms", "examples"):
        assert (tmp_path / "report" / "plain" / f"{png}.png").read_bytes()[:4] == b"\x89PNG"
    text = (tmp_path / "report" / "report.md").read_text()
    assert text.index("## Masking checklist") < text.index("## plain")  # the checklist comes first
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["models"]["saturated"]["robust_accuracy"] == pytest.approx(
        report.models["saturated"].robust_accuracy
    )
    with pytest.raises(ValueError, match="already exists"):
        report.write(out)


def test_a_barely_random_model_passes_check_i(setup):
    """Noise too small to change a prediction: EOT is as strong as no EOT and every draw agrees
    (the failing case, large noise, is in tests/test_checklist.py)."""
    model, x, y = setup
    quiet = models.build("tiny_cnn", noise="input", noise_stddev=1e-4, noise_at_inference=True)
    quiet.set_weights(model.get_weights())
    noisy = evaluation.evaluate(
        quiet,
        x[:16],
        y[:16],
        EPS,
        suite="pgd(steps=2, early_stop=True)",
        sweep_eps=(),
        eot_samples=2,
        draws=4,
        progress=False,
    )
    m = next(iter(noisy.models.values()))
    check = {c.key: c for c in m.checks}["i"]
    assert m.stochastic and check.passed is True and "EOT x2" in check.evidence
    assert m.draws.shape == (4, 16) and m.robust_accuracy == pytest.approx(
        m.robust_accuracy_all_draws
    )
    assert "eot" not in m.headline()["remedies"]


def test_evaluate_refuses_mismatched_data(setup):
    model, x, y = setup
    with pytest.raises(ValueError, match=r"labels in \[0, 2\)"):
        evaluation.evaluate(
            model, x, y, EPS, class_names=["a", "b"], suite=QUICK_SUITE, progress=False
        )
    with pytest.raises(
        ValueError,
        match=r"as many classes as the data set \(12\)\. Received: model .* with 10 classes",
    ):
        evaluation.evaluate(
            model, x, y, EPS, class_names=list("abcdefghijkl"), suite=QUICK_SUITE, progress=False
        )
    with pytest.raises(ValueError, match="shape"):
        evaluation.evaluate(
            models.build("tiny_cnn", (16, 16, 3)), x, y, EPS, suite=QUICK_SUITE, progress=False
        )
    with pytest.raises(ValueError, match="eps"):
        evaluation.evaluate(model, x, y, 1.5, suite=QUICK_SUITE, progress=False)
    with pytest.raises(ValueError, match="0 images"):
        evaluation.evaluate(model, x[:0], y[:0], EPS, suite=QUICK_SUITE, progress=False)


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [sys.executable, "-m", "tfadv.evaluate", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_evaluate_cli_end_to_end(tmp_path):
    from tfadv.experiment.config import TrainConfig
    from tfadv.experiment.run import run_training

    run = tmp_path / "run"
    run_training(
        TrainConfig(
            dataset="synthetic",
            model="tiny_cnn",
            epochs=1,
            train_limit=160,
            test_limit=40,
            output_dir=str(run),
            verbose=0,
        )
    )
    result = _cli(
        f"--model={run}", "--eps=0.03", f"--suite={QUICK_SUITE}", "--sweep_eps=0.01", "--verbose=0"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = run / "evaluations" / "custom-eps0.03-test"
    summary = json.loads((out / "summary.json").read_text())
    robust = summary["models"]["run"]["robust_accuracy"]
    assert f"robust {robust:.4f}" in result.stdout and summary["n"] == 40
    bad = _cli(f"--model={run}", "--eps=0.03", "--suite=jsma", f"--output_dir={tmp_path / 'x'}")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith(
        "error: Unknown attack 'jsma'"
    )
    assert "Traceback" not in bad.stderr and not (tmp_path / "x").exists()
    bad = _cli(
        f"--model={run}", "--eps=0.03", "--sections=sweep,nope", f"--output_dir={tmp_path / 'y'}"
    )
    last = bad.stderr.strip().splitlines()[-1]
    assert bad.returncode == 2 and last.startswith("error: Expected sections from"), bad.stderr[
        -500:
    ]
    assert "--sections='sweep,nope'" in last and not (tmp_path / "y").exists()
