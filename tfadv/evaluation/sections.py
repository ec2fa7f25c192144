"""The sections of an evaluation as probes (`tfadv.evaluation.probe`), and the masking checklist
built from what they measured.

    clean       clean accuracy, top-1/top-5 error (always run)
    suite       the attack suite, each attack on the images still unbroken (always run); for a
                random model, the suite again without EOT
    checklist   the checklist's attacks: every gradient attack of the suite with twice its steps
                and restarts on the suite's survivors, FGSM, PGD with CE on the logits and on the
                outputs, with the margin loss, random signs (L-inf)
    sweep       FGSM and PGD over an eps sweep
    confidence  the Possas table: error by clean confidence under four attacks
    gradients   input-gradient norms per image
    transfer    PGD examples of every model scored on every other (several models)
    distances   each image's distance to the boundary (`tfadv.evaluation.boundary`; not default)
"""

import numpy as np
import pandas as pd

from tfadv import attacks
from tfadv.evaluation import checklist, metrics, plots, robustness
from tfadv.evaluation.engine import model_fingerprint
from tfadv.evaluation.probe import (
    Folds,
    Probe,
    dict_units,
    eps_max,
    frame_units,
    replay,
    unit_dict,
    unit_frame,
)
from tfadv.evaluation.suite import CLEAN_WRONG, SuiteResult, run_suite

SWEEP_EPS = (0.001, 0.01, 0.03, 0.05, 0.1, 0.3)
LARGE_EPS = 0.5  # check (d)
CHECK_STEPS = 20  # PGD steps of the checklist's attacks and the sweep
CONFIDENCE_STEPS = 10  # iterative attacks of the Possas table
GRADIENT_FREE = (
    "square",
    "random_sign",
    "one_pixel",
    "patch",
)  # attacks that never read a gradient
PGD_SWEEP = f"pgd-{CHECK_STEPS}"


def gradient_attacks(suite_list) -> list:
    """The suite's attacks that follow a gradient (all but Square and other gradient-free ones)."""
    return [attack for attack in suite_list if attack.name not in GRADIENT_FREE]


def doubled(suite_list) -> list:
    """Every gradient attack of the suite with twice its steps and restarts (where it takes them;
    n_targets unchanged); attacks with neither are left out."""
    out = []
    for attack in gradient_attacks(suite_list):
        changes = {
            key: 2 * attack.info.option(attack.options, key)
            for key in ("steps", "restarts")
            if key in attack.info.parameters and attack.info.option(attack.options, key) is not None
        }
        if changes:
            out.append(attack.replace(**changes))
    return out


def describe(attack_list) -> str:
    return ", ".join(attack.describe() for attack in attack_list)


def draws_correct(clf, images, labels, counted, draws, batch_size) -> np.ndarray:
    """bool (R, N): each of `draws` single forward passes of a random model (its EOT view's `.base`)
    classifies the image correctly; images not `counted` (wrong when clean) count as wrong."""
    base = getattr(clf, "base", clf)
    return np.stack(
        [
            (attacks.predict_classes(base, images, batch_size) == labels) & counted
            for _ in range(draws)
        ]
    )


class Clean(Probe):
    name, title = "clean", "Clean accuracy"

    def run(self, c):
        return {"probabilities": metrics.predict_probabilities(c.clf, c.x, c.batch_size)}

    def apply(self, m, units, c):
        probabilities = units["probabilities"]
        predictions = probabilities.argmax(axis=1)
        m.clean = {
            "accuracy": float(np.mean(predictions == c.y)),
            "top1_error": metrics.top_k_error(probabilities, c.y, 1),
            "top5_error": metrics.top_k_error(probabilities, c.y, 5)
            if probabilities.shape[1] >= 5
            else None,
        }
        m.clean_predictions, m.clean_probabilities = predictions, probabilities
        m.confusion_clean = metrics.confusion_matrix(c.y, predictions, len(c.class_names))
        c.log(f"clean accuracy {m.clean['accuracy']:.4f}")


