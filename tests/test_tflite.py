"""TFLite exports (float32, float16, int8) queried as deployed, models without gradients,
HopSkipJump."""

import threading

import numpy as np
import pytest

from tfadv import attacks, data, models


@pytest.fixture(scope="module")
def test_set():
    images = data.make_synthetic(200, seed=1)
    return images.float_images().astype(np.float32), images.labels.astype(np.int64)


@pytest.fixture(scope="module")
def exported(trained_tiny_cnn, tmp_path_factory):
    """{name: (path, size)} of the three precisions, int8 calibrated on the training images."""
    folder = tmp_path_factory.mktemp("tflite")
    train = data.make_synthetic(1024, seed=0).float_images()
    return models.export_precisions(
        trained_tiny_cnn, str(folder), "model", representative_images=train, seed=0
    )


@pytest.fixture(scope="module")
def int8(exported):
    return models.load(exported["model_int8"][0])


def _predicted(clf, images):
    return np.argmax(np.asarray(clf.probabilities(images)), axis=-1)


@pytest.mark.parametrize(
    "precision, agreement", [("float32", 1.0), ("float16", 0.99), ("int8", 0.95)]
)
def test_export_round_trips(trained_tiny_cnn, exported, test_set, precision, agreement):
    x, _ = test_set
    path, size = exported[f"model_{precision}"]
    assert path.endswith(f"model_{precision}.tflite") and size > 0
    clf = models.load(path)
    assert clf.differentiable is False and clf.output == "probabilities" and clf.num_classes == 10
    expected = np.argmax(trained_tiny_cnn.predict(x, verbose=0), axis=-1)
    assert np.mean(_predicted(clf, x) == expected) >= agreement
    probabilities = np.asarray(clf.probabilities(x))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=0.02)


def test_int8_is_smaller(exported):
    assert exported["model_int8"][1] < exported["model_float16"][1] < exported["model_float32"][1]


def test_export_arguments(trained_tiny_cnn, tmp_path):
    with pytest.raises(ValueError, match="representative_images"):
        models.export_tflite(trained_tiny_cnn, str(tmp_path / "m.tflite"), "int8")
    with pytest.raises(ValueError, match="precision='int4'"):
        models.export_precisions(trained_tiny_cnn, str(tmp_path), precisions="float32,int4")
    assert not list(tmp_path.iterdir())  # nothing written before the error


def test_batched_equals_one_by_one(int8, test_set):
    x = test_set[0][:12]
    batched = np.asarray(int8.probabilities(x))
    single = np.concatenate([np.asarray(int8.probabilities(x[i : i + 1])) for i in range(len(x))])
    np.testing.assert_array_equal(batched, single)
    pieces = models.TFLiteModel(int8.model.fn.path, max_batch=5)(x)  # 5 + 5 + 2
    np.testing.assert_array_equal(pieces, batched)


