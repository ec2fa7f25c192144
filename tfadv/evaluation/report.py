"""The robustness report: everything `python -m tfadv.evaluate` measures, as one object.

    report = tfadv.evaluation.evaluate({"standard": m1, "distilled": m2}, images, labels, eps=8 / 255)
    print(report.markdown()); report.write("evaluations/run")

For each model: clean accuracy and top-1/top-5 error; the attack suite (each attack only on the
images still unbroken); the extra attacks the masking checklist needs (FGSM, PGD with
cross-entropy on the outputs and with the margin loss on logits, random signs, a doubled
budget, transfer from the other models); an eps sweep; per-class accuracy and confusion
matrices clean vs adversarial; the Possas confidence table; input-gradient norms. The headline
robust accuracy is the per-image worst case over every attack run at the evaluation eps.
A model whose outputs differ between calls is attacked and scored through expectation over
transformation (`tfadv.models.expectation`).
"""

import dataclasses
import time

import numpy as np
import pandas as pd

from tfadv import attacks, models
from tfadv.evaluation import checklist, metrics, robustness
from tfadv.evaluation.suite import CLEAN_WRONG, SuiteResult, run_suite, suite_attacks

SWEEP_EPS = (0.001, 0.01, 0.03, 0.05, 0.1, 0.3)
LARGE_EPS = 0.5  # check (d)
CHECK_STEPS = 20  # PGD steps of the checklist's attacks and the sweep
CONFIDENCE_STEPS = 10  # iterative attacks of the Possas table
PROBE_IMAGES = 64  # images used to tell whether a model is random at inference


@dataclasses.dataclass
class ModelEvaluation:
    """All results of one model (see the module docstring)."""

    name: str
    clean: dict
    suite: SuiteResult
    robust: np.ndarray  # bool (N,): survived every attack at the evaluation eps
    attack_accuracy: dict  # standalone accuracy of every extra attack at the evaluation eps
    sweep: pd.DataFrame
    per_class: pd.DataFrame
    confusion_clean: np.ndarray
    confusion_adversarial: np.ndarray
    confidence: pd.DataFrame
    gradient_norms: pd.DataFrame  # per image: correct, norm on each view
    masking: pd.DataFrame
    checks: list
    stochastic: bool
    seconds: float

    @property
    def robust_accuracy(self) -> float:
        return float(self.robust.mean())

    @property
    def robust_accuracy_on_correct(self) -> float:
        correct = self.suite.broken_by != CLEAN_WRONG
        return float(self.robust[correct].mean()) if correct.any() else float("nan")

    @property
    def failed_checks(self) -> list:
        return [c.key for c in self.checks if c.passed is False]

    def headline(self) -> dict:
        return {
            "model": self.name, "clean_accuracy": self.clean["accuracy"], "robust_accuracy": self.robust_accuracy,
            "robust_accuracy_on_correct": self.robust_accuracy_on_correct,
            "suite_robust_accuracy": self.suite.robust_accuracy, "masking_checks_failed": ",".join(self.failed_checks) or "none",
            "seconds": self.seconds,
        }  # fmt: skip


@dataclasses.dataclass
class EvaluationReport:
    """The evaluation of one or more models at one eps."""

    eps: float
    norm: str
    suite: list
    n: int
    models: dict  # name -> ModelEvaluation
    transfer: pd.DataFrame | None
    class_names: list
    settings: dict
    examples: dict = dataclasses.field(default_factory=dict)  # name -> (clean, adversarial, ...) for the grid

    def headline(self) -> pd.DataFrame:
        return pd.DataFrame([m.headline() for m in self.models.values()])

    def summary(self) -> dict:
        """Every number, JSON-able."""
        out = {"eps": self.eps, "norm": self.norm, "suite": self.suite, "n": self.n, "settings": self.settings, "models": {}}
        for name, m in self.models.items():
            out["models"][name] = {
                **m.headline(), "clean": m.clean, "suite": m.suite.summary(), "attack_accuracy": m.attack_accuracy,
                "checks": [dataclasses.asdict(c) | {"verdict": c.verdict} for c in m.checks],
                "sweep": m.sweep.to_dict(orient="records"), "per_class": m.per_class.to_dict(orient="records"),
                "confidence": m.confidence.to_dict(orient="records"), "masking": m.masking.to_dict(orient="records"),
                "confusion_clean": m.confusion_clean.tolist(), "confusion_adversarial": m.confusion_adversarial.tolist(),
                "stochastic": m.stochastic,
            }  # fmt: skip
        if self.transfer is not None:
            out["transfer"] = self.transfer.to_dict()
        return out

    def markdown(self) -> str:
        from tfadv.evaluation.report_files import markdown

        return markdown(self)

    def write(self, output_dir: str, overwrite: bool = False) -> str:
        """Writes report.md, summary.json, CSVs, PNGs and TensorBoard summaries, atomically."""
        from tfadv.evaluation.report_files import write

        return write(self, output_dir, overwrite)


