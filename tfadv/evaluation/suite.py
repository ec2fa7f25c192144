"""An AutoAttack-grade evaluation: attacks in sequence, each run only on the points still unbroken.

    result = run_suite(model, images, labels, eps=8 / 255, suite="standard")
    result.robust_accuracy, result.table()

An image counts as robust only if it was classified correctly and survived every attack (the
per-image worst case). Images misclassified when clean are never attacked, and each attack sees
only the images that all earlier attacks failed on, so a strong first attack makes the rest
cheap. Suites:

    standard  APGD-CE (100 steps), APGD-T (targeted DLR, 9 targets x 100 steps), FAB-T (9 targets x
              100 steps), Square (5000 queries): the reference AutoAttack 'standard' version.
    fast      PGD-20 with the margin loss, APGD-T (3 targets x 20 steps), Square (500 queries):
              a quick look, weaker than standard.
    or a comma list of attack specs, e.g. "pgd(steps=50, loss=margin),square(queries=1000)".
"""

import dataclasses
import re

import numpy as np
import pandas as pd

from tfadv import attacks
from tfadv.attacks.options import split_specs
from tfadv.evaluation import engine
from tfadv.evaluation.store import EvaluationStore

SUITES = {
    "standard": (
        "apgd(steps=100, loss=ce)",
        "apgd_t(steps=100, n_targets=9)",
        "fab_t(steps=100, n_targets=9)",
        "square(queries=5000)",
    ),
    "fast": (
        "pgd(steps=20, loss=margin, early_stop=True)",
        "apgd_t(steps=20, n_targets=3)",
        "square(queries=500, rescale_schedule=True)",
    ),
}
CLEAN_WRONG, ROBUST = (
    engine.CLEAN_WRONG,
    engine.ROBUST,
)  # SuiteResult.broken_by besides the breaking attack


def suite_attacks(suite="standard", norm="inf") -> list:
    """The suite's attacks as `tfadv.attacks.Attack` values, each at `norm` when it takes one.

    Args:
        suite: "standard", "fast", a comma list of attack specs, or a list of Attacks/specs.
        norm: "inf" or "2" (for attacks whose spec does not set it).
    """
    if isinstance(suite, str):
        specs = SUITES.get(suite) or split_specs(suite)
        if not specs or (suite not in SUITES and not re.match(r"^\s*[A-Za-z_]", suite)):
            raise ValueError(
                f"Expected suite to be one of {tuple(SUITES)} or a comma list of attacks. "
                f"Received: suite={suite!r}"
            )
    else:
        specs = list(suite)
    if not specs:
        raise ValueError(f"Expected at least one attack in the suite. Received: suite={suite!r}")
    out = []
    for spec in specs:
        attack = attacks.get(spec)
        if "norm" in attack.info.parameters and "norm" not in attack.options:
            attack = attack.replace(norm=norm)
        if attack.name in ("patch", "one_pixel"):
            raise ValueError(
                "Expected eps-ball attacks in a suite; "
                f"{attack.name} has another threat model. Received: {spec!r}"
            )
        out.append(attack)
    return out


