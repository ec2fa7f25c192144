"""Running an attack over a whole data set in batches, and transfer (black-box) attacks.

result = run_attack(model, (images, labels), "pgd", eps=8 / 255, seed=0, progress=True)
result.summary()            # clean / adversarial accuracy
tfadv.attacks.save(result, "adv.npz")
"""

import dataclasses

import keras
import numpy as np

from tfadv.attacks import checks, core, randomness, spec
from tfadv.data.batching import batches, map_batches
from tfadv.models.adapter import logits_of

NPZ_KEYS = (
    "adversarial",
    "labels",
    "clean_predictions",
    "adversarial_predictions",
)  # + "targets" if targeted


@dataclasses.dataclass
class AttackResult:
    """Adversarial images (float32 in [0, 1]) with labels and the evaluated model's predictions."""

    adversarial: np.ndarray
    labels: np.ndarray
    clean_predictions: np.ndarray
    adversarial_predictions: np.ndarray
    targets: np.ndarray | None = None

    def __len__(self):
        return len(self.labels)

    def summary(self) -> dict:
        """clean_accuracy, adversarial_accuracy (all images), adversarial_accuracy_on_correct
        (images classified correctly when clean; NaN if there are none), n, n_correct, and
        for targeted runs target_success_rate (adversarial prediction == target)."""
        correct = self.clean_predictions == self.labels
        adv_correct = self.adversarial_predictions == self.labels
        n, n_correct = len(self.labels), int(correct.sum())
        summary = {
            "clean_accuracy": float(correct.mean()),
            "adversarial_accuracy": float(adv_correct.mean()),
            "adversarial_accuracy_on_correct": float(adv_correct[correct].mean())
            if n_correct
            else float("nan"),
            "n": n,
            "n_correct": n_correct,
        }
        if self.targets is not None:
            summary["target_success_rate"] = float(
                (self.adversarial_predictions == self.targets).mean()
            )
        return summary


def predict_classes(model, images, batch_size: int = 256) -> np.ndarray:
    """Top-1 classes (argmax of the logits, inference mode), int64 (N,)."""
    return map_batches(lambda x: logits_of(model, x), images, batch_size=batch_size).argmax(axis=-1)


def _checked_indices(indices, size):
    """`indices` as int64 NumPy (N,), checked against the data set's size when known."""
    if indices is None:
        return None
    values = np.asarray(indices)
    if values.ndim != 1 or not (np.issubdtype(values.dtype, np.integer) or values.size == 0):
        raise ValueError(
            "Expected indices: integers of shape (N,), one per image. "
            f"Received: indices={indices!r}"
        )
    if size is not None and len(values) != size:
        raise ValueError(
            f"Expected one index per image ({size}). Received: indices of length {len(values)}"
        )
    return values.astype(np.int64)


def _attacked_batches(model, data, attack, eps, batch_size, seed, progress, indices=None):
    """Yields (images, labels, adversarial images, targets or None) per batch of `data`; each
    image draws from the seed of its index (`indices`, default its place in `data`)."""
    if seed is not None and not attack.takes_seed:
        raise ValueError(f"Attack {attack.name!r} takes no seed. Received: seed={seed!r}")
    iterator, size = batches(data, batch_size)
    indices = _checked_indices(indices, size)
    base = checks.to_seed(seed) if seed is not None else None
    bar = keras.utils.Progbar(size, unit_name="image") if progress else None
    done = 0
    for x, y in iterator:
        n = len(y)
        where = np.arange(done, done + n) if indices is None else indices[done : done + n]
        if len(where) != n:
            raise ValueError(
                f"Expected one index per image. Received: {len(indices)} indices for more images"
            )
        seeds = randomness.image_seeds(base, where) if base is not None else None
        overrides = {"seed": seeds} if seeds is not None else {}
        chosen = None
        if attack.target is not None:
            chosen = core.choose_targets(model, x, y, attack.target, seed=seeds)
            overrides["target"] = chosen
        adv = np.asarray(attack(model, x, y, eps, **overrides), np.float32)
        yield x, y, adv, chosen
        done += len(adv)
        if bar is not None:
            bar.update(done)