def _named(models_in) -> dict:
    if isinstance(models_in, dict):
        named = dict(models_in)
    elif isinstance(models_in, (list, tuple)):
        named = {}
        for i, model in enumerate(models_in):
            name = models.as_classifier(model).name or f"model{i}"
            named[name if name not in named else f"{name}_{i}"] = model
    else:
        named = {models.as_classifier(models_in).name: models_in}
    if not named:
        raise ValueError("Expected at least one model. Received: none")
    return named


def check_data(clf, images, labels, num_classes, name: str) -> None:
    """The model takes these images and has `num_classes` outputs."""
    shape = clf.input_shape
    if shape is not None and len(shape) == 4 and any(
        s is not None and s != i for s, i in zip(shape[1:], images.shape[1:], strict=True)
    ):
        raise ValueError(f"Model {name!r} takes images of shape {tuple(shape[1:])}. Received: images of shape {images.shape[1:]}")
    classes = clf.num_classes
    if classes is None:
        classes = int(attacks.logits_of(clf, images[:2]).shape[-1])
    if classes != num_classes:
        raise ValueError(f"Model {name!r} has {classes} classes; the data set has {num_classes}. Received: num_classes={num_classes}")


def _accuracy_and_breaks(model, images, labels, attack, eps, batch_size, seed):
    result = attacks.run_attack(model, (images, labels), attack, eps, batch_size=batch_size, seed=seed if attack.takes_seed else None)
    return float(np.mean(result.adversarial_predictions == labels)), result


def _doubled(suite_list):
    """The suite's first attack with twice its steps and restarts (None if it has neither)."""
    for attack in suite_list:
        changes = {key: 2 * attack.info.option(attack.options, key) for key in ("steps", "restarts") if key in attack.info.parameters}
        if changes:
            return attack.replace(**changes)
    return None


