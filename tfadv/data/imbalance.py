"""Class imbalance: under-sample or over-sample one class of a training set.

Specs: "under:CLASS:FRACTION" keeps round(n * FRACTION) of the class's n images
(0 < FRACTION <= 1); "over:CLASS:FACTOR" brings it to round(n * FACTOR) images
(FACTOR >= 1) by repeating its images. CLASS is an index or a class name.
"""

import dataclasses

import numpy as np

from tfadv.data.types import ImageSet


@dataclasses.dataclass(frozen=True)
class Imbalance:
    mode: str  # "under" or "over"
    class_index: int
    amount: float  # fraction for "under", factor for "over"

    def target_count(self, count: int) -> int:
        return int(round(count * self.amount))


def parse_imbalance(spec: str, class_names) -> Imbalance | None:
    """Parses an imbalance spec; "" or "none" mean no imbalance."""
    if not spec or spec == "none":
        return None
    parts = spec.split(":")
    if len(parts) != 3 or parts[0] not in ("under", "over"):
        raise ValueError(
            "Expected imbalance under:CLASS:FRACTION or over:CLASS:FACTOR. Received: "
            f"imbalance={spec!r}"
        )
    mode, cls, amount_text = parts
    if cls in class_names:
        class_index = list(class_names).index(cls)
    else:
        try:
            class_index = int(cls)
        except ValueError:
            raise ValueError(
                f"Expected a class name or index, not {cls!r}. Received: imbalance={spec!r}"
            ) from None
    if not 0 <= class_index < len(class_names):
        raise ValueError(
            f"Expected a class in 0-{len(class_names) - 1}, not {class_index}. "
            f"Received: imbalance={spec!r}"
        )
    try:
        amount = float(amount_text)
    except ValueError:
        raise ValueError(
            f"Expected a number, not {amount_text!r}. Received: imbalance={spec!r}"
        ) from None
    if mode == "under" and not 0 < amount <= 1:
        raise ValueError(f"Expected FRACTION in (0, 1]. Received: imbalance={spec!r}")
    if mode == "over" and not amount >= 1:
        raise ValueError(f"Expected FACTOR >= 1. Received: imbalance={spec!r}")
    return Imbalance(mode, class_index, amount)


def apply_imbalance(data: ImageSet, imbalance: Imbalance | None, seed: int = 0) -> ImageSet:
    """Returns a new ImageSet in which one class has exactly the target count."""
    if imbalance is None:
        return data
    rng = np.random.default_rng(seed)
    in_class = np.flatnonzero(data.labels == imbalance.class_index)
    others = np.flatnonzero(data.labels != imbalance.class_index)
    target = imbalance.target_count(len(in_class))
    if imbalance.mode == "under":
        kept = rng.permutation(in_class)[:target]
    else:
        repeats, remainder = divmod(target, len(in_class)) if len(in_class) else (0, 0)
        kept = np.concatenate([np.tile(in_class, repeats), rng.permutation(in_class)[:remainder]])
    order = np.sort(np.concatenate([others, kept]), kind="stable")
    return data.take(order)
