"""A guard against catastrophic overfitting in fast adversarial training (Wong et al. 2020).

    guard = OverfittingGuard(held_images, held_labels, eps=0.03, drop=0.2)
    trainer.fit(train_ds, epochs=15, callbacks=[guard])
    guard.stopped_epoch, guard.restored_epoch, guard.history

Training on single-step examples (FGSM, FGSM from a random start) can collapse within one
epoch: accuracy against the training attack keeps rising while accuracy against PGD falls to
about zero ("catastrophic overfitting"). At the end of every epoch the guard attacks a fixed
batch of training images with PGD (10 steps by default, the same random start every epoch) at
the full eps and compares the robust accuracy with the best epoch so far. When it fell by more
than `drop`, the guard puts back the weights the classifier had at the end of the previous
epoch and stops training.

Its state (`get_state` / `set_state`: history, best, best epoch, the previous epoch's weights,
where it stopped) goes into the run's per-epoch backup (tfadv.experiment.resume.Backup), so a
resumed run checks against the same best epoch and stops where the uninterrupted run stops.
"""

import math
import numbers
import time

import keras
import numpy as np

from tfadv import attacks

DEFAULT_ATTACK = "pgd(steps=10)"


class OverfittingGuard(keras.callbacks.Callback):
    """Stops training and restores the previous epoch's weights when robust accuracy collapses.

    Adds "<log_prefix>_robust_accuracy" (and "<log_prefix>_stopped" = 1 at the stop) to the epoch
    logs; they reach TensorBoard when the guard comes before Keras' TensorBoard callback.

    Args:
        images: float32 (N, H, W, C) in [0, 1]: the held batch (training images, fixed).
        labels: int (N,).
        eps: budget of the check, pixel scale (a float or a scalar variable read each epoch).
        drop: stop when robust accuracy is more than `drop` (in (0, 1]) below the best epoch's.
        attack: the check's attack (an `Attack`, a name or a spec); PGD-10 by default.
        classifier: the model checked and restored; default: the fitted model's `classifier`
            (an `AdversarialTrainer`'s) or the fitted model itself.
        batch_size: images per attack call.
        seed: seeds the attack (the same random start every epoch), for attacks that take one.
        log_prefix: prefix of the keys added to the epoch logs.

    Attributes (after fit): history (robust accuracy per epoch), best, best_epoch,
    stopped_epoch and restored_epoch (None when training ran to the end), seconds (time spent
    checking).

    A fit starts the check afresh, unless `set_state` was called since the last fit began: then
    it continues from that state (how a resumed run continues the interrupted one).
    """

    def __init__(
        self,
        images,
        labels,
        eps,
        drop=0.2,
        attack=DEFAULT_ATTACK,
        classifier=None,
        batch_size=256,
        seed=0,
        log_prefix="guard",
    ):
        super().__init__()
        images = np.asarray(images, np.float32)
        labels = np.asarray(labels)
        if images.ndim != 4 or len(images) == 0:
            raise ValueError(
                "Expected a non-empty batch of images (N, H, W, C). Received: images of shape "
                f"{images.shape}"
            )
        if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"Expected int labels of shape ({len(images)},). Received: labels {labels.dtype} "
                f"{labels.shape}"
            )
        if isinstance(drop, bool) or not isinstance(drop, numbers.Real) or not 0 < drop <= 1:
            raise ValueError(f"Expected drop in (0, 1]. Received: drop={drop!r}")
        if isinstance(eps, numbers.Real):
            attacks.checks.check_eps(eps, at_most=1.0)
        self.images, self.labels = images, labels.astype(np.int64)
        self.eps = eps
        self.drop = float(drop)
        self.attack = attacks.get(attack)
        self.classifier = classifier
        self.batch_size = int(batch_size)
        self.seed = seed
        self.log_prefix = log_prefix
        self._reset()
        self._continue = False  # set_state was called: the next fit continues from that state

    def _reset(self):
        self.history, self.best, self.best_epoch = [], -math.inf, None
        self.stopped_epoch = self.restored_epoch = None
        self.seconds = 0.0
        self._previous = None

    def _target(self):
        if self.classifier is not None:
            return self.classifier
        return getattr(self.model, "classifier", self.model)

    def robust_accuracy(self) -> float:
        """Accuracy of the checked classifier on the held batch under the check's attack."""
        eps = float(keras.ops.convert_to_numpy(self.eps))
        seed = self.seed if (self.seed is not None and self.attack.takes_seed) else None
        result = attacks.run_attack(
            self._target(),
            (self.images, self.labels),
            self.attack,
            eps,
            batch_size=self.batch_size,
            seed=seed,
        )
        return float(np.mean(result.adversarial_predictions == self.labels))

    def get_state(self) -> dict:
        """The check's state after the last finished epoch: JSON-able values and, under
        "previous_weights", the checked classifier's weights to restore (a list of arrays)."""
        return {
            "history": list(self.history),
            "best": None if self.best_epoch is None else self.best,
            "best_epoch": self.best_epoch,
            "stopped_epoch": self.stopped_epoch,
            "restored_epoch": self.restored_epoch,
            "seconds": self.seconds,
            "previous_weights": None
            if self._previous is None
            else [np.asarray(w) for w in self._previous],
        }

    def set_state(self, state: dict) -> None:
        """Puts back a `get_state()`; the next fit continues from it instead of starting afresh."""
        missing = {
            "history",
            "best",
            "best_epoch",
            "stopped_epoch",
            "restored_epoch",
            "previous_weights",
        } - set(state)
        if missing:
            raise ValueError(
                "Expected a state from OverfittingGuard.get_state(). Received: state without "
                f"{sorted(missing)}"
            )
        self.history = [float(a) for a in state["history"]]
        self.best_epoch = state["best_epoch"]
        self.best = -math.inf if self.best_epoch is None else float(state["best"])
        self.stopped_epoch, self.restored_epoch = state["stopped_epoch"], state["restored_epoch"]
        self.seconds = float(state.get("seconds", 0.0))
        previous = state["previous_weights"]
        self._previous = None if previous is None else [np.asarray(w) for w in previous]
        self._continue = True

    def on_train_begin(self, logs=None):
        if self._continue:
            self._continue = False
            if self._previous is None:
                self._previous = self._target().get_weights()
            return
        self._reset()
        self._previous = self._target().get_weights()  # what "the previous epoch" is before epoch 0

    def on_epoch_end(self, epoch, logs=None):
        start = time.time()
        accuracy = self.robust_accuracy()
        self.history.append(accuracy)
        if logs is not None:
            logs[f"{self.log_prefix}_robust_accuracy"] = accuracy
        if accuracy < self.best - self.drop:
            self._target().set_weights(self._previous)
            self.model.stop_training = True
            self.stopped_epoch, self.restored_epoch = epoch, epoch - 1
            if logs is not None:
                logs[f"{self.log_prefix}_stopped"] = 1.0
            print(
                f"[{self.log_prefix}] epoch {epoch + 1}: robust accuracy {accuracy:.3f}, more than "
                f"{self.drop:.2f} below the best "
                f"{self.best:.3f} (epoch {self.best_epoch + 1}): catastrophic overfitting; "
                f"stopped, weights of epoch {epoch} restored",
                flush=True,
            )
        else:
            if accuracy > self.best:
                self.best, self.best_epoch = accuracy, epoch
            self._previous = self._target().get_weights()
        self.seconds += time.time() - start

    def summary(self) -> dict:
        """JSON-able: the check, its result per epoch, where training stopped."""
        return {
            "attack": self.attack.describe(),
            "images": len(self.labels),
            "drop": self.drop,
            "history": list(self.history),
            "best": None if self.best_epoch is None else self.best,
            "best_epoch": self.best_epoch,
            "stopped_epoch": self.stopped_epoch,
            "restored_epoch": self.restored_epoch,
            "seconds": self.seconds,
        }