def test_two_threads_query_at_once(int8, test_set):
    x = test_set[0]
    a, b = x[:128], x[128:129]  # two batch sizes: every call of the other thread resizes the input
    expected = {id(a): np.asarray(int8.probabilities(a)), id(b): np.asarray(int8.probabilities(b))}
    wrong = []

    def query(images):
        for _ in range(100):
            try:
                if not np.array_equal(int8.model(images), expected[id(images)]):
                    wrong.append(len(images))
            except Exception as e:  # a race shows as a wrong answer or as the interpreter's error
                wrong.append(str(e))

    threads = [threading.Thread(target=query, args=(images,)) for images in (a, b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not wrong


def test_square_on_int8_stays_in_the_ball(int8, test_set):
    x, y = test_set[0][:16], test_set[1][:16]
    eps = 8 / 255
    adv = np.asarray(attacks.square(int8, x, y, eps, queries=60, seed=0))
    assert np.max(np.abs(adv - x)) <= eps + 1e-6
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    assert np.mean(_predicted(int8, adv) != y) >= np.mean(_predicted(int8, x) != y)


@pytest.mark.parametrize("name", ["pgd", "fgsm", "apgd", "fab_t"])
def test_gradient_attack_is_refused(int8, test_set, name):
    x, y = test_set[0][:4], test_set[1][:4]
    with pytest.raises(ValueError) as error:
        attacks.Attack(name)(int8, x, y, 8 / 255)
    message = str(error.value)
    assert "\n" not in message and "model_int8" in message
    assert "square, one_pixel, random_sign, hop_skip_jump" in message and "transfer" in message


def test_corrupt_file_is_one_line_error(tmp_path, exported):
    path = tmp_path / "broken.tflite"
    path.write_bytes(b"not a flat buffer" * 8)
    with pytest.raises(ValueError) as error:
        models.load(str(path))
    assert "\n" not in str(error.value) and repr(str(path)) in str(error.value)
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(open(exported["model_float32"][0], "rb").read()[:1000])
    with pytest.raises(ValueError, match="truncated.tflite"):
        models.load(str(truncated))


def test_from_callable_wraps_numpy(test_set):
    x, y = test_set[0][:10], test_set[1][:10]
    weights = np.random.default_rng(0).normal(size=(32 * 32 * 3, 10)).astype(np.float32) * 0.05

    def served(images):
        z = images.reshape(len(images), -1) @ weights
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    clf = models.from_callable(served, (32, 32, 3), 10, name="served")
    assert models.as_classifier(clf.model) is clf
    np.testing.assert_allclose(np.asarray(clf.probabilities(x)), served(x), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(clf.logits(x)), np.log(served(x)), rtol=1e-5, atol=1e-6)
    adv = np.asarray(attacks.square(clf, x, y, 0.05, queries=20, seed=1))
    assert np.max(np.abs(adv - x)) <= 0.05 + 1e-6
    with pytest.raises(ValueError, match="hop_skip_jump"):
        attacks.pgd(clf, x, y, 0.05, steps=2)
    with pytest.raises(ValueError, match="input_shape"):
        models.from_callable(served, (32, 32), 10)


def test_hop_skip_jump_breaks_the_float_model(trained_tiny_cnn, test_set):
    x, y = test_set
    right = np.flatnonzero(np.argmax(trained_tiny_cnn.predict(x, verbose=0), -1) == y)[:6]
    x, y = x[right], y[right]

    def distances(adv):
        return np.sqrt(np.sum((adv - x) ** 2, axis=(1, 2, 3)))

    start = np.asarray(
        attacks.hop_skip_jump(trained_tiny_cnn, x, y, max_queries=140, seed=0)
    )  # no step fits
    adv = np.asarray(
        attacks.hop_skip_jump(trained_tiny_cnn, x, y, max_queries=700, steps=8, seed=0)
    )
    for images in (start, adv):
        assert images.min() >= 0.0 and images.max() <= 1.0
        assert np.all(np.argmax(trained_tiny_cnn.predict(images, verbose=0), -1) != y)
    assert np.median(distances(adv)) < 0.8 * np.median(distances(start))  # the steps move toward x
    eps = float(np.median(distances(adv)))
    bounded = np.asarray(
        attacks.hop_skip_jump(trained_tiny_cnn, x, y, eps, max_queries=700, steps=8, seed=0)
    )
    within = distances(bounded) <= eps + 1e-5
    assert np.all(within | (distances(bounded) == 0)) and within.any()


def test_hop_skip_jump_is_registered_and_checks_arguments(trained_tiny_cnn, test_set):
    assert "hop_skip_jump" in attacks.names()
    with pytest.raises(ValueError, match="max_queries=0"):
        attacks.hop_skip_jump(trained_tiny_cnn, test_set[0][:2], test_set[1][:2], max_queries=0)


def test_hop_skip_jump_on_int8_keeps_its_query_budget(int8, test_set):
    x, y = test_set
    right = np.flatnonzero(_predicted(int8, x) == y)[:4]
    x, y = x[right], y[right]
    budget = models.Budget()
    adv = np.asarray(
        attacks.hop_skip_jump(models.counted(int8, budget), x, y, max_queries=400, seed=0)
    )
    assert np.all(_predicted(int8, adv) != y) and adv.min() >= 0.0 and adv.max() <= 1.0
    forwards = budget.read()["forwards"]
    assert 150 * len(x) < forwards <= 400 * len(x)  # the start, then whole steps while they fit


def test_a_run_exports_tflite_and_the_attack_cli_queries_it(tmp_path):
    import json
    import os
    import subprocess
    import sys

    from conftest import REPO_ROOT, tiny_config
    from tfadv.experiment.run import run_training

    run = tmp_path / "run"
    summary = run_training(
        tiny_config(run, epochs=2, train_limit=320, export_tflite="float32,int8")
    )
    assert set(summary.tflite) == {"model_float32", "model_int8"}
    for entry in summary.tflite.values():
        assert (
            os.path.exists(entry["path"])
            and entry["bytes"] > 0
            and 0 <= entry["test_accuracy"] <= 1
        )
    assert (
        summary.tflite["model_float32"]["agreement"] == 1.0
        and summary.tflite["model_int8"]["agreement"] >= 0.9
    )
    stored = json.loads((run / "summary.json").read_text())["tflite"]
    assert stored["model_int8"]["bytes"] < stored["model_float32"]["bytes"]
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    base = [
        sys.executable,
        "-m",
        "tfadv.attack",
        f"--model={run}",
        "--model_name=model_int8",
        "--eps=0.03",
        "--limit=16",
        "--verbose=0",
    ]
    square = subprocess.run(
        [*base, "--attack=square", "--queries=20"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert square.returncode == 0, square.stderr[-2000:]
    assert "adversarial accuracy" in square.stdout
    pgd = subprocess.run(
        [*base, "--attack=pgd", f"--output_dir={tmp_path / 'pgd'}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in pgd.stderr.splitlines() if line.strip()]
    assert pgd.returncode == 2 and len(lines) == 1 and "square" in lines[0], pgd.stderr[-2000:]
