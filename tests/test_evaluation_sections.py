"""Evaluation sections as probes: kept in the store, a finished evaluation rebuilt without a model
call, a section added to it run alone (model calls counted), --sections, and the distances
section (minimum norms beside the sweep and the suite)."""

import os

import numpy as np
import pandas as pd
import pytest

from tfadv import attacks, data, evaluation, models
from tfadv.evaluation import boundary, sections

EPS = 8 / 255
SUITE = "pgd(steps=3, early_stop=True)"
CLASSES = [str(c) for c in range(10)]


@pytest.fixture(scope="module")
def setup(trained_tiny_cnn):
    test = data.make_synthetic(32, seed=5)
    return trained_tiny_cnn, test.float_images(), test.labels


def _evaluate(view, x, y, store, sections_run=None):
    return evaluation.evaluate(
        {"tiny": view},
        x,
        y,
        EPS,
        suite=SUITE,
        sweep_eps=(0.01,),
        class_names=CLASSES,
        progress=False,
        store=store,
        sections_run=sections_run,
    )


def _spent(budget, before):
    now = budget.read()
    return {k: now[k] - before[k] for k in now}


def _units(store):
    folder = os.path.join(store, "tiny", "sections")
    return {name: os.stat(os.path.join(folder, name)).st_mtime_ns for name in os.listdir(folder)}


def test_a_finished_evaluation_is_rebuilt_without_a_model_call_and_a_new_section_runs_alone(
    setup, tmp_path
):
    model, x, y = setup
    budget = models.Budget()
    view = models.counted(model, budget)
    store = str(tmp_path / "store")
    first = _evaluate(view, x, y, store)
    spent = _spent(budget, {"forwards": 0, "gradients": 0})
    assert spent["forwards"] > 0 and spent["gradients"] > 0
    assert first.models["tiny"].sections == list(sections.DEFAULT[:-1])  # one model: no transfer
    kept = _units(store)
    assert {"view.npz", "clean.npz", "suite.npz", "sweep.npz", "remedies.npz"} <= set(kept)

    before = budget.read()
    again = _evaluate(view, x, y, store)
    assert _spent(budget, before) == {"forwards": 0, "gradients": 0}
    assert again.markdown() == first.markdown()
    pd.testing.assert_frame_equal(again.headline(), first.headline())
    np.testing.assert_array_equal(again.models["tiny"].robust, first.models["tiny"].robust)

    before = budget.read()
    grown = _evaluate(view, x, y, store, "all")
    added = _spent(budget, before)
    assert grown.models["tiny"].sections[-1] == "distances"
    after = _units(store)
    assert {k: v for k, v in after.items() if k != "distances.npz"} == kept  # nothing else redone
    alone = models.Budget()
    alone_view = models.counted(model, alone)
    for i in range(0, len(y), 256):
        attacks.minimum_norm(alone_view, x[i : i + 256], y[i : i + 256], "fmn", "inf")
    assert added == alone.read() and added["gradients"] > 0  # the FMN run, and nothing else
    assert grown.models["tiny"].robust_accuracy == first.models["tiny"].robust_accuracy


def test_sections_pick_what_runs_and_the_report_shows_only_those(setup, tmp_path):
    model, x, y = setup
    report = _evaluate(model, x, y, None, "sweep")
    m = report.models["tiny"]
    assert m.sections == ["clean", "suite", "sweep"] and m.confidence is None
    verdicts = {c.key: c for c in m.checks}
    assert verdicts["a"].passed is not None and verdicts["f"].passed is None
    assert "'gradients' not run" in verdicts["f"].evidence
    out = report.write(str(tmp_path / "report"))
    files = set(os.listdir(os.path.join(out, "tiny")))
    assert {"sweep.csv", "eps_curves.png", "suite.csv"} <= files
    assert not {"confidence.csv", "masking.csv", "gradient_norms.png"} & files
    text = open(os.path.join(out, "report.md")).read()
    assert "### Eps sweep" in text and "Possas" not in text
    with pytest.raises(
        ValueError, match=r"Expected sections from .* Received: sections='sweep,nope'"
    ):
        sections.select("sweep,nope")
    assert [p.name for p in sections.select("all")][-1] == "distances"


def test_the_distance_curve_takes_the_lowest_point_and_flags_a_search_that_stopped_short():
    distances = np.array([0.0, 0.02, 0.05, np.inf])  # image 0 misclassified, image 3 never broken
    sweep = pd.DataFrame(
        {
            "attack": ["fgsm", "fgsm", "pgd-20", "pgd-20"],
            "eps": [0.01, 0.03, 0.01, 0.03],
            "adversarial_accuracy": [0.75, 0.75, 0.75, 0.25],
        }
    )
    table = boundary.comparison(distances, sweep, 0.03, 0.5).set_index("eps")
    np.testing.assert_allclose(table["min_norm"], [0.75, 0.5])  # d > eps
    np.testing.assert_allclose(table["honest"], [0.75, 0.25])  # PGD found more at 0.03
    assert table["stopped_short"].tolist() == [False, True]
    assert table.loc[0.03, "suite"] == 0.5 and np.isnan(table.loc[0.01, "suite"])
    row = boundary.quantile_row("all", distances[1:3], [True, True])
    assert row["median"] == pytest.approx(0.035) and row["n"] == 2


def test_distances_of_a_tiny_model(setup, tmp_path):
    model, x, y = setup
    report = _evaluate(model, x, y, None, "sweep,distances")
    m = report.models["tiny"]
    d = m.distances["distance"].to_numpy()
    wrong = m.clean_predictions != y
    assert np.all(d[wrong] == 0) and np.all(d[~wrong] > 0)
    found = np.isfinite(d) & ~wrong
    assert found.sum() >= 0.9 * (~wrong).sum()  # FMN breaks nearly every correct image
    curve = m.distance_curve
    assert np.all(np.diff(curve["min_norm"]) <= 0)  # robust accuracy falls with eps
    assert np.all(curve["honest"] <= curve["min_norm"] + 1e-12)
    at = curve[np.isclose(curve["eps"], EPS)].iloc[0]
    assert at["honest"] <= at["suite"] + 1e-12
    assert at["min_norm"] == pytest.approx(np.mean(d > EPS))
    quantiles = m.distance_quantiles.set_index("group")
    assert len(quantiles) == 1 + len(CLASSES) + 3
    assert quantiles.loc["all", "median"] == pytest.approx(np.median(d[~wrong]))
    out = report.write(str(tmp_path / "report"))
    files = set(os.listdir(os.path.join(out, "tiny")))
    assert {"distances.csv", "distance_quantiles.csv", "distance_curve.csv"} <= files
    png = open(os.path.join(out, "tiny", "distance_curve.png"), "rb").read()
    assert png[:4] == b"\x89PNG"
    assert "### Distances to the boundary" in open(os.path.join(out, "report.md")).read()