def adversarial_images(
    model,
    images,
    labels,
    attack,
    eps=None,
    *,
    batch_size=256,
    seed=None,
    indices=None,
    progress=False,
    **options,
) -> np.ndarray:
    """The adversarial images (float32 NumPy) of `attack` on every batch; image k draws from
    the seed of (seed, indices[k]) (default indices: 0, 1, ...), whatever its batch."""
    attack = spec.get(attack, **options)
    if len(images) == 0:
        _checked_indices(indices, 0)
        return np.zeros(np.shape(images), np.float32)
    batches_ = _attacked_batches(
        model, (images, labels), attack, eps, batch_size, seed, progress, indices
    )
    return np.concatenate([adv for _, _, adv, _ in batches_])


def run_attack(
    model,
    data,
    attack,
    eps=None,
    *,
    batch_size: int = 256,
    seed=None,
    indices=None,
    progress: bool = False,
    eval_model=None,
    **options,
) -> AttackResult:
    """Attacks every batch of `data` and collects the adversarial set.

    Args:
        model: the model the attack sees (the surrogate in a transfer attack).
        data: (images, labels) arrays, an ImageSet or a tf.data dataset of (images, labels).
        attack: an `Attack`, a name, a spec string ('pgd(steps=10)') or an attack function.
        eps: budget in pixel scale (None for the patch attack).
        batch_size: images per attack call (for arrays and unbatched datasets).
        seed: None, an int or a pair such as (seed, epoch): every random draw for image k
            (random starts, restarts, Square's squares, random targets) comes from the
            per-image seed hashed from (seed, indices[k]) (`tfadv.attacks.randomness`), so an
            image's result is the same at any batch size, image order or subset. Only for
            attacks that take a seed.
        indices: int (N,), each image's index in the whole data set (default 0, 1, ...,
            its place in `data`): pass them when attacking a subset or a reordering, so each
            image keeps its draws.
        progress: show a keras Progbar.
        eval_model: the model whose predictions are recorded (default `model`).
        **options: added to the attack's options (steps, alpha, norm, loss, target, ...).
            With a `target` strategy ("least_likely", "random", ...) the targets are chosen
            on `model` and kept in the result.
    """
    attack = spec.get(attack, **options)
    eval_model = model if eval_model is None else eval_model
    parts = {key: [] for key in (*NPZ_KEYS, "targets")}
    for x, y, adv, chosen in _attacked_batches(
        model, data, attack, eps, batch_size, seed, progress, indices
    ):
        parts["adversarial"].append(adv)
        parts["labels"].append(np.asarray(y, np.int64))
        parts["clean_predictions"].append(predict_classes(eval_model, x))
        parts["adversarial_predictions"].append(predict_classes(eval_model, adv))
        if chosen is not None:
            parts["targets"].append(np.asarray(chosen))
    if not parts["labels"]:
        raise ValueError("Expected at least one image to attack. Received: an empty data set")
    return AttackResult(
        **{key: np.concatenate(values) if values else None for key, values in parts.items()}
    )


def transfer(surrogate, target, data, attack, eps=None, **options) -> dict:
    """Black-box transfer: examples generated on `surrogate`, evaluated on `target`.

    Returns the target's summary (see `AttackResult.summary`) plus
    `surrogate_adversarial_accuracy` (white-box accuracy of the surrogate on the same examples).
    """
    result = run_attack(surrogate, data, attack, eps, eval_model=target, **options)
    on_surrogate = predict_classes(surrogate, result.adversarial)
    return {
        **result.summary(),
        "surrogate_adversarial_accuracy": float((on_surrogate == result.labels).mean()),
    }
