"""The gradient-masking checklist: each check passes or fails with the evidence behind it.

A model that looks robust only because its gradients are useless (a saturated softmax, noise,
a non-differentiable layer) fails at least one of these; its honest robust accuracy is then the
worst case over every attack the evaluation ran, which is the report's headline.

    (a) an iterative attack is at least as strong as a single step
    (b) transfer from the other models breaks under 1% of images that every white-box attack missed
    (c) white-box is at least as strong as the gradient-free Square attack
    (d) accuracy falls to chance or below as eps grows to 0.5
    (e) random-sign noise is weaker than the gradient attack at the same eps
    (f) under 5% of input gradients are exactly zero or not finite (probabilities and logits)
    (g) a margin loss on the logits is no stronger than cross-entropy on the outputs
    (h) doubling the iterations and restarts of every gradient attack of the suite, run on the
        suite's survivors, breaks under 1% more images
    (i) for a model random at inference: the attacks with expectation over transformation (EOT) are
        at least as strong as without, and no single draw scores over 1 point above the mean of R
        draws

A failed check names its remedy, which the evaluation runs and folds into the headline (see
`tfadv.evaluation.remedies`): (b), (c), (f) -> BPDA (the gradient attacks again through
`tfadv.models.straight_through`); (i) -> the gradient attacks with 4x the EOT samples; (g) -> the
margin/DLR attacks, already in the suite or the checklist.
"""

import dataclasses

ZERO_GRADIENT_LIMIT = 0.05  # (f)
LOSS_GAP_LIMIT = 0.05  # (g): accuracy points between CE on outputs and margin on logits
BUDGET_LIMIT = 0.01  # (h): accuracy points a doubled budget may still take
SQUARE_LIMIT = 0.01  # (c): share of images Square may break after the gradient attacks
TRANSFER_LIMIT = SQUARE_LIMIT  # (b): share of images transfer may break that white-box missed
DRAW_LIMIT = 0.01  # (i): accuracy points one draw may score above the mean of R draws
EOT_LIMIT = 0.01  # (i): accuracy points EOT attacks may trail the same attacks without EOT


@dataclasses.dataclass
class Check:
    """One line of the checklist: `passed` is None when the check does not apply."""

    key: str
    name: str
    passed: bool | None
    evidence: str

    @property
    def verdict(self) -> str:
        return {True: "pass", False: "FAIL", None: "n/a"}[self.passed]


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def iterative_vs_single_step(fgsm: float, pgd: float, pgd_name: str) -> Check:
    return Check(
        "a",
        "iterative at least as strong as single-step",
        pgd <= fgsm,
        f"accuracy under FGSM {_pct(fgsm)}, under {pgd_name} {_pct(pgd)}",
    )


def white_box_vs_transfer(transfer_only: int, n: int, transfer: dict) -> Check:
    """`transfer_only`: images that transfer from some other model broke and every white-box
    attack (suite, checklist attacks, doubled budget) missed; `transfer`: {source: accuracy}."""
    name = "white-box at least as strong as transfer"
    if not transfer:
        return Check("b", name, None, "one model given: no transfer to compare")
    share = transfer_only / n if n else 0.0
    evidence = (
        f"transfer broke {transfer_only} images ({_pct(share)}) that every white-box attack missed "
        f"(limit {_pct(TRANSFER_LIMIT)}); accuracy under transfer "
        + ", ".join(f"from {source} {_pct(acc)}" for source, acc in sorted(transfer.items()))
    )
    return Check("b", name, share <= TRANSFER_LIMIT, evidence)


def white_box_vs_square(square_broke: int, n: int, square_ran: bool) -> Check:
    name = "white-box at least as strong as Square"
    if not square_ran:
        return Check("c", name, None, "the suite has no Square attack")
    share = square_broke / n if n else 0.0
    return Check(
        "c",
        name,
        share <= SQUARE_LIMIT,
        f"Square broke {square_broke} images ({_pct(share)}) "
        f"that every gradient attack before it missed (limit {_pct(SQUARE_LIMIT)})",
    )