@dataclasses.dataclass
class SuiteResult:
    """Per-image outcome of a suite at one eps.

    Attributes:
        eps: the budget (pixel scale).
        attacks: the attacks' descriptions, in the order they ran.
        labels, clean_predictions, predictions: int (N,); `predictions` are the worst-case ones.
        adversarial: float32 (N, H, W, C): the breaking image of each broken example, else the clean
            one.
        broken_by: int (N,): -2 misclassified when clean, -1 robust, k: broken by attack k.
        ran_on: images each attack was run on; seconds: time each attack took.
        forwards, gradients: model forward passes and input gradients each attack spent
            (images x passes; a gradient includes its forward pass).
    """

    eps: float
    attacks: list
    labels: np.ndarray
    clean_predictions: np.ndarray
    predictions: np.ndarray
    adversarial: np.ndarray
    broken_by: np.ndarray
    ran_on: list
    seconds: list
    forwards: list = dataclasses.field(default_factory=list)
    gradients: list = dataclasses.field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.labels)

    @property
    def clean_accuracy(self) -> float:
        return float(np.mean(self.broken_by != CLEAN_WRONG))

    @property
    def robust(self) -> np.ndarray:
        return self.broken_by == ROBUST

    @property
    def robust_accuracy(self) -> float:
        """Robust accuracy over all images (worst case over the suite)."""
        return float(np.mean(self.robust))

    @property
    def robust_accuracy_on_correct(self) -> float:
        """Robust accuracy over the images classified correctly when clean (NaN if none)."""
        correct = self.broken_by != CLEAN_WRONG
        return float(np.mean(self.robust[correct])) if correct.any() else float("nan")

    def table(self) -> pd.DataFrame:
        """One row per attack: images it ran on, images it broke, robust accuracy after it (all
        images and clean-correct ones; cumulative), seconds, and (when counted) the forward passes
        and gradients it spent."""
        n_correct = int(np.sum(self.broken_by != CLEAN_WRONG))
        rows, remaining = [], n_correct
        for k, (name, ran, seconds) in enumerate(
            zip(self.attacks, self.ran_on, self.seconds, strict=True)
        ):
            broke = int(np.sum(self.broken_by == k))
            remaining -= broke
            row = {
                "attack": name,
                "ran_on": ran,
                "broke": broke,
                "robust_accuracy": remaining / self.n,
                "robust_accuracy_on_correct": remaining / n_correct if n_correct else float("nan"),
                "seconds": seconds,
            }
            if self.forwards:
                row.update(forwards=self.forwards[k], gradients=self.gradients[k])
            rows.append(row)
        return pd.DataFrame(rows)

    def robustbench(self, norm: str, model: str = "", dataset: str = "", suite: str = "") -> dict:
        """A RobustBench-style entry (JSON-able): clean_acc, autoattack_acc (the suite's robust
        accuracy: AutoAttack's standard version for suite "standard"), eps, norm ("Linf" / "L2"),
        n_examples and the forward passes and gradients spent."""
        return {
            "model": model,
            "dataset": dataset,
            "threat_model": attacks.norms.get(norm).threat_model,
            "eps": self.eps,
            "norm": norm,
            "n_examples": self.n,
            "clean_acc": self.clean_accuracy,
            "autoattack_acc": self.robust_accuracy,
            "suite": suite or ", ".join(self.attacks),
            "forward_passes": int(sum(self.forwards)),
            "gradients": int(sum(self.gradients)),
        }

    def cost(self, images: int | None = None) -> dict:
        """Passes spent in all (forwards, gradients, seconds) and, for `images` images, the same
        projected from the rate measured here (per image evaluated)."""
        spent = {
            "forwards": int(sum(self.forwards)),
            "gradients": int(sum(self.gradients)),
            "seconds": float(sum(self.seconds)),
            "images": self.n,
        }
        if images is not None:
            scale = images / self.n
            spent["projected"] = {
                key: spent[key] * scale for key in ("forwards", "gradients", "seconds")
            }
            spent["projected"]["images"] = images
        return spent

    def summary(self) -> dict:
        return {
            "eps": self.eps,
            "n": self.n,
            "clean_accuracy": self.clean_accuracy,
            "robust_accuracy": self.robust_accuracy,
            "robust_accuracy_on_correct": self.robust_accuracy_on_correct,
            "attacks": self.table().to_dict(orient="records"),
        }


def run_suite(
    model,
    images,
    labels,
    eps,
    suite="standard",
    *,
    norm="inf",
    batch_size: int = 256,
    seed: int = 0,
    progress: bool = False,
    store=None,
    chunk_size: int = engine.CHUNK_SIZE,
    strategy=None,
    worker=(0, 1),
) -> SuiteResult | None:
    """Runs the suite's attacks in sequence, each on the images still unbroken, chunk by chunk.

    Args:
        model: any classifier `tfadv.models.as_classifier` accepts (for a model that is random at
            inference, pass `tfadv.models.expectation(model, samples)`).
        images: float32 (N, H, W, C) in [0, 1]; labels: int (N,).
        eps: budget, pixel scale (L-inf: in [0, 1]; L2: the radius).
        suite: see `suite_attacks`.
        norm: "inf" or "2".
        batch_size: images per attack call.
        seed: attack k draws from (seed + k, image index): an image's outcome does not depend on
            the batch, chunk, device or worker.
        progress: one progress line per chunk and attack.
        store: a folder (or `EvaluationStore`) keeping every (chunk, attack) outcome: a killed run
            resumes, appended attacks run on the survivors only, more images add chunks; None
            keeps the outcomes in memory.
        chunk_size: images per work unit.
        strategy: a tf.distribute strategy whose local replicas share each attack call.
        worker: (index, count) of this process among the workers sharing `store`.

    Returns:
        The SuiteResult, or None for a worker whose store still misses other workers' chunks.
    """
    attack_list = suite_attacks(suite, norm)
    attacks.norms.get(norm).check_eps(eps)
    images = np.asarray(images, np.float32)
    labels = np.asarray(labels, np.int64)
    if len(images) == 0:
        raise ValueError("Expected at least one image to evaluate. Received: 0 images")
    if not isinstance(store, EvaluationStore):
        store = EvaluationStore(store)
    out = engine.run_chunked(
        model,
        images,
        labels,
        eps,
        attack_list,
        store=store,
        norm=norm,
        batch_size=batch_size,
        seed=seed,
        chunk_size=chunk_size,
        strategy=strategy,
        worker=worker,
        progress=progress,
    )
    if out is None:
        return None
    return SuiteResult(
        float(eps),
        [a.describe() for a in attack_list],
        labels,
        out["clean_predictions"],
        out["predictions"],
        out["adversarial"],
        out["broken_by"],
        out["ran_on"],
        out["seconds"],
        out["forwards"],
        out["gradients"],
    )