SUITE_FIELDS = ("labels", "clean_predictions", "predictions", "adversarial", "broken_by")
SUITE_LISTS = ("ran_on", "seconds", "forwards", "gradients")


class Suite(Probe):
    """The suite; a random model also without EOT. With a store folder the suite's units are its
    chunks (`tfadv.evaluation.store.EvaluationStore`, read back without a model call and redone
    where missing); in memory, its per-image outcomes."""

    name, needs, title = "suite", ("clean",), "Attack suite"

    def settings(self, c):
        return {"suite": describe(c.suite_list), "eot": c.eot_samples, "draws": c.draws}

    def _suite(self, c):
        return run_suite(
            c.clf,
            c.x,
            c.y,
            c.eps,
            c.suite_list,
            norm=c.norm.name,
            batch_size=c.batch_size,
            seed=c.seed,
            progress=c.progress,
            **c.suite_store,
        )

    def run(self, c):
        c.suite = suite = self._suite(c)
        units = {}
        if c.suite_store.get("store") is None:
            units = {k: getattr(suite, k) for k in SUITE_FIELDS}
            units |= {k: np.asarray(getattr(suite, k), np.float64) for k in SUITE_LISTS}
            units["attacks"] = np.array(suite.attacks, dtype=str)
        if c.stochastic:
            units |= self._without_eot(c, suite)
        return units

    def _without_eot(self, c, suite) -> dict:
        """The same suite without EOT, its breaks judged by the EOT view; both suites' images
        scored over fresh single draws."""
        no_eot = run_suite(
            c.clf.base,
            c.x,
            c.y,
            c.eps,
            c.suite_list,
            norm=c.norm.name,
            batch_size=c.batch_size,
            seed=c.seed,
        )
        judged = attacks.predict_classes(c.clf, no_eot.adversarial, c.batch_size)
        folds = Folds()
        judged = np.where(no_eot.broken_by >= 0, judged, c.y)
        folds.add(c.y, np.arange(len(c.y)), no_eot.adversarial, judged)
        correct = suite.broken_by != CLEAN_WRONG
        with_eot = draws_correct(c.clf, suite.adversarial, c.y, correct, c.draws, c.batch_size)
        without = draws_correct(c.clf, no_eot.adversarial, c.y, correct, c.draws, c.batch_size)
        return folds.units | {"with_eot": with_eot.mean(), "without_eot": without.mean()}

    def apply(self, m, units, c):
        if "broken_by" in units:
            lists = {k: [v.item() for v in units[k]] for k in SUITE_LISTS}
            for k in ("ran_on", "forwards", "gradients"):
                lists[k] = [int(v) for v in lists[k]]
            attacks_run = [str(a) for a in units["attacks"]]
            fields = (units[k] for k in SUITE_FIELDS)
            m.suite = SuiteResult(c.eps, attacks_run, *fields, **lists)
        else:
            m.suite = c.suite or self._suite(c)
        m.robust, m.white_box_robust = m.suite.robust.copy(), m.suite.robust.copy()
        m.adversarial = m.suite.adversarial.copy()
        m.adversarial_predictions = m.suite.predictions.copy()
        c.log(f"suite robust accuracy {m.suite.robust_accuracy:.4f}")
        if "with_eot" in units:
            replay(m, c.y, units)
            m.randomness = {
                "eot_samples": c.eot_samples,
                "draws": c.draws,
                "suite_with_eot": float(units["with_eot"]),
                "suite_without_eot": float(units["without_eot"]),
            }


def checklist_attacks(norm, outputs: str) -> dict:
    """The checklist's attacks at the evaluation eps, by label."""
    pgd = attacks.Attack("pgd", steps=CHECK_STEPS, norm=norm.name, early_stop=True)
    out = {
        "fgsm": attacks.Attack("fgsm", norm=norm.name),
        f"{PGD_SWEEP} (ce, logits)": pgd,
        f"{PGD_SWEEP} (ce, {outputs})": pgd.replace(loss_on=outputs),
        f"{PGD_SWEEP} (margin, logits)": pgd.replace(loss="margin"),
    }
    if eps_max(norm) is not None:  # random signs fill a bounded (L-inf) ball only
        out["random_sign"] = attacks.Attack("random_sign")
    return out