def evaluate(
    models_in, images, labels, eps, *, suite="standard", norm="inf", sweep_eps=SWEEP_EPS, class_names=None,
    batch_size: int = 256, seed: int = 0, eot_samples: int = 8, progress: bool = True,
) -> EvaluationReport:  # fmt: skip
    """Evaluates one or more classifiers on the same images (see the module docstring).

    Args:
        models_in: a classifier, a list of them, or {name: classifier} (anything
            `tfadv.models.as_classifier` accepts).
        images: float32 (N, H, W, C) in [0, 1]; labels: int (N,).
        eps: the evaluation budget, pixel scale (L-inf: in [0, 1]).
        suite: "standard", "fast" or a comma list of attack specs (see `tfadv.evaluation.suite`).
        norm: "inf" or "2".
        sweep_eps: eps values of the FGSM/PGD sweep (the evaluation eps and 0.5 are added).
        class_names: names of the classes (default: their indices).
        batch_size, seed: as in `tfadv.attacks.run_attack`.
        eot_samples: draws averaged for a model whose outputs differ between calls.
        progress: print one line per stage.

    Raises:
        ValueError: empty or mismatched data, eps outside its range, an unknown suite or attack,
            a model whose input shape or class count does not match the data.
    """
    suite_list = suite_attacks(suite, norm)
    norm_name = attacks.norms.get(norm).name
    attacks.checks.check_eps(eps, at_most=1.0 if norm_name == "inf" else None)
    x = attacks.checks.to_images(images).numpy()
    if len(x) == 0:
        raise ValueError("Expected at least one image to evaluate. Received: 0 images")
    y = np.asarray(labels)
    if not np.issubdtype(y.dtype, np.integer) or y.shape != (len(x),):
        raise ValueError(f"Expected int labels of shape ({len(x)},). Received: labels {y.dtype} {y.shape}")
    classifiers = {name: models.as_classifier(model) for name, model in _named(models_in).items()}
    if class_names is None:
        first = next(iter(classifiers.values()))
        classes = first.num_classes or int(attacks.logits_of(first, x[:2]).shape[-1])
        class_names = [str(c) for c in range(classes)]
    class_names = list(class_names)
    if y.min() < 0 or y.max() >= len(class_names):
        raise ValueError(f"Expected labels in [0, {len(class_names)}). Received: labels with min={y.min()}, max={y.max()}")
    for name, clf in classifiers.items():
        check_data(clf, x, y, len(class_names), name)
    sweep = sorted({*map(float, sweep_eps), float(eps), LARGE_EPS} - ({LARGE_EPS} if norm_name == "2" else set()))
    settings = {"batch_size": batch_size, "seed": seed, "eot_samples": eot_samples, "check_steps": CHECK_STEPS}
    report = EvaluationReport(float(eps), norm_name, [a.describe() for a in suite_list], len(x), {}, None, class_names, settings)
    attacked = {}
    for name, clf in classifiers.items():
        stochastic = models.is_stochastic(clf, x[:PROBE_IMAGES])
        attacked[name] = models.expectation(clf, eot_samples) if stochastic else clf
        report.models[name] = _evaluate_one(
            name, attacked[name], stochastic, x, y, float(eps), suite_list, norm_name, sweep, class_names,
            batch_size, seed, eot_samples, progress, report.examples,
        )  # fmt: skip
    if len(classifiers) > 1:
        report.transfer = _transfer(report, attacked, x, y, float(eps), norm_name, batch_size, seed, progress)
    return report


def _log(progress, name, text, start):
    if progress:
        print(f"[{name}] {text} ({time.time() - start:.1f} s)", flush=True)


