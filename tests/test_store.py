"""The evaluation store and the chunked suite: a stored run equals one in memory, a killed run
resumes to the same outcomes redoing only what is missing, appended attacks and more images add
only their own work, changed settings are refused, and the outcome of an image does not depend on
its chunk, its device or its worker."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO_ROOT
from tfadv import data, evaluation, models
from tfadv.evaluation.store import EvaluationStore

EPS = 8 / 255
SUITE = "pgd(steps=3, early_stop=True),square(queries=30)"


@pytest.fixture(scope="module")
def setup(trained_tiny_cnn):
    test = data.make_synthetic(80, seed=6)
    return trained_tiny_cnn, test.float_images(), test.labels


def _run(setup, suite=SUITE, store=None, n=80, **options):
    model, x, y = setup
    options = {"chunk_size": 32, "seed": 0, **options}
    return evaluation.run_suite(model, x[:n], y[:n], EPS, suite, store=store, **options)


def _same(a, b):
    np.testing.assert_array_equal(a.broken_by, b.broken_by)
    np.testing.assert_array_equal(a.predictions, b.predictions)
    np.testing.assert_array_equal(a.adversarial, b.adversarial)


def _units(folder):
    """{unit path: mtime} of every stored unit."""
    found = {}
    for parent, _, files in os.walk(os.path.join(folder, "chunks")):
        for name in files:
            found[os.path.join(parent, name)] = os.stat(os.path.join(parent, name)).st_mtime_ns
    return found


@pytest.fixture(scope="module")
def reference(setup):
    return _run(setup)


def test_a_stored_run_equals_one_in_memory_and_the_table_reads_it(setup, reference, tmp_path):
    stored = _run(setup, store=str(tmp_path / "store"))
    _same(stored, reference)
    assert stored.ran_on == reference.ran_on
    table = EvaluationStore(str(tmp_path / "store"))
    table.settings = {"attacks": stored.attacks}
    frame = table.table()
    assert len(frame) == sum(stored.ran_on) and frame["broken"].sum() == np.sum(
        stored.broken_by >= 0
    )


def test_missing_units_are_redone_and_nothing_else(setup, reference, tmp_path):
    folder = str(tmp_path / "store")
    _run(setup, store=folder)
    before = _units(folder)
    lost = sorted(before, key=before.get)[-3:]  # a kill loses the units written last
    for path in lost:
        os.remove(path)
    _same(_run(setup, store=folder), reference)
    after = _units(folder)
    assert set(after) == set(before)
    assert sorted(p for p in after if after[p] != before[p]) == sorted(lost)


def test_a_resume_runs_the_model_only_for_what_is_missing(setup, reference, tmp_path, monkeypatch):
    """A resume's fixed cost: finished chunks are checked, not predicted again, and an attack
    whose units are all stored is neither called nor traced."""
    from tfadv.evaluation import engine

    folder = str(tmp_path / "store")
    _run(setup, store=folder)
    calls = []
    attack_rows, logits = engine._attack_rows, engine.batched_logits
    monkeypatch.setattr(
        engine,
        "_attack_rows",
        lambda model, images, labels, rows, attack, *a, **k: (
            calls.append((attack.name, len(rows))),
            attack_rows(model, images, labels, rows, attack, *a, **k),
        )[1],
    )
    monkeypatch.setattr(
        engine,
        "batched_logits",
        lambda model, images, batch_size: (
            calls.append(("logits", len(images))),
            logits(model, images, batch_size),
        )[1],
    )
    _same(_run(setup, store=folder), reference)  # a finished store: read only
    assert calls == []
    for path in _units(folder):
        if path.endswith("a1.npz"):  # the last attack lost on every chunk
            os.remove(path)
    _same(_run(setup, store=folder), reference)
    survivors = int(np.sum((reference.broken_by == 1) | reference.robust))  # square's images
    assert survivors == reference.ran_on[1] > 0
    assert [name for name, _ in calls if name != "logits"] == ["square"]
    assert sum(size for name, size in calls if name == "square") == survivors
    assert sum(size for name, size in calls if name == "logits") == survivors  # no clean pass


class _Killed(Exception):
    pass


def _kills(engine, survivors, batch):
    """For each attack call in turn: (chunks of the groups finished before it, chunks whose images
    were all in a finished batch), the units a kill at that call leaves."""
    kept, sizes = 0, dict(enumerate(survivors))
    for group in engine._groups(list(sizes), sizes, batch):
        whole_groups, done, end, total = kept, 0, 0, sum(sizes[c] for c in group)
        for chunk in group:
            end += sizes[chunk]
            while done < end:
                yield whole_groups, kept
                done += min(batch, total - done)
            kept += 1


def test_a_kill_inside_a_group_keeps_the_chunks_whose_batches_are_done(
    setup, reference, tmp_path, monkeypatch
):
    """Square's survivors of several 4-image chunks are attacked together, 4 at a time; a kill
    inside such a group keeps each chunk whose images were all in a finished batch, and the resume
    redoes only the rest."""
    from tfadv.evaluation import engine

    # Square runs on PGD's survivors; the engine groups chunks until a group has 4 of them.
    survivors = [
        int(np.isin(reference.broken_by[s : s + 4], (-1, 1)).sum()) for s in range(0, 80, 4)
    ]
    dies_at, (whole_groups, expected) = next(  # the first call that finds a group partly written
        (call, kill)
        for call, kill in enumerate(_kills(engine, survivors, 4), 1)
        if kill[0] < kill[1]
    )
    folder, attack_rows, calls = str(tmp_path / "store"), engine._attack_rows, []

    def killed_inside_a_group(model, images, labels, rows, attack, *a, **k):
        if attack.name == "square":
            calls.append(len(rows))
            if len(calls) == dies_at:
                raise _Killed()
        return attack_rows(model, images, labels, rows, attack, *a, **k)

    monkeypatch.setattr(engine, "_attack_rows", killed_inside_a_group)
    small = dict(chunk_size=4, batch_size=4)
    with pytest.raises(_Killed):
        _run(setup, store=folder, **small)
    kept = sorted(p for p in _units(folder) if p.endswith("a1.npz"))
    assert whole_groups < len(kept) == expected < len(survivors)
    monkeypatch.setattr(engine, "_attack_rows", attack_rows)
    before = _units(folder)
    _same(_run(setup, store=folder, **small), reference)
    after = _units(folder)
    assert all(after[p] == before[p] for p in kept)


def test_an_appended_attack_runs_only_on_the_survivors(setup, tmp_path):
    folder = str(tmp_path / "store")
    first = _run(setup, suite="pgd(steps=3, early_stop=True)", store=folder)
    before = _units(folder)
    grown = _run(setup, suite=SUITE, store=folder)
    after = _units(folder)
    assert all(after[p] == before[p] for p in before)  # the first attack was not run again
    assert grown.ran_on[1] == np.sum(first.broken_by == -1)  # the new one ran on the survivors only
    _same(grown, _run(setup, suite=SUITE))


def test_more_images_add_chunks_only(setup, tmp_path):
    folder = str(tmp_path / "store")
    _run(setup, store=folder, n=48)  # chunks 0-31 and 32-47
    before = _units(folder)
    grown = _run(setup, store=folder, n=80)  # 32-47 grows to 32-63, 64-79 is new
    after = _units(folder)
    assert all(after[p] == before[p] for p in before if "c0000000" in p)
    _same(grown, _run(setup, n=80))


def test_changed_settings_are_refused_in_one_line(setup, tmp_path):
    model, x, y = setup
    folder = str(tmp_path / "store")
    _run(setup, store=folder, n=32)
    cases = [
        ({"eps": 4 / 255}, "eps="),
        ({"model": models.build("tiny_cnn")}, "model="),
        ({"images": 1.0 - x}, "data="),
        ({"suite": "square(queries=30)"}, "with new ones appended. Received: attacks="),
        (
            {"images": np.concatenate([x[:5], 1.0 - x[5:6], x[6:]])},
            "images 0-31 differ",
        ),  # image 0 unchanged
        ({"chunk_size": 16}, "chunk_size="),
    ]
    for change, message in cases:
        args = {
            "model": model,
            "images": x[:32],
            "labels": y[:32],
            "eps": EPS,
            "suite": SUITE,
            "chunk_size": 32,
        }
        args.update(change)
        if "images" in change:
            args["images"] = change["images"][:32]
        with pytest.raises(ValueError, match=message) as raised:
            evaluation.run_suite(
                args["model"],
                args["images"],
                args["labels"],
                args["eps"],
                args["suite"],
                store=folder,
                chunk_size=args["chunk_size"],
                seed=0,
            )
        assert "\n" not in str(raised.value)


def test_an_image_gets_the_same_outcome_in_any_chunk(setup, reference):
    for chunk_size in (16, 80):
        _same(_run(setup, chunk_size=chunk_size), reference)


def test_workers_share_a_store_and_the_last_one_reads_it_whole(setup, reference, tmp_path):
    folder = str(tmp_path / "store")
    assert (
        _run(setup, store=folder, worker=(1, 2)) is None
    )  # chunks 1 of 0..2 done, 0 and 2 missing
    _same(_run(setup, store=folder, worker=(0, 2)), reference)


_CHILD = """
import sys, numpy as np, keras
from tfadv import data, evaluation, models
from tfadv.runtime import devices
devices.split_cpu(int(sys.argv[2]))
model = keras.saving.load_model(sys.argv[4])
test = data.make_synthetic(48, seed=6)
strategy = devices.make_strategy("mirrored") if int(sys.argv[2]) > 1 else None
x, y = test.float_images(), test.labels
result = evaluation.run_suite(model, x, y, 8 / 255, sys.argv[3], store=sys.argv[1],
                              chunk_size=16, seed=0, strategy=strategy, progress=True)
