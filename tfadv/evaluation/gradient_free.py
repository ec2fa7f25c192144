"""The gradient-free part of the evaluation, for a model queried without gradients (a TFLite
export, a served callable), with the attacks that need gradients run on its float model.

    result = evaluate_gradient_free(int8, x, y, eps=8 / 255, float_model=keras_model)
    result.table(), result.worst_case, result.checklist()

Attacks, each run on every image the model classifies correctly (so each has its own robust
accuracy), every random draw from (seed, image index):

    square         Square (score-based, margin loss)
    hop_skip_jump  HopSkipJump (label-only: reads only the predicted class)
    transfer       PGD-20 adversarial images of the float model, classified by this model
    patch          an adversarial patch (`patch_size` pixels square) trained on the float model
                   and pasted at seeded random places on the images this model classifies

The worst case per image is over the eps-ball attacks (square, hop_skip_jump, transfer); the
patch is another threat model (it replaces pixels, no eps) and is reported beside it. The
gradient checks of the masking checklist are n/a, each with its reason.
"""

import dataclasses
import json
import os
import time

import numpy as np
import pandas as pd

from tfadv import attacks, models
from tfadv.evaluation import checklist
from tfadv.runtime.files import atomic_file, write_json, write_text

BALL_ATTACKS = ("square", "hop_skip_jump", "transfer")  # the worst case is over these
ATTACKS = (*BALL_ATTACKS, "patch")
SETTINGS = {  # per suite: the attacks on the deployed model, the transfer attack, the patch
    "fast": {
        "square": "square(queries=500, rescale_schedule=True)",
        "hop_skip_jump": "hop_skip_jump(max_queries=1000)",
        "transfer": "pgd(steps=20)",
        "patch_steps": 200,
    },
    "standard": {
        "square": "square(queries=5000)",
        "hop_skip_jump": "hop_skip_jump(max_queries=5000)",
        "transfer": "pgd(steps=20)",
        "patch_steps": 500,
    },
}
PATCH_SIZE = 8  # pixels (side of the square patch)
PATCH_SALT = 7  # the patch's seed: (seed, PATCH_SALT)
GRADIENT_CHECKS = {  # key: (name, why it does not apply to a model without gradients)
    "a": (
        "iterative at least as strong as single-step",
        "no gradients: FGSM and PGD cannot run on this "
        "model (PGD-20 transfers from the float model)",
    ),
    "b": (
        "white-box at least as strong as transfer",
        "no white-box attack to compare with: transfer from the float model is in the worst case",
    ),
    "c": (
        "white-box at least as strong as Square",
        "no white-box gradient attack to compare with: Square is in the worst case",
    ),
    "d": (
        "accuracy falls to chance or below as eps grows",
        "the eps sweep runs FGSM and PGD, which need gradients",
    ),
    "e": (
        "random-sign noise weaker than the gradient attack",
        "there is no gradient attack on this model to compare noise with",
    ),
    "f": (
        "under 5.0% of input gradients zero or non-finite",
        "the model returns no input gradients to inspect",
    ),
    "g": (
        "margin loss on logits no stronger than cross-entropy on the outputs",
        "the comparison runs gradient attacks with the two losses",
    ),
    "h": (
        "doubling iterations and restarts moves robust accuracy by under 1 point",
        "the doubled budget re-runs the suite's gradient attacks",
    ),
}
RANDOMNESS_CHECK = "a random model is attacked with EOT and scored over many draws"


def settings(suite="fast") -> dict:
    """The attack specs of `suite`: "fast", "standard", or a dict overriding some of fast's
    (keys of `SETTINGS["fast"]`); another suite is a ValueError naming the gradient-free attacks."""
    if isinstance(suite, dict):
        unknown = sorted(set(suite) - set(SETTINGS["fast"]))
        if unknown:
            raise ValueError(
                f"Expected keys of {sorted(SETTINGS['fast'])}. Received: suite keys {unknown}"
            )
        return {**SETTINGS["fast"], **suite}
    if suite not in SETTINGS:
        raise ValueError(
            "Expected suite 'fast' or 'standard' for a model without gradients (its attacks "
            f"are {', '.join(models.callable.GRADIENT_FREE_ATTACKS)}, transfer and patch). "
            f"Received: suite={suite!r}"
        )
    return dict(SETTINGS[suite])