def _evaluate_one(name, clf, stochastic, x, y, eps, suite_list, norm, sweep_eps, class_names, batch_size, seed, eot_samples, progress, examples):
    start = time.time()
    probabilities = metrics.predict_probabilities(clf, x, batch_size)
    predictions = probabilities.argmax(axis=1)
    clean = {
        "accuracy": float(np.mean(predictions == y)),
        "top1_error": metrics.top_k_error(probabilities, y, 1),
        "top5_error": metrics.top_k_error(probabilities, y, 5) if probabilities.shape[1] >= 5 else None,
    }
    _log(progress, name, f"clean accuracy {clean['accuracy']:.4f}", start)
    suite = run_suite(clf, x, y, eps, suite_list, norm=norm, batch_size=batch_size, seed=seed, progress=progress)
    _log(progress, name, f"suite robust accuracy {suite.robust_accuracy:.4f}", start)
    broken = ~suite.robust
    adversarial, adv_predictions = suite.adversarial.copy(), suite.predictions.copy()

    def note_breaks(result):
        """Adds the images an extra attack broke to the worst case."""
        newly = (result.adversarial_predictions != y) & ~broken
        adversarial[newly], adv_predictions[newly] = result.adversarial[newly], result.adversarial_predictions[newly]
        broken[newly] = True

    pgd = attacks.Attack("pgd", steps=CHECK_STEPS, norm=norm, early_stop=True)
    outputs = "probabilities" if clf.output == "probabilities" else "logits"
    extra = {
        "fgsm": attacks.Attack("fgsm", norm=norm),
        f"pgd-{CHECK_STEPS} (ce, logits)": pgd,
        f"pgd-{CHECK_STEPS} (ce, {outputs})": pgd.replace(loss_on=outputs),
        f"pgd-{CHECK_STEPS} (margin, logits)": pgd.replace(loss="margin"),
        "random_sign": attacks.Attack("random_sign"),
    }
    accuracy = {}
    for label, attack in extra.items():
        if label == "random_sign" and norm != "inf":
            continue
        accuracy[label], result = _accuracy_and_breaks(clf, x, y, attack, eps, batch_size, seed)
        note_breaks(result)
    _log(progress, name, "checklist attacks " + ", ".join(f"{k} {v:.4f}" for k, v in accuracy.items()), start)
    doubled = _doubled(suite_list)
    extra_broken = 0
    if doubled is not None:
        survivors = np.flatnonzero(~broken)
        if len(survivors):
            result = attacks.run_attack(clf, (x[survivors], y[survivors]), doubled, eps, batch_size=batch_size, seed=seed + 100 if doubled.takes_seed else None)
            newly = result.adversarial_predictions != y[survivors]
            extra_broken = int(newly.sum())
            hit = survivors[newly]
            adversarial[hit], adv_predictions[hit], broken[hit] = result.adversarial[newly], result.adversarial_predictions[newly], True
        accuracy[f"doubled: {doubled.describe()} (on survivors)"] = float(np.mean(~broken))
    _log(progress, name, f"doubled budget broke {extra_broken} more", start)
    sweep = _sweep(clf, x, y, sweep_eps, norm, batch_size, seed)
    _log(progress, name, "eps sweep done", start)
    confidence = _confidence(clf, x, y, probabilities, eps, norm, batch_size, seed)
    _log(progress, name, "confidence table done", start)
    gradients, masking = _gradients(clf, x, y, predictions == y, batch_size)
    _log(progress, name, "input gradients done", start)
    num_classes = len(class_names)
    per_class = metrics.per_class_accuracy(y, predictions, num_classes, class_names).rename(columns={"accuracy": "clean_accuracy"})
    per_class["adversarial_accuracy"] = metrics.per_class_accuracy(y, adv_predictions, num_classes)["accuracy"]
    robust = ~broken
    at = lambda attack, e: float(sweep[(sweep["attack"] == attack) & np.isclose(sweep["eps"], e)]["adversarial_accuracy"].iloc[0])  # noqa: E731
    square_index = [k for k, a in enumerate(suite.attacks) if a.startswith("square")]
    pgd_sweep = f"pgd-{CHECK_STEPS}"
    checks = [
        checklist.iterative_vs_single_step(at("fgsm", eps), at(pgd_sweep, eps), pgd_sweep.upper()),
        checklist.white_box_vs_transfer(float(robust.mean()), {}),
        checklist.white_box_vs_square(int(sum(np.sum(suite.broken_by == k) for k in square_index)), len(y), bool(square_index)),
        checklist.falls_to_chance(at(pgd_sweep, LARGE_EPS), LARGE_EPS, num_classes) if norm == "inf" else
        checklist.Check("d", "accuracy falls to chance or below as eps grows", None, "L2: no eps = 0.5 point"),
        checklist.random_noise_weaker(accuracy["random_sign"], accuracy[f"pgd-{CHECK_STEPS} (ce, logits)"], pgd_sweep.upper())
        if "random_sign" in accuracy else checklist.Check("e", "random-sign noise weaker than the gradient attack", None, "L2: no random-sign control"),
        checklist.gradients_usable(masking[masking["images"] == "all"]),
        checklist.loss_gap(accuracy[f"pgd-{CHECK_STEPS} (ce, {outputs})"], accuracy[f"pgd-{CHECK_STEPS} (margin, logits)"], outputs),
        checklist.budget_converged(extra_broken, len(y), doubled.describe() if doubled else "nothing")
        if doubled is not None else checklist.Check("h", "doubling iterations and restarts", None, "no attack with steps in the suite"),
        checklist.randomness_handled(stochastic, eot_samples),
    ]  # fmt: skip
    examples[name] = (x[:8], adversarial[:8], y[:8], predictions[:8], adv_predictions[:8], probabilities[:8])
    return ModelEvaluation(
        name, clean, suite, robust, accuracy, sweep, per_class, metrics.confusion_matrix(y, predictions, num_classes),
        metrics.confusion_matrix(y, adv_predictions, num_classes), confidence, gradients, masking, checks, stochastic,
        time.time() - start,
    )  # fmt: skip