np.savez(sys.argv[1] + ".npz", broken_by=result.broken_by, adversarial=result.adversarial)
"""


CHILD_SUITE = (
    "pgd(steps=3, early_stop=True),square(queries=300)"  # long enough to be killed mid-way
)


def _child(folder, model_path, devices=1, suite=CHILD_SUITE):
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, folder, str(devices), suite, model_path],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_two_logical_devices_and_a_sigkill_give_the_same_outcomes(setup, tmp_path):
    model_path = models.save_keras(setup[0], str(tmp_path / "model.keras"))
    one, two, killed = (str(tmp_path / name) for name in ("one", "two", "killed"))
    runs = [_child(one, model_path), _child(two, model_path, devices=2)]
    victim = _child(killed, model_path)
    deadline = time.time() + 240
    first = os.path.join(killed, "chunks", "c0000000", "a0.npz")
    while time.time() < deadline and not os.path.exists(first):
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not os.path.exists(killed + ".npz")  # it died before the end
    resumed = _child(killed, model_path)
    for process in (*runs, resumed):
        output = process.communicate(timeout=300)[0]
        assert process.returncode == 0, output[-2000:]
    reference = np.load(one + ".npz")
    assert (
        0 < np.sum(reference["broken_by"] >= 0) and np.sum(reference["broken_by"] == -1) < 48
    )  # attacks did work
    for other in (two, killed):
        result = np.load(other + ".npz")
        np.testing.assert_array_equal(result["broken_by"], reference["broken_by"])
        np.testing.assert_array_equal(result["adversarial"], reference["adversarial"])


def test_out_of_memory_halves_the_batch_with_one_line(setup, reference, monkeypatch, capsys):
    import tensorflow as tf

    from tfadv import attacks
    from tfadv.evaluation import engine

    real = attacks.adversarial_images
    seen = []

    def tight(model, images, labels, attack, eps, *, batch_size, **options):
        seen.append(batch_size)
        if batch_size > 8:
            raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")
        return real(model, images, labels, attack, eps, batch_size=batch_size, **options)

    monkeypatch.setattr(engine.attacks, "adversarial_images", tight)
    result = _run(setup, batch_size=32, progress=True)
    assert seen[:3] == [32, 16, 8]
    assert capsys.readouterr().out.count("out of memory: retrying") >= 2
    np.testing.assert_array_equal(result.broken_by >= 0, reference.broken_by >= 0)


def test_a_large_model_is_evaluated_on_a_handful_of_images():
    import keras

    resnet = keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3), classes=10)
    x = np.random.default_rng(0).random((3, 224, 224, 3), dtype=np.float32)
    y = np.argmax(
        resnet.predict(x, verbose=0), axis=1
    )  # correct by construction: every image is attacked
    result = evaluation.run_suite(resnet, x, y, EPS, "pgd(steps=1)", batch_size=2, seed=0)
    assert result.ran_on == [3] and result.clean_accuracy == 1.0
    assert np.abs(result.adversarial - x).max() <= EPS + 1e-6


def test_budgets_count_every_pass_and_change_nothing(setup, reference):
    from tfadv import attacks

    model, x, y = setup
    budget = models.Budget()
    view = models.counted(model, budget)
    plain = attacks.pgd(model, x[:20], y[:20], EPS, steps=4, seed=0)
    counted = attacks.pgd(view, x[:20], y[:20], EPS, steps=4, seed=0)
    np.testing.assert_array_equal(counted.numpy(), plain.numpy())
    assert budget.read() == {"forwards": 80, "gradients": 80}  # 4 steps x 20 images, no early stop
    budget.reset()
    attacks.square(view, x[:20], y[:20], EPS, queries=5, seed=0)
    assert budget.read()["gradients"] == 0 and 0 < budget.read()["forwards"] <= 5 * 20
    noisy = models.build("tiny_cnn", noise="input", noise_stddev=0.1, noise_at_inference=True)
    budget.reset()
    attacks.pgd(
        models.counted(models.expectation(noisy, 3), budget), x[:8], y[:8], EPS, steps=2, seed=0
    )
    assert budget.read() == {"forwards": 3 * 2 * 8, "gradients": 3 * 2 * 8}  # every EOT draw counts
    table = reference.table()
    assert table["gradients"].iloc[0] > 0 and table["gradients"].iloc[1] == 0  # PGD, then Square
    assert (table["forwards"] >= table["gradients"]).all()
    cost = reference.cost(images=800)
    assert cost["projected"]["forwards"] == pytest.approx(10 * cost["forwards"])


def test_section_units_are_kept_under_their_key(tmp_path):
    from tfadv.evaluation.store import SectionUnits

    for folder in (str(tmp_path / "model"), None):
        units = SectionUnits(folder)
        assert units.get("sweep", "k1") is None
        units.put(
            "sweep", "k1", {"eps": np.array([0.01, 0.03]), "attack": np.array(["fgsm", "pgd"])}
        )
        kept = units.get("sweep", "k1")
        np.testing.assert_array_equal(kept["eps"], [0.01, 0.03])
        assert kept["attack"].tolist() == ["fgsm", "pgd"] and set(kept) == {"eps", "attack"}
        assert units.get("sweep", "k2") is None  # made from other inputs: absent
        with pytest.raises(ValueError, match="Expected arrays of numbers or strings"):
            units.put("bad", "k1", {"x": np.array([{"a": 1}], dtype=object)})
    assert os.listdir(tmp_path / "model" / "sections") == ["sweep.npz"]  # no temporary left