@dataclasses.dataclass
class GradientFreeResult:
    """Per-image outcome of the gradient-free attacks on one model.

    Attributes:
        name: the model's name.
        eps, norm: the budget (pixel scale) and its norm.
        labels, clean_predictions: int (N,).
        predictions: {attack: int (N,)}: the model's class of each attacked image (clean-wrong
            images keep their clean class).
        attacks: {attack: its description}; seconds: {attack: seconds it took}.
        deterministic: outputs identical between two calls.
    """

    name: str
    eps: float
    norm: str
    labels: np.ndarray
    clean_predictions: np.ndarray
    predictions: dict
    attacks: dict
    seconds: dict
    deterministic: bool = True

    @property
    def clean_correct(self) -> np.ndarray:
        return self.clean_predictions == self.labels

    def robust(self, attack: str) -> np.ndarray:
        """bool (N,): correct when clean and under `attack`."""
        return self.clean_correct & (self.predictions[attack] == self.labels)

    @property
    def worst_case(self) -> np.ndarray:
        """bool (N,): correct when clean and under every eps-ball attack that ran."""
        robust = self.clean_correct.copy()
        for attack in BALL_ATTACKS:
            if attack in self.predictions:
                robust &= self.robust(attack)
        return robust

    def verdicts(self) -> np.ndarray:
        """str (N,): "wrong" (misclassified clean), "broken" (by an eps-ball attack) or "robust"."""
        return np.select(
            [~self.clean_correct, ~self.worst_case], ["wrong", "broken"], "robust"
        ).astype(object)

    def broken_by(self) -> np.ndarray:
        """str (N,): the eps-ball attacks that broke each image, joined by "+" ("" if none)."""
        ran = [a for a in BALL_ATTACKS if a in self.predictions]
        broke = {a: self.clean_correct & ~self.robust(a) for a in ran}
        return np.array(
            ["+".join(a for a in ran if broke[a][i]) for i in range(len(self.labels))], object
        )

    def row(self) -> dict:
        """Clean accuracy, robust accuracy per attack, the worst case."""
        row = {"clean_accuracy": float(self.clean_correct.mean())}
        for attack in ATTACKS:
            if attack in self.predictions:
                row[attack] = float(self.robust(attack).mean())
        row["worst_case"] = float(self.worst_case.mean())
        return row

    def table(self) -> pd.DataFrame:
        """One row per attack: description, robust accuracy, seconds."""
        rows = [
            {
                "attack": attack,
                "spec": self.attacks[attack],
                "robust_accuracy": float(self.robust(attack).mean()),
                "seconds": round(self.seconds[attack], 1),
            }
            for attack in ATTACKS
            if attack in self.predictions
        ]
        rows.append(
            {
                "attack": "worst_case",
                "spec": "per image, over "
                + ", ".join(a for a in BALL_ATTACKS if a in self.predictions),
                "robust_accuracy": float(self.worst_case.mean()),
                "seconds": round(sum(self.seconds.values()), 1),
            }
        )
        return pd.DataFrame(rows)

    def checklist(self) -> list:
        """The masking checklist of a model without gradients: every gradient check n/a with
        its reason; (i) from two calls on the same images."""
        checks = [
            checklist.Check(key, name, None, why) for key, (name, why) in GRADIENT_CHECKS.items()
        ]
        why = (
            "outputs are identical between calls: deterministic"
            if self.deterministic
            else (
                "outputs differ between calls, and EOT attacks need gradients: "
                "scores are single draws"
            )
        )
        checks.append(checklist.Check("i", RANDOMNESS_CHECK, None, why))
        return checks


def transfer_images(
    float_model, images, labels, eps, *, spec="pgd(steps=20)", norm="inf", seed=0, batch_size=256
):
    """float32 (N, H, W, C): `spec`'s adversarial images of the float model (per-image seeds)."""
    attack = attacks.get(spec)
    if "norm" in attack.info.parameters and "norm" not in attack.options:
        attack = attack.replace(norm=norm)
    return attacks.adversarial_images(
        float_model, images, labels, attack, eps, batch_size=batch_size, seed=seed
    )


def patched_images(
    float_model, images, labels, *, size=PATCH_SIZE, steps=200, seed=0
) -> np.ndarray:
    """float32 (N, H, W, C): an untargeted patch trained on the float model over `images`,
    pasted at seeded random places (the same places for every model classifying them)."""
    result = attacks.patch(
        float_model, images, labels, size=size, steps=steps, seed=(seed, PATCH_SALT)
    )
    return np.asarray(result.images, np.float32)


def _attacked(model, images, labels, correct, attack, eps, seed, batch_size, progress):
    """The model's classes of `attack`'s images of the clean-correct images (others: clean)."""
    where = np.flatnonzero(correct)
    if len(where) == 0:
        return np.zeros((0,), np.int64)
    adv = attacks.adversarial_images(
        model,
        images[where],
        labels[where],
        attack,
        eps,
        batch_size=batch_size,
        seed=seed,
        indices=where,
        progress=progress,
    )
    return attacks.predict_classes(model, adv)