def _sweep(clf, x, y, eps_values, norm, batch_size, seed) -> pd.DataFrame:
    tables = [
        robustness.eps_sweep(clf, x, y, attack, eps_values, batch_size=batch_size, seed=seed if attack.takes_seed else None)
        for attack in (attacks.Attack("fgsm", norm=norm), attacks.Attack("pgd", steps=CHECK_STEPS, norm=norm, early_stop=True))
    ]
    table = pd.concat(tables, ignore_index=True)
    table["attack"] = table["attack"].map(lambda a: "fgsm" if a.startswith("fgsm") else f"pgd-{CHECK_STEPS}")
    return table


def _confidence(clf, x, y, clean_probabilities, eps, norm, batch_size, seed) -> pd.DataFrame:
    views = {
        "fast inverse": attacks.Attack("fgsm", norm=norm),
        "fast least-likely": attacks.Attack("fgsm", norm=norm, target="least_likely"),
        "iterative inverse": attacks.Attack("bim", steps=CONFIDENCE_STEPS, norm=norm),
        "iterative least-likely": attacks.Attack("bim", steps=CONFIDENCE_STEPS, norm=norm, target="least_likely"),
    }
    perturbed = {}
    for label, attack in views.items():
        result = attacks.run_attack(clf, (x, y), attack, eps, batch_size=batch_size, seed=seed)
        perturbed[label] = metrics.predict_probabilities(clf, result.adversarial, batch_size)
    return metrics.confidence_table(clean_probabilities, y, perturbed)


def _gradients(clf, x, y, correct, batch_size):
    views = attacks.LOSS_ON if clf.output == "probabilities" else ("logits",)
    table = pd.DataFrame({"label": y, "correct": correct})
    for view in views:
        table[f"norm_{view}"] = robustness.gradient_norms(clf, x, y, loss_on=view, batch_size=batch_size)
    rows = []
    for view in views:
        norms = table[f"norm_{view}"].to_numpy()
        for subset, mask in (("all", np.ones(len(norms), bool)), ("correct", correct), ("incorrect", ~correct)):
            chosen = norms[mask]
            finite = chosen[np.isfinite(chosen)]
            rows.append({
                "loss_on": view, "images": subset, "n": int(mask.sum()),
                "zero_gradient_fraction": float(np.mean(chosen == 0)) if len(chosen) else float("nan"),
                "nonfinite_fraction": float(np.mean(~np.isfinite(chosen))) if len(chosen) else float("nan"),
                "median_norm": float(np.median(finite)) if len(finite) else float("nan"),
            })  # fmt: skip
    return table, pd.DataFrame(rows)


def _transfer(report, attacked, x, y, eps, norm, batch_size, seed, progress) -> pd.DataFrame:
    """Accuracy of every target (columns) on PGD examples crafted on every source (rows); the
    diagonal is white-box. Transfer breaks join each target's worst case, and check (b)."""
    attack = attacks.Attack("pgd", steps=CHECK_STEPS, norm=norm)
    names = list(attacked)
    matrix = pd.DataFrame(index=names, columns=names, dtype=float)
    for source in names:
        start = time.time()
        result = attacks.run_attack(attacked[source], (x, y), attack, eps, batch_size=batch_size, seed=seed)
        for target in names:
            predicted = attacks.predict_classes(attacked[target], result.adversarial, batch_size)
            matrix.loc[source, target] = float(np.mean(predicted == y))
            if target != source:
                evaluation = report.models[target]
                evaluation.robust &= predicted == y
        _log(progress, source, "transfer examples scored on every model", start)
    for target in names:
        evaluation = report.models[target]
        transfer = {source: float(matrix.loc[source, target]) for source in names if source != target}
        evaluation.checks[1] = checklist.white_box_vs_transfer(evaluation.robust_accuracy, transfer)
    return matrix