def falls_to_chance(accuracy_at_large_eps: float, eps: float, num_classes: int) -> Check:
    chance = 1.0 / num_classes
    return Check(
        "d",
        "accuracy falls to chance or below as eps grows",
        accuracy_at_large_eps <= chance,
        f"accuracy at eps={eps:g}: {_pct(accuracy_at_large_eps)} (chance {_pct(chance)})",
    )


def random_noise_weaker(random_sign: float, gradient: float, gradient_name: str) -> Check:
    return Check(
        "e",
        "random-sign noise weaker than the gradient attack",
        random_sign >= gradient,
        f"accuracy under random signs {_pct(random_sign)}, under {gradient_name} {_pct(gradient)}",
    )


def gradients_usable(masking) -> Check:
    """`masking`: the DataFrame of `tfadv.evaluation.masking_report`."""
    rows = masking.to_dict(orient="records")
    bad = {
        row["loss_on"]: row["zero_gradient_fraction"] + row["nonfinite_fraction"] for row in rows
    }
    evidence = "; ".join(
        f"{row['loss_on']}: {_pct(row['zero_gradient_fraction'])} exactly zero, "
        f"{_pct(row['nonfinite_fraction'])} not finite, median norm {row['median_norm']:.3g}"
        for row in rows
    )
    return Check(
        "f",
        f"under {_pct(ZERO_GRADIENT_LIMIT)} of input gradients zero or non-finite",
        all(value < ZERO_GRADIENT_LIMIT for value in bad.values()),
        evidence,
    )


def loss_gap(ce_on_outputs: float, margin_on_logits: float, outputs: str) -> Check:
    gap = ce_on_outputs - margin_on_logits
    return Check(
        "g",
        "margin loss on logits no stronger than cross-entropy on the outputs",
        gap < LOSS_GAP_LIMIT,
        f"accuracy with CE on the {outputs} {_pct(ce_on_outputs)}, "
        f"with the margin loss on logits {_pct(margin_on_logits)} "
        f"(gap {_pct(gap)}, limit {_pct(LOSS_GAP_LIMIT)}; a large gap means a saturated softmax)",
    )


def budget_converged(extra_broken: int, n: int, doubled: str) -> Check:
    """`extra_broken`: images the doubled gradient attacks broke among the suite's survivors."""
    share = extra_broken / n if n else 0.0
    return Check(
        "h",
        "doubling iterations and restarts moves robust accuracy by under 1 point",
        share < BUDGET_LIMIT,
        f"{doubled} on the suite's survivors broke {extra_broken} "
        f"more images ({_pct(share)}, limit {_pct(BUDGET_LIMIT)})",
    )


def randomness_handled(
    stochastic: bool,
    samples: int,
    draw_accuracies=(),
    eot: float | None = None,
    no_eot: float | None = None,
) -> Check:
    """(i) for a model random at inference.

    Args:
        stochastic: outputs differ between calls (else the check does not apply).
        samples: EOT draws every attack and prediction averaged.
        draw_accuracies: accuracy of each of R single forward passes on the final adversarial
            images.
        eot, no_eot: mean accuracy over R draws on the images of the suite run with and without EOT.
    """
    name = "a random model is attacked with EOT and scored over many draws"
    if not stochastic:
        return Check("i", name, None, "outputs are identical between calls: deterministic")
    draws = [float(a) for a in draw_accuracies]
    if not draws:
        raise ValueError(
            "Expected the accuracy of at least one draw. "
            f"Received: draw_accuracies={draw_accuracies!r}"
        )
    mean, best = sum(draws) / len(draws), max(draws)
    eot_weaker = eot is not None and no_eot is not None and eot > no_eot + EOT_LIMIT
    evidence = (
        f"over {len(draws)} draws on the final images: mean accuracy {_pct(mean)}, "
        f"best single draw {_pct(best)} (limit: {_pct(DRAW_LIMIT)} above the mean)"
    )
    if eot is not None and no_eot is not None:
        evidence += f"; suite with EOT x{samples} {_pct(eot)}, without EOT {_pct(no_eot)}"
        evidence += " (EOT weaker)" if eot_weaker else ""
    return Check("i", name, not eot_weaker and best - mean <= DRAW_LIMIT, evidence)