def evaluate_gradient_free(
    model,
    images,
    labels,
    eps,
    *,
    name=None,
    suite="fast",
    norm="inf",
    transfer=None,
    patched=None,
    seed=0,
    batch_size=256,
    progress=False,
) -> GradientFreeResult:
    """Runs the gradient-free attacks on `model` (see the module docstring).

    Args:
        model: any classifier `tfadv.models.as_classifier` accepts (gradients are not used).
        images: float32 (N, H, W, C) in [0, 1]; labels: int (N,).
        eps: the budget, pixel scale (L-inf: in [0, 1]).
        suite: "fast" or "standard" (see `SETTINGS`).
        norm: "inf" or "2".
        transfer: float32 (N, H, W, C) adversarial images of the float model (`transfer_images`),
            or None (no transfer attack).
        patched: float32 (N, H, W, C) the images with the float model's patch (`patched_images`),
            or None.
        seed: every random draw of image k comes from (seed, k).

    Returns:
        GradientFreeResult.
    """
    specs = settings(suite)
    clf = models.as_classifier(model)
    x = np.asarray(images, np.float32)
    y = np.asarray(labels, np.int64)
    for key, given in (("transfer", transfer), ("patched", patched)):
        if given is not None and np.shape(given) != x.shape:
            raise ValueError(
                f"Expected {key} images of shape {x.shape}. Received: shape {np.shape(given)}"
            )
    clean = attacks.predict_classes(clf, x, batch_size)
    deterministic = bool(
        np.array_equal(np.asarray(clf.probabilities(x[:8])), np.asarray(clf.probabilities(x[:8])))
    )
    correct = clean == y
    predictions, described, seconds = {}, {}, {}
    for attack_name in ("square", "hop_skip_jump"):
        attack = attacks.get(specs[attack_name]).replace(norm=norm)
        start = time.time()
        predicted = clean.copy()
        predicted[correct] = _attacked(clf, x, y, correct, attack, eps, seed, batch_size, progress)
        predictions[attack_name], described[attack_name] = predicted, attack.describe()
        seconds[attack_name] = time.time() - start
    for attack_name, given, what in (
        ("transfer", transfer, f"{specs['transfer']} on the float model"),
        ("patch", patched, "patch trained on the float model"),
    ):
        if given is None:
            continue
        start = time.time()
        predicted = clean.copy()
        predicted[correct] = attacks.predict_classes(
            clf, np.asarray(given, np.float32)[correct], batch_size
        )
        predictions[attack_name], described[attack_name] = predicted, what
        seconds[attack_name] = time.time() - start
    return GradientFreeResult(
        name or clf.name,
        float(eps),
        attacks.norms.get(norm).name,
        y,
        clean,
        predictions,
        described,
        seconds,
        deterministic,
    )


def markdown(result: GradientFreeResult, settings: dict) -> str:
    """report.md of a gradient-free evaluation: the table, the checklist, the settings."""
    table = result.table()
    lines = [
        f"# Gradient-free evaluation of {result.name}",
        "",
        f"{len(result.labels)} images, eps={result.eps:g} (L{result.norm}); "
        f"clean accuracy {100 * result.clean_correct.mean():.1f}%, "
        f"worst case {100 * result.worst_case.mean():.1f}% "
        "(per image, over the eps-ball attacks; the patch is another threat model).",
        "",
        "| attack | spec | robust accuracy | seconds |",
        "|---|---|---|---|",
    ]
    for row in table.itertuples(index=False):
        lines.append(
            f"| {row.attack} | {row.spec} | {100 * row.robust_accuracy:.1f}% | {row.seconds} |"
        )
    lines += ["", "Masking checklist (the model has no gradients):", ""]
    for check in result.checklist():
        lines.append(f"- ({check.key}) {check.name}: {check.verdict}: {check.evidence}")
    lines += ["", f"Settings: {json.dumps(settings)}", ""]
    return "\n".join(lines)


def write_report(result: GradientFreeResult, output_dir: str, settings: dict) -> str:
    """Writes report.md, robust.csv, outcomes.csv and summary.json into `output_dir`, each
    atomically; returns report.md's path."""
    os.makedirs(output_dir, exist_ok=True)
    outcomes = pd.DataFrame(
        {
            "image": np.arange(len(result.labels)),
            "label": result.labels,
            "clean": result.clean_predictions,
        }
    )
    for attack, predicted in result.predictions.items():
        outcomes[attack] = predicted
    outcomes["verdict"], outcomes["broken_by"] = result.verdicts(), result.broken_by()
    for name, frame in (("robust.csv", result.table()), ("outcomes.csv", outcomes)):
        atomic_file(
            os.path.join(output_dir, name), lambda tmp, frame=frame: frame.to_csv(tmp, index=False)
        )
    summary = {
        "model": result.name,
        "eps": result.eps,
        "norm": result.norm,
        "images": len(result.labels),
        **result.row(),
        "attacks": result.attacks,
        "checklist": [dataclasses.asdict(c) for c in result.checklist()],
        "settings": settings,
    }
    write_json(os.path.join(output_dir, "summary.json"), summary)
    return write_text(os.path.join(output_dir, "report.md"), markdown(result, settings))
