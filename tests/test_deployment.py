"""A deployed model evaluated without gradients, and the deployment gap float vs TFLite."""

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from tfadv import models
from tfadv.evaluation import deployment, gradient_free
from tfadv.experiment import deployment_job
from tfadv.experiment.evaluation_job import EvaluationJob, check, run_evaluation_job

TINY = {  # the "fast" settings shrunk so the tests take seconds
    "square": "square(queries=30, rescale_schedule=True)",
    "hop_skip_jump": "hop_skip_jump(max_queries=80, steps=4, init_evals=10, max_evals=20)",
    "transfer": "pgd(steps=5)",
    "patch_steps": 5,
}
EPS = 8 / 255


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny trained run folder with float32 and int8 TFLite exports."""
    from conftest import tiny_config
    from tfadv.experiment.run import run_training

    folder = tmp_path_factory.mktemp("deploy") / "run"
    run_training(tiny_config(folder, epochs=2, train_limit=320, export_tflite="float32,int8"))
    return str(folder)


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setitem(gradient_free.SETTINGS, "fast", TINY)


def _job(run, tmp_path, **fields):
    options = dict(eps=EPS, suite="fast", limit=8, verbose=0, output_dir=str(tmp_path / "out"))
    return EvaluationJob(**{**options, **fields})


def test_int8_model_is_evaluated_gradient_free(run, tmp_path, tiny):
    lines = run_evaluation_job(_job(run, tmp_path, models=[f"{run}:model_int8"]))
    assert "gradient-free" in lines[0] and lines[-1].startswith("written:")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    checks = summary["checklist"]
    assert [c["key"] for c in checks] == list("abcdefghi")
    assert all(c["passed"] is None for c in checks)  # n/a, each with its own reason
    reasons = [c["evidence"] for c in checks]
    assert all(r and "\n" not in r for r in reasons) and len(set(reasons)) == len(reasons)
    outcomes = pd.read_csv(tmp_path / "out" / "outcomes.csv")
    correct = outcomes["clean"] == outcomes["label"]
    robust = {a: correct & (outcomes[a] == outcomes["label"]) for a in gradient_free.ATTACKS}
    worst = robust["square"] & robust["hop_skip_jump"] & robust["transfer"]
    assert summary["clean_accuracy"] == pytest.approx(correct.mean())
    for attack in gradient_free.ATTACKS:
        assert summary[attack] == pytest.approx(robust[attack].mean())
    assert summary["worst_case"] == pytest.approx(worst.mean())
    assert summary["worst_case"] < summary["clean_accuracy"]  # the attacks break something
    assert "n/a" in (tmp_path / "out" / "report.md").read_text()


def test_deployment_gap_has_one_row_per_format(run, tmp_path, tiny):
    run_evaluation_job(_job(run, tmp_path, models=[run], deployment=True))
    table = pd.read_csv(tmp_path / "out" / "deployment.csv")
    assert list(table["model"]) == ["model", "model_float32", "model_int8"]
    rows = table.set_index("model")
    assert rows.loc["model_float32", "agreement"] == 1.0
    assert rows.loc["model_int8", "agreement"] >= 0.9
    assert rows.loc["model_int8", "bytes"] < rows.loc["model_float32", "bytes"]
    assert (table["worst_case"] <= table[["square", "hop_skip_jump", "transfer"]].min(axis=1)).all()
    verdicts = pd.read_csv(tmp_path / "out" / "verdicts.csv")
    assert (verdicts["float_verdict"] != verdicts["verdict"]).all()
    counts = verdicts["model"].value_counts()
    for name in ("model_float32", "model_int8"):
        assert counts.get(name, 0) == rows.loc[name, "verdicts_differ"]
    assert "| model_int8 |" in (tmp_path / "out" / "deployment.md").read_text()


def _result(name, labels, clean, **predictions):
    return gradient_free.GradientFreeResult(
        name,
        EPS,
        "inf",
        np.array(labels),
        np.array(clean),
        {k: np.array(v) for k, v in predictions.items()},
        dict.fromkeys(predictions, "spec"),
        dict.fromkeys(predictions, 1.0),
    )


def test_verdict_differences_are_listed():
    labels = [0, 1, 2, 3, 4]
    # float: 0 robust, 1 broken (square), 2 wrong, 3 robust, 4 broken (transfer)
    base = _result(
        "model",
        labels,
        [0, 1, 9, 3, 4],
        square=[0, 9, 9, 3, 4],
        hop_skip_jump=[0, 1, 9, 3, 4],
        transfer=[0, 1, 9, 3, 8],
    )
    # int8: 0 robust, 1 broken (hop_skip_jump: same verdict), 2 robust, 3 broken, 4 wrong
    int8 = _result(
        "model_int8",
        labels,
        [0, 1, 2, 3, 7],
        square=[0, 1, 2, 5, 7],
        hop_skip_jump=[0, 6, 2, 3, 7],
        transfer=[0, 1, 2, 3, 7],
    )
    gap = deployment.DeploymentGap("model", {"model": base, "model_int8": int8}, {}, {})
    listed = gap.verdicts()
    assert list(listed["image"]) == [2, 3, 4]
    assert list(listed["float_verdict"]) == ["wrong", "robust", "broken"]
    assert list(listed["verdict"]) == ["robust", "broken", "wrong"]
    assert (
        list(listed["broken_by"]) == ["", "square", ""]
        and listed["float_broken_by"].iloc[2] == "transfer"
    )
    row = gap.table().set_index("model").loc["model_int8"]
    assert row["verdicts_differ"] == 3 and row["agreement"] == 0.6 and row["worst_case"] == 0.4


def test_gradient_attack_on_tflite_is_one_line_error(run, tmp_path):
    with pytest.raises(ValueError) as error:
        check(_job(run, tmp_path, models=[f"{run}:model_int8"], suite="pgd(steps=10)"))
    message = str(error.value)
    assert "\n" not in message and "square" in message and "hop_skip_jump" in message


def test_corrupt_tflite_is_one_line_error(run, tmp_path):
    bad = tmp_path / "model_int8.tflite"
    bad.write_bytes(open(os.path.join(run, "models", "model_int8.tflite"), "rb").read()[:2000])
    float_model = models.load(os.path.join(run, "models", "model.keras"))
    x = np.zeros((2, 32, 32, 3), np.float32)
    with pytest.raises(ValueError) as error:
        deployment.deployment_gap(float_model, {"int8": str(bad)}, x, np.zeros(2, np.int64), EPS)
    assert "\n" not in str(error.value) and str(bad) in str(error.value)


def test_run_without_exports_is_told_to_export(run, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(run, plain)
    summary = json.loads((plain / "summary.json").read_text())
    summary.pop("tflite")
    (plain / "summary.json").write_text(json.dumps(summary))
    for name in os.listdir(plain / "models"):
        if name.endswith(".tflite"):
            os.remove(plain / "models" / name)
    with pytest.raises(ValueError) as error:
        check(_job(run, tmp_path, models=[str(plain)], deployment=True))
    message = str(error.value)
    assert "\n" not in message and "no TFLite exports" in message and "tflite_export" in message

    from tfadv.experiment.tflite_export import export_run_tflite

    written = export_run_tflite(str(plain), "int8")
    assert list(written) == ["model_int8"] and written["model_int8"]["agreement"] >= 0.9
    assert deployment_job.tflite_exports(str(plain)) == {
        "model_int8": str(plain / "models" / "model_int8.tflite")
    }