class Checklist(Probe):
    """(h) the doubled budget on the suite's survivors; the extra attacks of checks a, e, g."""

    name, needs, title = "checklist", ("suite",), "Checklist attacks"

    def run(self, c):
        m, folds, units = c.m, Folds("doubled"), {}
        again_list = doubled(c.suite_list)
        survivors = np.flatnonzero(m.suite.robust)
        if again_list and len(survivors):
            again = run_suite(
                c.clf,
                c.x[survivors],
                c.y[survivors],
                c.eps,
                again_list,
                norm=c.norm.name,
                batch_size=c.batch_size,
                seed=c.seed + 100,
            )
            hit = again.broken_by != CLEAN_WRONG
            folds.add(
                c.y, survivors, again.adversarial, np.where(hit, again.predictions, c.y[survivors])
            )
        units |= folds.units
        outputs = "probabilities" if c.clf.output == "probabilities" else "logits"
        extra, accuracy = Folds("extra"), {}
        for label, attack in checklist_attacks(c.norm, outputs).items():
            result = attacks.run_attack(
                c.clf,
                (c.x, c.y),
                attack,
                c.eps,
                batch_size=c.batch_size,
                seed=c.seed if attack.takes_seed else None,
            )
            accuracy[label] = float(np.mean(result.adversarial_predictions == c.y))
            tried = c.stochastic and label == f"{PGD_SWEEP} (ce, logits)"  # kept for the draws
            extra.add(
                c.y,
                np.arange(len(c.y)),
                result.adversarial,
                result.adversarial_predictions,
                attempt=m.correct if tried else None,
            )
        return (
            units | extra.units | dict_units("accuracy", accuracy) | {"outputs": np.array(outputs)}
        )

    def apply(self, m, units, c):
        again_list = doubled(c.suite_list)
        m.extra_broken = sum(replay(m, c.y, units, "doubled"))
        m.doubled = describe(again_list)
        if again_list:
            label = f"doubled: {m.doubled} (on the suite's survivors)"
            m.attack_accuracy[label] = float(np.mean(m.robust))
        c.log(f"doubled budget broke {m.extra_broken} more")
        replay(m, c.y, units, "extra")
        accuracy = unit_dict("accuracy", units)
        m.attack_accuracy |= accuracy
        m.outputs = str(units["outputs"])
        shown = ", ".join(f"{k} {v:.4f}" for k, v in accuracy.items())
        c.log(f"checklist attacks {shown}")

    def markdown(self, m, report):
        rows = [{"attack": k, "accuracy": v} for k, v in m.attack_accuracy.items()]
        return [
            "### Extra attacks at the evaluation eps (accuracy over all images)",
            "",
            pd.DataFrame(rows).to_markdown(index=False, floatfmt=".4f"),
            "",
        ]


class Sweep(Probe):
    name, title = "sweep", "Eps sweep"

    def settings(self, c):
        return {"eps": sweep_points(c), "steps": CHECK_STEPS}

    def run(self, c):
        tables = [
            robustness.eps_sweep(
                c.clf,
                c.x,
                c.y,
                attack,
                sweep_points(c),
                batch_size=c.batch_size,
                seed=c.seed if attack.takes_seed else None,
            )
            for attack in (
                attacks.Attack("fgsm", norm=c.norm.name),
                attacks.Attack("pgd", steps=CHECK_STEPS, norm=c.norm.name, early_stop=True),
            )
        ]
        table = pd.concat(tables, ignore_index=True)
        table["attack"] = table["attack"].map(
            lambda a: "fgsm" if a.startswith("fgsm") else PGD_SWEEP
        )
        return frame_units("sweep", table)

    def apply(self, m, units, c):
        m.sweep = unit_frame("sweep", units)
        c.log("eps sweep done")

    def tables(self, m):
        return {"sweep": m.sweep}

    def figures(self, m, report):
        sweep = m.sweep.assign(model=m.name)[["model", "attack", "eps", "adversarial_accuracy"]]
        return {"eps_curves": plots.eps_curves(sweep, f"{m.name}: accuracy vs eps")}

    def markdown(self, m, report):
        table = m.sweep.pivot(index="eps", columns="attack", values="adversarial_accuracy")
        return [
            f"### Eps sweep ([plot]({m.folder}/eps_curves.png))",
            "",
            table.reset_index().to_markdown(index=False, floatfmt=".4f"),
            "",
        ]


