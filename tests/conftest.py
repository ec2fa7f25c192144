"""Shared test fixtures: quiet TensorFlow, the shared CIFAR-10 mini archive, tiny run configs."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

# before any test module loads TensorFlow: tfadv's oneDNN default applies
import tfadv  # noqa: E402, F401

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MINI_ARCHIVE = os.path.join(
    os.path.dirname(REPO_ROOT), "shared", "data", "cifar-10-mini-binary.tar.gz"
)


@pytest.fixture
def mini_archive():
    """Path to the shared real CIFAR-10 mini archive; skips when it is absent."""
    if not os.path.exists(MINI_ARCHIVE):
        pytest.skip(f"shared CIFAR-10 mini archive not found at {MINI_ARCHIVE}")
    return MINI_ARCHIVE


def tiny_config(output_dir, **overrides):
    """A TrainConfig that trains tiny_cnn on a little synthetic data in seconds."""
    from tfadv.experiment.config import TrainConfig

    fields = dict(
        dataset="synthetic",
        model="tiny_cnn",
        epochs=1,
        batch_size=32,
        train_limit=160,
        test_limit=64,
        output_dir=str(output_dir),
        verbose=0,
    )
    fields.update(overrides)
    return TrainConfig(**fields)


@pytest.fixture(scope="session")
def trained_tiny_cnn():
    """tiny_cnn trained 4 epochs on 1,024 synthetic images, shared by the attack tests
    (don't modify it)."""
    import keras

    from tfadv import data, models

    keras.utils.set_random_seed(0)
    model = models.build("tiny_cnn")
    train = data.make_synthetic(1024, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(train.float_images(), train.labels, epochs=4, batch_size=64, verbose=0)
    return model
