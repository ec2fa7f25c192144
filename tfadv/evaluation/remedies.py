"""The remedy of every failed masking check, run in the same evaluation and folded into the
headline.

(b), (c) or (f) -> BPDA: the suite's gradient attacks again through
`tfadv.models.straight_through` on the white-box survivors, their breaks scored on the model
itself; (i) -> the gradient attacks again with 4x the EOT samples; (g) -> the margin/DLR attacks
(already run). A random model's final images are scored over R fresh single draws (check (i)
before the remedies, the headline after them).
"""

import copy

import numpy as np
import pandas as pd

from tfadv import attacks, models
from tfadv.evaluation import checklist
from tfadv.evaluation.probe import Folds, Probe, frame_units, replay, texts, unit_frame
from tfadv.evaluation.sections import CHECK_STEPS, draws_correct, gradient_attacks
from tfadv.evaluation.suite import CLEAN_WRONG, run_suite

REMEDY_COLUMNS = ("remedy", "trigger", "attack", "ran_on", "broke", "white_box_robust_accuracy")
BPDA_TRIGGERS = ("b", "c", "f")  # failed checks whose remedy is BPDA
EOT_REMEDY_FACTOR = 4  # check (i)'s remedy: the gradient attacks again with this many EOT samples
PROBE_IMAGES = 64  # images that tell which layers pass no usable gradient


class Remedies(Probe):
    """Runs on a copy of the evaluation (the remedies see each other's breaks) and keeps the folds,
    the rows and the notes, which `apply` replays; needs every section that ran before it."""

    name, title = "remedies", "Remedies"

    def __init__(self, needs=()):
        self.needs = tuple(needs)

    def settings(self, c):
        return {"eot": c.eot_samples, "draws": c.draws, "failed": c.m.failed_checks}

    def run(self, c):
        m = copy.deepcopy(c.m)
        m.remedy_notes, m.remedies = [], pd.DataFrame(columns=REMEDY_COLUMNS)
        folds, units = Folds(), {}
        if m.stochastic:
            correct = draws_correct(c.clf, m.adversarial, c.y, m.correct, c.draws, c.batch_size)
            units["first"] = correct.mean(axis=1)
            m.set_check(_check_i(m, units["first"], c.eot_samples))  # before its remedy
        run_remedies(m, c, folds)
        if m.stochastic:
            units["draws"] = draws_correct(
                c.clf, m.adversarial, c.y, m.correct, c.draws, c.batch_size
            )
        units["notes"] = np.array(m.remedy_notes, dtype=str)
        return units | folds.units | frame_units("rows", m.remedies.astype({"ran_on": int}))

    def apply(self, m, units, c):
        if "first" in units:
            m.set_check(_check_i(m, units["first"], c.eot_samples))
            m.randomness["accuracy_per_draw_before_remedies"] = units["first"].tolist()
        replay(m, c.y, units)
        m.remedy_notes = texts(units, "notes")
        rows = unit_frame("rows", units)
        m.remedies = rows if len(rows) else pd.DataFrame(columns=REMEDY_COLUMNS)
        if "draws" in units:
            m.draws = units["draws"]
            m.randomness["accuracy_per_draw"] = m.draws.mean(axis=1).tolist()
            m.randomness["correct_in_all_draws"] = m.robust_accuracy_all_draws


def _check_i(m, first, eot_samples):
    """Check (i) from the accuracy of each fresh draw on the worst case before the remedies."""
    eot, no_eot = m.randomness["suite_with_eot"], m.randomness["suite_without_eot"]
    return checklist.randomness_handled(True, eot_samples, first, eot, no_eot)