def sweep_points(c) -> list:
    """The sweep's eps values, the evaluation eps and LARGE_EPS where the norm's range has it."""
    points = {*map(float, c.sweep_eps), float(c.eps)}
    if eps_max(c.norm) is not None:  # LARGE_EPS is a pixel-scale L-inf budget
        points.add(LARGE_EPS)
    return sorted(points)


class Confidence(Probe):
    name, needs, title = "confidence", ("clean",), "Error by clean confidence"

    def settings(self, c):
        return {"steps": CONFIDENCE_STEPS}

    def run(self, c):
        norm = c.norm.name
        views = {
            "fast inverse": attacks.Attack("fgsm", norm=norm),
            "fast least-likely": attacks.Attack("fgsm", norm=norm, target="least_likely"),
            "iterative inverse": attacks.Attack("bim", steps=CONFIDENCE_STEPS, norm=norm),
            "iterative least-likely": attacks.Attack(
                "bim", steps=CONFIDENCE_STEPS, norm=norm, target="least_likely"
            ),
        }
        perturbed = {}
        for label, attack in views.items():
            result = attacks.run_attack(
                c.clf, (c.x, c.y), attack, c.eps, batch_size=c.batch_size, seed=c.seed
            )
            perturbed[label] = metrics.predict_probabilities(
                c.clf, result.adversarial, c.batch_size
            )
        table = metrics.confidence_table(c.m.clean_probabilities, c.y, perturbed)
        return frame_units("confidence", table)

    def apply(self, m, units, c):
        m.confidence = unit_frame("confidence", units)
        c.log("confidence table done")

    def tables(self, m):
        return {"confidence": m.confidence}

    def markdown(self, m, report):
        return [
            "### Error by clean confidence (Possas layout: high >= 30%, medium 15-30%, low < 15%)",
            "",
            m.confidence.to_markdown(index=False, floatfmt=".3f"),
            "",
        ]


class Gradients(Probe):
    name, needs, title = "gradients", ("clean",), "Input-gradient norms"

    def run(self, c):
        views = attacks.LOSS_ON if c.clf.output == "probabilities" else ("logits",)
        correct = c.m.clean_predictions == c.y
        table = pd.DataFrame({"label": c.y, "correct": correct})
        for view in views:
            table[f"norm_{view}"] = robustness.gradient_norms(
                c.clf, c.x, c.y, loss_on=view, batch_size=c.batch_size
            )
        return frame_units("gradient_norms", table) | frame_units("masking", masking(table))

    def apply(self, m, units, c):
        m.gradient_norms = unit_frame("gradient_norms", units)
        m.masking = unit_frame("masking", units)
        c.log("input gradients done")

    def tables(self, m):
        return {"masking": m.masking, "gradient_norms": m.gradient_norms}

    def figures(self, m, report):
        norms = m.gradient_norms
        views = {c.removeprefix("norm_"): norms[c] for c in norms if c.startswith("norm_")}
        return {
            "gradient_norms": plots.gradient_histograms(views, norms["correct"].to_numpy(), m.name)
        }

    def markdown(self, m, report):
        return [
            f"### Input-gradient norms ([histograms]({m.folder}/gradient_norms.png))",
            "",
            m.masking.to_markdown(index=False, floatfmt=".4f"),
            "",
        ]


