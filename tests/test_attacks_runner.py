"""Running attacks over data sets in batches, saving/loading adversarial sets, transfer."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfadv import attacks, data, models


@pytest.fixture(scope="module")
def setup(trained_tiny_cnn):
    return trained_tiny_cnn, data.make_synthetic(70, seed=1)


def test_arrays_image_sets_and_datasets_give_the_same_result(setup):
    model, test = setup
    x, y = test.float_images(), test.labels
    from_arrays = attacks.run_attack(model, (x, y), "pgd", 0.03, batch_size=32, seed=1, steps=3)
    from_set = attacks.run_attack(model, test, "pgd", 0.03, batch_size=32, seed=1, steps=3)
    from_dataset = attacks.run_attack(
        model, data.to_dataset(test, 32), "pgd", 0.03, seed=1, steps=3, progress=True
    )
    for other in (from_set, from_dataset):
        np.testing.assert_allclose(other.adversarial, from_arrays.adversarial, atol=1e-7)
        np.testing.assert_array_equal(
            other.adversarial_predictions, from_arrays.adversarial_predictions
        )
    np.testing.assert_array_equal(from_arrays.labels, y)
    # every image is attacked with the seed of its index: a batch's result equals a direct call
    seeds = attacks.randomness.image_seeds(1, np.arange(32, 64))
    direct = attacks.pgd(model, x[32:64], y[32:64], 0.03, steps=3, seed=seeds).numpy()
    np.testing.assert_array_equal(from_arrays.adversarial[32:64], direct)


def test_summary_counts(setup):
    model, test = setup
    result = attacks.run_attack(model, test, "fgsm", 0.03, batch_size=64)
    summary = result.summary()
    correct = result.clean_predictions == test.labels
    assert summary["n"] == 70 and summary["n_correct"] == correct.sum()
    assert summary["clean_accuracy"] == pytest.approx(correct.mean())
    adv_correct = result.adversarial_predictions == test.labels
    assert summary["adversarial_accuracy_on_correct"] == pytest.approx(adv_correct[correct].mean())
    assert summary["adversarial_accuracy"] < summary["clean_accuracy"]


@pytest.mark.parametrize("suffix", ["npz", "tfrecord"])
def test_save_and_load_round_trip(setup, tmp_path, suffix):
    model, test = setup
    result = attacks.run_attack(model, test, "pgd", 0.03, seed=0, steps=2, target="least_likely")
    path = attacks.save(result, str(tmp_path / f"adv.{suffix}"))
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"adv.{suffix}"]  # no temporary file left
    loaded = attacks.load(path)
    for key in ("adversarial", "labels", "clean_predictions", "adversarial_predictions", "targets"):
        np.testing.assert_array_equal(getattr(loaded, key), getattr(result, key))
    assert loaded.summary() == result.summary()
    assert result.summary()["target_success_rate"] == np.mean(
        result.adversarial_predictions == result.targets
    )
    np.testing.assert_array_equal(
        result.targets, attacks.logits_of(model, test.float_images()).numpy().argmin(1)
    )


def test_targeted_runs_hit_their_targets_more_than_untargeted(setup):
    model, test = setup
    targeted = attacks.run_attack(model, test, "bim", 0.06, target=2, steps=5)
    np.testing.assert_array_equal(targeted.targets, np.full(len(test), 2))
    untargeted = attacks.run_attack(model, test, "bim", 0.06, steps=5)

    def p_target(result):
        return model(result.adversarial, training=False).numpy()[:, 2].mean()

    assert p_target(targeted) > p_target(untargeted)
    assert targeted.summary()["target_success_rate"] == np.mean(
        targeted.adversarial_predictions == 2
    )


def test_transfer_from_a_surrogate(setup):
    model, test = setup
    keras.utils.set_random_seed(5)
    surrogate = models.build("tiny_cnn")
    train = data.make_synthetic(512, seed=3)
    surrogate.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    surrogate.fit(train.float_images(), train.labels, epochs=3, batch_size=64, verbose=0)
    out = attacks.transfer(surrogate, model, test, "pgd", 0.06, seed=0, steps=5)
    white_box = attacks.run_attack(model, test, "pgd", 0.06, seed=0, steps=5).summary()
    assert out["clean_accuracy"] == white_box["clean_accuracy"]  # evaluated on the target
    assert out["surrogate_adversarial_accuracy"] <= out["adversarial_accuracy"]
    assert white_box["adversarial_accuracy"] <= out["adversarial_accuracy"]


def test_runner_argument_errors(setup, tmp_path):
    model, test = setup
    with pytest.raises(ValueError, match="needs eps"):
        attacks.run_attack(model, test, "fgsm", None)
    with pytest.raises(ValueError, match=r"no option\(s\) \['target'\]"):
        attacks.run_attack(model, test, "random_sign", 0.03, target="random")
    with pytest.raises(ValueError, match="batch_size=0"):
        attacks.run_attack(model, test, "fgsm", 0.03, batch_size=0)
    with pytest.raises(ValueError, match=r"adv\.csv"):
        attacks.save(attacks.run_attack(model, test, "fgsm", 0.0), str(tmp_path / "adv.csv"))
    with pytest.raises(ValueError, match="70 images, 3 labels"):
        attacks.run_attack(model, (test.float_images(), test.labels[:3]), "fgsm", 0.03)
    empty = tf.data.Dataset.from_tensor_slices((test.float_images()[:0], test.labels[:0])).batch(8)
    with pytest.raises(ValueError, match="empty"):
        attacks.run_attack(model, empty, "fgsm", 0.03)