def run_remedies(m, c, folds) -> None:
    """Runs the remedy of every failed check on `m` (a copy), recording its folds in `folds`."""
    failed = set(m.failed_checks)
    gradient = gradient_attacks(c.suite_list)
    bpda = sorted(failed & set(BPDA_TRIGGERS))
    if bpda and not gradient:
        m.remedy_notes.append(
            f"({', '.join(bpda)}) failed -> BPDA: "
            "not run, the suite has no gradient attack to rerun."
        )
    elif bpda:
        _bpda(m, c, folds, gradient, ",".join(bpda))
    if "i" in failed and not gradient:
        m.remedy_notes.append(
            "(i) failed -> more EOT samples: not run, the suite has no gradient attack to rerun."
        )
    elif "i" in failed:
        samples = EOT_REMEDY_FACTOR * c.eot_samples
        view = models.expectation(c.clf.base, samples)
        what = f"the gradient attacks again with EOT over {samples} draws ({EOT_REMEDY_FACTOR}x)"
        _run_remedy(m, c, folds, f"eot x{samples}", "i", view, gradient, c.seed + 300, what)
    if "g" in failed:
        margin = [
            a.describe()
            for a in c.suite_list
            if a.info.option(a.options, "loss") in ("margin", "dlr")
            or a.name in ("apgd_t", "fab_t")
        ]
        where = f"the suite's {', '.join(margin)}" if margin else "no attack of the suite"
        m.remedy_notes.append(
            f"(g) failed -> margin/DLR losses on the logits: already run ({where}, and the "
            f"checklist's PGD-{CHECK_STEPS} with the margin loss on logits); their breaks are in "
            "the headline."
        )


def _bpda(m, c, folds, gradient, trigger) -> None:
    """BPDA: the gradient attacks through `tfadv.models.straight_through` of the model."""
    base = getattr(c.clf, "base", c.clf)
    try:
        layers = models.nondifferentiable_layers(base.model, c.x[:PROBE_IMAGES])
        if not layers:
            raise ValueError(
                "no layer passes a zero, undefined or non-finite gradient on these images"
            )
        view = models.as_classifier(models.straight_through(base.model, layers=layers))
    except (ValueError, TypeError) as error:
        m.remedy_notes.append(f"({trigger}) failed -> BPDA: not run ({error}).")
        return
    attacked = models.expectation(view, c.eot_samples) if m.stochastic else view
    what = (
        "the gradient attacks again through straight_through (identity backward pass through "
        f"{', '.join(layers)})"
    )
    _run_remedy(m, c, folds, "bpda", trigger, attacked, gradient, c.seed + 200, what)


def _run_remedy(m, c, folds, label, trigger, view, attack_list, seed, what) -> None:
    """Runs `attack_list` on `view` over the white-box survivors, scores the images on the model
    as evaluated, folds the breaks in and records one row per attack and one note."""
    y = c.y
    survivors = np.flatnonzero(m.white_box_robust)
    before, headline_before = m.white_box_robust_accuracy, float(m.robust.mean())
    rows = []
    if len(survivors):
        result = run_suite(
            view,
            c.x[survivors],
            y[survivors],
            c.eps,
            attack_list,
            norm=c.norm.name,
            batch_size=c.batch_size,
            seed=seed,
        )
        judged = attacks.predict_classes(c.clf, result.adversarial, c.batch_size)
        judged = np.where(result.broken_by != CLEAN_WRONG, judged, y[survivors])
        wrong = judged != y[survivors]
        remaining = len(survivors)
        for k, (attack, ran_on) in enumerate(zip(result.attacks, result.ran_on, strict=True)):
            broke = int(np.sum(wrong & (result.broken_by == k)))
            remaining -= broke
            robust = (np.sum(m.white_box_robust) - (len(survivors) - remaining)) / len(y)
            rows.append(
                {
                    "remedy": label,
                    "trigger": trigger,
                    "attack": f"{label}: {attack}",
                    "ran_on": ran_on,
                    "broke": broke,
                    "white_box_robust_accuracy": robust,
                }
            )
        folds.add(y, survivors, result.adversarial, judged, m=m)
    if rows:
        new = pd.DataFrame(rows, columns=REMEDY_COLUMNS)
        m.remedies = pd.concat([m.remedies, new], ignore_index=True) if len(m.remedies) else new
    broke = int(sum(row["broke"] for row in rows))
    m.remedy_notes.append(
        f"({trigger}) failed -> {label}: {what}, on the {len(survivors)} images every white-box "
        f"attack missed: broke {broke}; white-box robust accuracy {before:.4f} -> "
        f"{m.white_box_robust_accuracy:.4f}, headline {headline_before:.4f} -> "
        f"{float(m.robust.mean()):.4f}."
    )
    c.log(f"remedy {label} broke {broke} of {len(survivors)}")