def masking(table) -> pd.DataFrame:
    """Per loss view and image subset (all, correct, incorrect): the share of zero and of
    non-finite input gradients and the median finite norm."""
    correct = table["correct"].to_numpy(bool)
    rows = []
    for column in [c for c in table if c.startswith("norm_")]:
        norms = table[column].to_numpy()
        for subset, mask in (
            ("all", np.ones(len(norms), bool)),
            ("correct", correct),
            ("incorrect", ~correct),
        ):
            chosen = norms[mask]
            finite = chosen[np.isfinite(chosen)]
            nan = float("nan")
            rows.append(
                {
                    "loss_on": column.removeprefix("norm_"),
                    "images": subset,
                    "n": int(mask.sum()),
                    "zero_gradient_fraction": float(np.mean(chosen == 0)) if len(chosen) else nan,
                    "nonfinite_fraction": float(np.mean(~np.isfinite(chosen)))
                    if len(chosen)
                    else nan,
                    "median_norm": float(np.median(finite)) if len(finite) else nan,
                }
            )
    return pd.DataFrame(rows)


class Transfer(Probe):
    """PGD examples crafted on this model (the source), scored on every model (its units); the
    report folds them into each target (`apply_transfer`)."""

    name, title = "transfer", "Transfer matrix"

    def settings(self, c):
        return {"models": [model_fingerprint(v) for v in c.views.values()], "steps": CHECK_STEPS}

    def run(self, c):
        attack = attacks.Attack("pgd", steps=CHECK_STEPS, norm=c.norm.name)
        result = attacks.run_attack(
            c.clf, (c.x, c.y), attack, c.eps, batch_size=c.batch_size, seed=c.seed
        )
        predicted = np.stack(
            [attacks.predict_classes(v, result.adversarial, c.batch_size) for v in c.views.values()]
        )
        wrong = np.flatnonzero((predicted != c.y).any(axis=0))
        return {"predicted": predicted, "wrong": wrong, "images": result.adversarial[wrong]}

    def apply(self, m, units, c):
        m.transfer_units = units
        c.log("transfer examples scored on every model")


def apply_transfer(report, y) -> pd.DataFrame:
    """The matrix: accuracy of every target (columns) on the examples of every source (rows); the
    diagonal is white-box. Check (b) counts the images transfer broke that every white-box attack
    missed; then the transfer breaks join each target's headline (not its white-box worst case)."""
    names = list(report.models)
    matrix = pd.DataFrame(index=names, columns=names, dtype=float)
    for source in names:
        predicted = report.models[source].transfer_units["predicted"]
        for t, target in enumerate(names):
            matrix.loc[source, target] = float(np.mean(predicted[t] == y))
    for t, target in enumerate(names):
        m = report.models[target]
        broke = np.zeros(len(y), bool)
        found = []
        for source in names:
            if source == target:
                continue
            units = report.models[source].transfer_units
            images = np.zeros((len(y), *m.adversarial.shape[1:]), np.float32)
            images[units["wrong"]] = units["images"]
            found.append((images, units["predicted"][t]))
            broke |= (units["predicted"][t] != y) & m.correct
        accuracy = {s: float(matrix.loc[s, target]) for s in names if s != target}
        transfer_only = int(np.sum(broke & m.white_box_robust))
        m.set_check(checklist.white_box_vs_transfer(transfer_only, len(y), accuracy))
        for images, predicted in found:
            everyone = np.arange(len(y))
            m.fold(y, everyone, images, np.where(m.correct, predicted, y), white_box=False)
    return matrix


FOLDING = ("suite", "checklist", "transfer")  # sections whose breaks join the worst case
DEFAULT = ("clean", "suite", "checklist", "sweep", "confidence", "gradients", "transfer")


def probes() -> dict:
    """Every section by name, in the order an evaluation runs them."""
    from tfadv.evaluation.boundary import Distances

    found = (Clean(), Suite(), Checklist(), Sweep(), Confidence(), Gradients(), Transfer())
    return {p.name: p for p in (*found, Distances())}


def select(sections=None) -> list:
    """The probes named by `sections` (a comma string or a list; "all"; None: DEFAULT), with
    clean and suite always, in run order.

    Raises:
        ValueError: an unknown section name.
    """
    known = probes()
    if sections is None:
        names = list(DEFAULT)
    else:
        given = sections.split(",") if isinstance(sections, str) else list(sections)
        names = [str(s).strip() for s in given if str(s).strip()]
        if "all" in names:
            names = list(known)
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            raise ValueError(
                f"Expected sections from {(*known, 'all')}. Received: sections={sections!r}"
            )
    chosen = {"clean", "suite", *names}
    return [probe for name, probe in known.items() if name in chosen]


def not_run(key: str, name: str, section: str) -> checklist.Check:
    return checklist.Check(key, name, None, f"section {section!r} not run")


def checks(m, c, ran) -> list:
    """The masking checklist from what the sections in `ran` measured (see
    `tfadv.evaluation.checklist`); checks whose section did not run are n/a."""
    n, accuracy = len(c.y), m.attack_accuracy
    square = [k for k, a in enumerate(m.suite.attacks) if a.startswith("square")]
    square_broke = int(sum(np.sum(m.suite.broken_by == k) for k in square))
    out = [
        not_run("a", "iterative at least as strong as single-step", "sweep"),
        checklist.white_box_vs_transfer(0, n, {}),
        checklist.white_box_vs_square(square_broke, n, bool(square)),
        not_run("d", "accuracy falls to chance or below as eps grows", "sweep"),
        not_run("e", "random-sign noise weaker than the gradient attack", "checklist"),
        not_run("f", "input gradients usable", "gradients"),
        not_run("g", "margin loss no stronger than CE on the outputs", "checklist"),
        not_run("h", "doubling iterations and restarts", "checklist"),
        checklist.randomness_handled(False, c.eot_samples),  # scored over draws by the remedies
    ]
    if "sweep" in ran:
        sweep = m.sweep

        def at(attack, e):
            rows = sweep[(sweep["attack"] == attack) & np.isclose(sweep["eps"], e)]
            return float(rows["adversarial_accuracy"].iloc[0])

        name = PGD_SWEEP.upper()
        out[0] = checklist.iterative_vs_single_step(at("fgsm", c.eps), at(PGD_SWEEP, c.eps), name)
        if np.isclose(sweep["eps"], LARGE_EPS).any():
            classes = len(c.class_names)
            out[3] = checklist.falls_to_chance(at(PGD_SWEEP, LARGE_EPS), LARGE_EPS, classes)
        else:
            out[3] = checklist.Check("d", out[3].name, None, f"L{c.norm.name}: no eps = 0.5 point")
    if "checklist" in ran:
        pgd = f"{PGD_SWEEP} (ce, logits)"
        if "random_sign" in accuracy:
            out[4] = checklist.random_noise_weaker(
                accuracy["random_sign"], accuracy[pgd], PGD_SWEEP.upper()
            )
        else:
            out[4] = checklist.Check(
                "e", out[4].name, None, f"L{c.norm.name}: no random-sign control"
            )
        out[6] = checklist.loss_gap(
            accuracy[f"{PGD_SWEEP} (ce, {m.outputs})"],
            accuracy[f"{PGD_SWEEP} (margin, logits)"],
            m.outputs,
        )
        if m.doubled:
            out[7] = checklist.budget_converged(m.extra_broken, n, m.doubled)
        else:
            reason = "no gradient attack with steps or restarts in the suite"
            out[7] = checklist.Check("h", "doubling iterations and restarts", None, reason)
    if "gradients" in ran:
        out[5] = checklist.gradients_usable(m.masking[m.masking["images"] == "all"])
    return out
