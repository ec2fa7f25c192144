"""The robustness report: everything `python -m tfadv.evaluate` measures, as one object.

    report = tfadv.evaluation.evaluate({"standard": m1, "distilled": m2}, images, labels, eps=8 / 255)
    print(report.markdown()); report.write("evaluations/run")

For each model: clean accuracy and top-1/top-5 error; the attack suite (each attack only on the
images still unbroken); the extra attacks the masking checklist needs (FGSM, PGD with
cross-entropy on the outputs and with the margin loss on logits, random signs, a doubled
budget, transfer from the other models); an eps sweep; per-class accuracy and confusion
matrices clean vs adversarial; the Possas confidence table; input-gradient norms. The headline
robust accuracy is the per-image worst case over every attack run at the evaluation eps.

A failed masking check runs its remedy in the same evaluation, folded into the headline:
(b), (c) or (f) -> BPDA, the suite's gradient attacks again through
`tfadv.models.straight_through` on the white-box survivors, their breaks scored on the model
itself; (i) -> the gradient attacks again with 4x the EOT samples; (g) -> the margin/DLR attacks
(already run). A model whose outputs differ between calls is attacked through expectation over
transformation (`tfadv.models.expectation`), and its final images are scored over R fresh
single draws: the headline is the mean accuracy of the draws, beside the share correct in all.
"""

import dataclasses
import os
import time

import numpy as np
import pandas as pd

from tfadv import attacks, models
from tfadv.evaluation import checklist, metrics, robustness
from tfadv.evaluation.engine import CHUNK_SIZE
from tfadv.evaluation.suite import CLEAN_WRONG, SuiteResult, run_suite, suite_attacks

SWEEP_EPS = (0.001, 0.01, 0.03, 0.05, 0.1, 0.3)
LARGE_EPS = 0.5  # check (d)
REMEDY_COLUMNS = ("remedy", "trigger", "attack", "ran_on", "broke", "white_box_robust_accuracy")
GRADIENT_FREE = (
    "square",
    "random_sign",
    "one_pixel",
    "patch",
)  # attacks that never read a gradient
BPDA_TRIGGERS = ("b", "c", "f")  # failed checks whose remedy is BPDA
EOT_REMEDY_FACTOR = (
    4  # check (i)'s remedy: the gradient attacks again with this many times the EOT samples
)
DRAWS = 10  # fresh draws that score a random model's final images
CHECK_STEPS = 20  # PGD steps of the checklist's attacks and the sweep
CONFIDENCE_STEPS = 10  # iterative attacks of the Possas table
PROBE_IMAGES = 64  # images used to tell whether a model is random at inference


@dataclasses.dataclass
class ModelEvaluation:
    """All results of one model (see the module docstring)."""

    name: str
    clean: dict
    suite: SuiteResult
    robust: (
        np.ndarray
    )  # bool (N,): survived every attack at the evaluation eps (the EOT verdict for a random model)
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
    white_box_robust: np.ndarray | None = (
        None  # bool (N,): survived every white-box attack and remedy (no transfer)
    )
    adversarial: np.ndarray | None = dataclasses.field(
        default=None, repr=False
    )  # float32 (N, H, W, C): worst case
    adversarial_predictions: np.ndarray | None = dataclasses.field(default=None, repr=False)
    remedies: pd.DataFrame = dataclasses.field(
        default_factory=lambda: pd.DataFrame(columns=REMEDY_COLUMNS)
    )
    remedy_notes: list = dataclasses.field(
        default_factory=list
    )  # one sentence per remedy (what ran, on what, what it broke)
    randomness: dict = dataclasses.field(
        default_factory=dict
    )  # random models: suite with / without EOT over R draws
    draws: np.ndarray | None = dataclasses.field(
        default=None, repr=False
    )  # bool (R, N): correct per fresh draw
    clean_predictions: np.ndarray | None = dataclasses.field(default=None, repr=False)
    clean_probabilities: np.ndarray | None = dataclasses.field(default=None, repr=False)

    @property
    def correct(self) -> np.ndarray:
        """bool (N,): classified correctly when clean."""
        return self.suite.broken_by != CLEAN_WRONG

    @property
    def robust_accuracy(self) -> float:
        """The headline: the worst case over every attack; for a random model the mean accuracy of R
        fresh single draws on the worst-case images."""
        return float(self.draws.mean()) if self.draws is not None else float(self.robust.mean())

    @property
    def robust_accuracy_all_draws(self) -> float | None:
        """Random models: the share of images correct in all R draws (else None)."""
        return float(self.draws.all(axis=0).mean()) if self.draws is not None else None

    @property
    def robust_accuracy_on_correct(self) -> float:
        correct = self.correct
        if not correct.any():
            return float("nan")
        return (
            float(self.draws[:, correct].mean())
            if self.draws is not None
            else float(self.robust[correct].mean())
        )

    @property
    def white_box_robust_accuracy(self) -> float:
        """Worst case over the white-box attacks and remedies only (transfer left out)."""
        return (
            float(self.white_box_robust.mean())
            if self.white_box_robust is not None
            else self.robust_accuracy
        )

    @property
    def failed_checks(self) -> list:
        return [c.key for c in self.checks if c.passed is False]

    def set_check(self, check) -> None:
        """Replaces the check with the same key."""
        self.checks = [check if c.key == check.key else c for c in self.checks]

    def headline(self) -> dict:
        out = {
            "model": self.name,
            "clean_accuracy": self.clean["accuracy"],
            "robust_accuracy": self.robust_accuracy,
            "robust_accuracy_on_correct": self.robust_accuracy_on_correct,
            "suite_robust_accuracy": self.suite.robust_accuracy,
            "masking_checks_failed": ",".join(self.failed_checks) or "none",
            "remedies": ",".join(dict.fromkeys(self.remedies["remedy"])) or "none",
            "seconds": self.seconds,
        }
        if self.draws is not None:
            out["robust_accuracy_all_draws"] = self.robust_accuracy_all_draws
        return out

    def fold(self, labels, index, images, predictions, white_box: bool = True, attempt=None) -> int:
        """Adds the breaks of an attack on images `index` to the worst case; returns how many are new.

        white_box: the attack saw this model (else it is transfer: only the headline changes).
        attempt: bool mask over `index` (random models): survivors the attack really tried keep its
            images as their final ones, to be scored over fresh draws (a suite keeps the images
            of broken examples only).
        """
        index = np.asarray(index)
        wrong = np.asarray(predictions) != labels[index]
        newly = wrong & self.robust[index]
        hit = index[newly]
        self.adversarial[hit], self.adversarial_predictions[hit], self.robust[hit] = (
            images[newly],
            predictions[newly],
            False,
        )
        if white_box:
            self.white_box_robust[index[wrong]] = False
        if attempt is not None:
            kept = attempt & ~wrong & self.robust[index]
            self.adversarial[index[kept]] = images[kept]
        return int(newly.sum())


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
    examples: dict = dataclasses.field(
        default_factory=dict
    )  # name -> (clean, adversarial, ...) for the grid

    def headline(self) -> pd.DataFrame:
        return pd.DataFrame([m.headline() for m in self.models.values()])

    def summary(self) -> dict:
        """Every number, JSON-able."""
        out = {
            "eps": self.eps,
            "norm": self.norm,
            "suite": self.suite,
            "n": self.n,
            "settings": self.settings,
            "models": {},
        }
        for name, m in self.models.items():
            out["models"][name] = {
                **m.headline(),
                "clean": m.clean,
                "suite": m.suite.summary(),
                "attack_accuracy": m.attack_accuracy,
                "checks": [dataclasses.asdict(c) | {"verdict": c.verdict} for c in m.checks],
                "sweep": m.sweep.to_dict(orient="records"),
                "per_class": m.per_class.to_dict(orient="records"),
                "confidence": m.confidence.to_dict(orient="records"),
                "masking": m.masking.to_dict(orient="records"),
                "confusion_clean": m.confusion_clean.tolist(),
                "confusion_adversarial": m.confusion_adversarial.tolist(),
                "stochastic": m.stochastic,
                "white_box_robust_accuracy": m.white_box_robust_accuracy,
                "remedy_runs": m.remedies.to_dict(orient="records"),
                "remedy_notes": m.remedy_notes,
                "randomness": m.randomness,
            }
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
    if (
        shape is not None
        and len(shape) == 4
        and any(s is not None and s != i for s, i in zip(shape[1:], images.shape[1:], strict=True))
    ):
        raise ValueError(
            f"Model {name!r} takes images of shape {tuple(shape[1:])}. Received: images of shape {images.shape[1:]}"
        )
    classes = clf.num_classes
    if classes is None:
        classes = int(attacks.logits_of(clf, images[:2]).shape[-1])
    if classes != num_classes:
        raise ValueError(
            f"Model {name!r} has {classes} classes; the data set has {num_classes}. Received: num_classes={num_classes}"
        )


def _accuracy_and_breaks(model, images, labels, attack, eps, batch_size, seed):
    result = attacks.run_attack(
        model,
        (images, labels),
        attack,
        eps,
        batch_size=batch_size,
        seed=seed if attack.takes_seed else None,
    )
    return float(np.mean(result.adversarial_predictions == labels)), result


def _gradient_attacks(suite_list) -> list:
    """The suite's attacks that follow a gradient (all but Square and other gradient-free ones)."""
    return [attack for attack in suite_list if attack.name not in GRADIENT_FREE]


def _doubled(suite_list) -> list:
    """Every gradient attack of the suite with twice its steps and restarts (where it takes them;
    n_targets unchanged); attacks with neither are left out."""
    out = []
    for attack in _gradient_attacks(suite_list):
        changes = {
            key: 2 * attack.info.option(attack.options, key)
            for key in ("steps", "restarts")
            if key in attack.info.parameters and attack.info.option(attack.options, key) is not None
        }
        if changes:
            out.append(attack.replace(**changes))
    return out


def _describe(attack_list) -> str:
    return ", ".join(attack.describe() for attack in attack_list)


def evaluate(
    models_in,
    images,
    labels,
    eps,
    *,
    suite="standard",
    norm="inf",
    sweep_eps=SWEEP_EPS,
    class_names=None,
    batch_size: int = 256,
    seed: int = 0,
    eot_samples: int = 8,
    draws: int = DRAWS,
    progress: bool = True,
    store: str | None = None,
    chunk_size: int = CHUNK_SIZE,
    strategy=None,
) -> EvaluationReport:
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
        draws: fresh single draws (R) that score a random model's final adversarial images.
        progress: print one line per stage.
        store: a folder keeping the suite's per-image outcomes of every model, chunk by chunk
            (`<store>/<model>/`; see `tfadv.evaluation.store`): an evaluation killed at any moment
            continues where it stopped, an appended attack runs on the survivors only, more
            images add chunks. None: in memory.
        chunk_size: images per stored work unit.
        strategy: a tf.distribute strategy whose local replicas share each attack call.

    Raises:
        ValueError: empty or mismatched data, eps outside its range, an unknown suite or attack,
            a model whose input shape or class count does not match the data, draws < 1.
    """
    suite_list = suite_attacks(suite, norm)
    norm_name = attacks.norms.get(norm).name
    attacks.checks.check_eps(eps, at_most=1.0 if norm_name == "inf" else None)
    if isinstance(draws, bool) or not isinstance(draws, (int, np.integer)) or draws < 1:
        raise ValueError(f"Expected draws to be an integer >= 1. Received: draws={draws!r}")
    x = attacks.checks.to_images(images).numpy()
    if len(x) == 0:
        raise ValueError("Expected at least one image to evaluate. Received: 0 images")
    y = np.asarray(labels)
    if not np.issubdtype(y.dtype, np.integer) or y.shape != (len(x),):
        raise ValueError(
            f"Expected int labels of shape ({len(x)},). Received: labels {y.dtype} {y.shape}"
        )
    classifiers = {name: models.as_classifier(model) for name, model in _named(models_in).items()}
    if class_names is None:
        first = next(iter(classifiers.values()))
        classes = first.num_classes or int(attacks.logits_of(first, x[:2]).shape[-1])
        class_names = [str(c) for c in range(classes)]
    class_names = list(class_names)
    if y.min() < 0 or y.max() >= len(class_names):
        raise ValueError(
            f"Expected labels in [0, {len(class_names)}). Received: labels with min={y.min()}, max={y.max()}"
        )
    for name, clf in classifiers.items():
        check_data(clf, x, y, len(class_names), name)
        if not getattr(clf, "differentiable", True):
            raise ValueError(
                f"Model {name!r} has no gradients (a TFLite or Python-callable model), and the checklist, sweep and "
                "remedies need them: evaluate the float model, or attack this one with a gradient-free attack "
                f"(tfadv.attack --attack=square or hop_skip_jump). Received: {clf!r}"
            )
    sweep = sorted(
        {*map(float, sweep_eps), float(eps), LARGE_EPS}
        - ({LARGE_EPS} if norm_name == "2" else set())
    )
    settings = {
        "batch_size": batch_size,
        "seed": seed,
        "eot_samples": eot_samples,
        "draws": int(draws),
        "check_steps": CHECK_STEPS,
    }
    report = EvaluationReport(
        float(eps),
        norm_name,
        [a.describe() for a in suite_list],
        len(x),
        {},
        None,
        class_names,
        settings,
    )
    attacked = {}
    for name, clf in classifiers.items():
        attacked[name], stochastic = attacked_view(clf, x, eot_samples)
        suite_store = {
            "store": suite_folder(store, name),
            "chunk_size": chunk_size,
            "strategy": strategy,
        }
        report.models[name] = _evaluate_one(
            name,
            attacked[name],
            stochastic,
            x,
            y,
            float(eps),
            suite_list,
            norm_name,
            sweep,
            class_names,
            batch_size,
            seed,
            eot_samples,
            int(draws),
            progress,
            suite_store,
        )
    if len(classifiers) > 1:
        report.transfer = _transfer(
            report, attacked, x, y, float(eps), norm_name, batch_size, seed, progress
        )
    for name, clf in attacked.items():
        _finish(
            report.models[name],
            clf,
            x,
            y,
            float(eps),
            suite_list,
            norm_name,
            class_names,
            batch_size,
            seed,
            eot_samples,
            int(draws),
            progress,
            report.examples,
        )
    return report


def _log(progress, name, text, start):
    if progress:
        print(f"[{name}] {text} ({time.time() - start:.1f} s)", flush=True)


def _draws(clf, images, labels, counted, draws, batch_size) -> np.ndarray:
    """bool (R, N): each of `draws` single forward passes of a random model (its EOT view's `.base`)
    classifies the image correctly; images not `counted` (wrong when clean) count as wrong."""
    base = getattr(clf, "base", clf)
    return np.stack(
        [
            (attacks.predict_classes(base, images, batch_size) == labels) & counted
            for _ in range(draws)
        ]
    )


def attacked_view(model, images, eot_samples: int):
    """(the view every attack sees, whether the model is random at inference): the classifier,
    or its expectation-over-transformation view when two calls on `images` differ."""
    clf = models.as_classifier(model)
    stochastic = models.is_stochastic(clf, images[:PROBE_IMAGES])
    return (models.expectation(clf, eot_samples) if stochastic else clf), stochastic


def suite_folder(store: str | None, name: str) -> str | None:
    """Where the suite's outcomes of model `name` are kept inside an evaluation's store folder."""
    from tfadv.evaluation.report_files import folder_name

    return None if store is None else os.path.join(store, folder_name(name))


def _evaluate_one(
    name,
    clf,
    stochastic,
    x,
    y,
    eps,
    suite_list,
    norm,
    sweep_eps,
    class_names,
    batch_size,
    seed,
    eot_samples,
    draws,
    progress,
    suite_store,
):
    start = time.time()
    probabilities = metrics.predict_probabilities(clf, x, batch_size)
    predictions = probabilities.argmax(axis=1)
    clean = {
        "accuracy": float(np.mean(predictions == y)),
        "top1_error": metrics.top_k_error(probabilities, y, 1),
        "top5_error": metrics.top_k_error(probabilities, y, 5)
        if probabilities.shape[1] >= 5
        else None,
    }
    _log(progress, name, f"clean accuracy {clean['accuracy']:.4f}", start)
    suite = run_suite(
        clf,
        x,
        y,
        eps,
        suite_list,
        norm=norm,
        batch_size=batch_size,
        seed=seed,
        progress=progress,
        **suite_store,
    )
    _log(progress, name, f"suite robust accuracy {suite.robust_accuracy:.4f}", start)
    num_classes = len(class_names)
    m = ModelEvaluation(
        name,
        clean,
        suite,
        suite.robust.copy(),
        {},
        None,
        None,
        metrics.confusion_matrix(y, predictions, num_classes),
        None,
        None,
        None,
        None,
        [],
        stochastic,
        0.0,
        white_box_robust=suite.robust.copy(),
        adversarial=suite.adversarial.copy(),
        adversarial_predictions=suite.predictions.copy(),
    )
    m.clean_predictions, m.clean_probabilities = predictions, probabilities

    # (h): every gradient attack of the suite with twice the budget, on the suite's survivors
    doubled = _doubled(suite_list)
    extra_broken = 0
    if doubled:
        survivors = np.flatnonzero(suite.robust)
        if len(survivors):
            again = run_suite(
                clf,
                x[survivors],
                y[survivors],
                eps,
                doubled,
                norm=norm,
                batch_size=batch_size,
                seed=seed + 100,
            )
            attacked = again.broken_by != CLEAN_WRONG
            predicted = np.where(attacked, again.predictions, y[survivors])
            extra_broken = m.fold(y, survivors, again.adversarial, predicted)
        m.attack_accuracy[f"doubled: {_describe(doubled)} (on the suite's survivors)"] = float(
            np.mean(m.robust)
        )
    _log(progress, name, f"doubled budget broke {extra_broken} more", start)

    # (i): the same suite without EOT, both scored over fresh single draws
    if stochastic:
        no_eot = run_suite(
            clf.base, x, y, eps, suite_list, norm=norm, batch_size=batch_size, seed=seed
        )
        judged = attacks.predict_classes(clf, no_eot.adversarial, batch_size)  # the EOT verdict
        m.fold(y, np.arange(len(y)), no_eot.adversarial, np.where(no_eot.broken_by >= 0, judged, y))
        m.randomness = {
            "eot_samples": eot_samples,
            "draws": draws,
            "suite_with_eot": float(
                _draws(clf, suite.adversarial, y, m.correct, draws, batch_size).mean()
            ),
            "suite_without_eot": float(
                _draws(clf, no_eot.adversarial, y, m.correct, draws, batch_size).mean()
            ),
        }
        _log(progress, name, "suite without EOT done", start)

    pgd = attacks.Attack("pgd", steps=CHECK_STEPS, norm=norm, early_stop=True)
    outputs = "probabilities" if clf.output == "probabilities" else "logits"
    extra = {
        "fgsm": attacks.Attack("fgsm", norm=norm),
        f"pgd-{CHECK_STEPS} (ce, logits)": pgd,
        f"pgd-{CHECK_STEPS} (ce, {outputs})": pgd.replace(loss_on=outputs),
        f"pgd-{CHECK_STEPS} (margin, logits)": pgd.replace(loss="margin"),
        "random_sign": attacks.Attack("random_sign"),
    }
    accuracy = m.attack_accuracy
    for label, attack in extra.items():
        if label == "random_sign" and norm != "inf":
            continue
        accuracy[label], result = _accuracy_and_breaks(clf, x, y, attack, eps, batch_size, seed)
        tried = (
            stochastic and attack is pgd
        )  # a random model's survivors keep PGD's images, for the draws
        m.fold(
            y,
            np.arange(len(y)),
            result.adversarial,
            result.adversarial_predictions,
            attempt=m.correct if tried else None,
        )
    _log(
        progress,
        name,
        "checklist attacks "
        + ", ".join(f"{k} {v:.4f}" for k, v in accuracy.items() if not k.startswith("doubled")),
        start,
    )
    m.sweep = sweep = _sweep(clf, x, y, sweep_eps, norm, batch_size, seed)
    _log(progress, name, "eps sweep done", start)
    m.confidence = _confidence(clf, x, y, probabilities, eps, norm, batch_size, seed)
    _log(progress, name, "confidence table done", start)
    m.gradient_norms, m.masking = _gradients(clf, x, y, predictions == y, batch_size)
    masking = m.masking
    _log(progress, name, "input gradients done", start)

    def at(attack, e):
        return float(
            sweep[(sweep["attack"] == attack) & np.isclose(sweep["eps"], e)][
                "adversarial_accuracy"
            ].iloc[0]
        )  # noqa: E731

    square_index = [k for k, a in enumerate(suite.attacks) if a.startswith("square")]
    pgd_sweep = f"pgd-{CHECK_STEPS}"
    m.checks = [
        checklist.iterative_vs_single_step(at("fgsm", eps), at(pgd_sweep, eps), pgd_sweep.upper()),
        checklist.white_box_vs_transfer(0, len(y), {}),
        checklist.white_box_vs_square(
            int(sum(np.sum(suite.broken_by == k) for k in square_index)), len(y), bool(square_index)
        ),
        checklist.falls_to_chance(at(pgd_sweep, LARGE_EPS), LARGE_EPS, num_classes)
        if norm == "inf"
        else checklist.Check(
            "d", "accuracy falls to chance or below as eps grows", None, "L2: no eps = 0.5 point"
        ),
        checklist.random_noise_weaker(
            accuracy["random_sign"], accuracy[f"pgd-{CHECK_STEPS} (ce, logits)"], pgd_sweep.upper()
        )
        if "random_sign" in accuracy
        else checklist.Check(
            "e",
            "random-sign noise weaker than the gradient attack",
            None,
            "L2: no random-sign control",
        ),
        checklist.gradients_usable(masking[masking["images"] == "all"]),
        checklist.loss_gap(
            accuracy[f"pgd-{CHECK_STEPS} (ce, {outputs})"],
            accuracy[f"pgd-{CHECK_STEPS} (margin, logits)"],
            outputs,
        ),
        checklist.budget_converged(extra_broken, len(y), _describe(doubled))
        if doubled
        else checklist.Check(
            "h",
            "doubling iterations and restarts",
            None,
            "no gradient attack with steps or restarts in the suite",
        ),
        checklist.randomness_handled(False, eot_samples),  # scored over draws in _finish
    ]
    m.seconds = time.time() - start
    return m


def _sweep(clf, x, y, eps_values, norm, batch_size, seed) -> pd.DataFrame:
    tables = [
        robustness.eps_sweep(
            clf,
            x,
            y,
            attack,
            eps_values,
            batch_size=batch_size,
            seed=seed if attack.takes_seed else None,
        )
        for attack in (
            attacks.Attack("fgsm", norm=norm),
            attacks.Attack("pgd", steps=CHECK_STEPS, norm=norm, early_stop=True),
        )
    ]
    table = pd.concat(tables, ignore_index=True)
    table["attack"] = table["attack"].map(
        lambda a: "fgsm" if a.startswith("fgsm") else f"pgd-{CHECK_STEPS}"
    )
    return table


def _confidence(clf, x, y, clean_probabilities, eps, norm, batch_size, seed) -> pd.DataFrame:
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
        result = attacks.run_attack(clf, (x, y), attack, eps, batch_size=batch_size, seed=seed)
        perturbed[label] = metrics.predict_probabilities(clf, result.adversarial, batch_size)
    return metrics.confidence_table(clean_probabilities, y, perturbed)


def _gradients(clf, x, y, correct, batch_size):
    views = attacks.LOSS_ON if clf.output == "probabilities" else ("logits",)
    table = pd.DataFrame({"label": y, "correct": correct})
    for view in views:
        table[f"norm_{view}"] = robustness.gradient_norms(
            clf, x, y, loss_on=view, batch_size=batch_size
        )
    rows = []
    for view in views:
        norms = table[f"norm_{view}"].to_numpy()
        for subset, mask in (
            ("all", np.ones(len(norms), bool)),
            ("correct", correct),
            ("incorrect", ~correct),
        ):
            chosen = norms[mask]
            finite = chosen[np.isfinite(chosen)]
            rows.append(
                {
                    "loss_on": view,
                    "images": subset,
                    "n": int(mask.sum()),
                    "zero_gradient_fraction": float(np.mean(chosen == 0))
                    if len(chosen)
                    else float("nan"),
                    "nonfinite_fraction": float(np.mean(~np.isfinite(chosen)))
                    if len(chosen)
                    else float("nan"),
                    "median_norm": float(np.median(finite)) if len(finite) else float("nan"),
                }
            )
    return table, pd.DataFrame(rows)


def _transfer(report, attacked, x, y, eps, norm, batch_size, seed, progress) -> pd.DataFrame:
    """Accuracy of every target (columns) on PGD examples crafted on every source (rows); the
    diagonal is white-box. Check (b) counts the images transfer broke that every white-box attack
    missed; then the transfer breaks join each target's headline (not its white-box worst case)."""
    attack = attacks.Attack("pgd", steps=CHECK_STEPS, norm=norm)
    names = list(attacked)
    matrix = pd.DataFrame(index=names, columns=names, dtype=float)
    found = {target: [] for target in names}  # target -> [(transfer images, predictions)]
    for source in names:
        start = time.time()
        result = attacks.run_attack(
            attacked[source], (x, y), attack, eps, batch_size=batch_size, seed=seed
        )
        for target in names:
            predicted = attacks.predict_classes(attacked[target], result.adversarial, batch_size)
            matrix.loc[source, target] = float(np.mean(predicted == y))
            if target != source:
                found[target].append((result.adversarial, predicted))
        _log(progress, source, "transfer examples scored on every model", start)
    for target in names:
        m = report.models[target]
        broke = np.zeros(len(y), bool)
        for _, predicted in found[target]:
            broke |= (predicted != y) & m.correct
        accuracy = {
            source: float(matrix.loc[source, target]) for source in names if source != target
        }
        m.set_check(
            checklist.white_box_vs_transfer(
                int(np.sum(broke & m.white_box_robust)), len(y), accuracy
            )
        )
        for images, predicted in found[target]:
            m.fold(y, np.arange(len(y)), images, np.where(m.correct, predicted, y), white_box=False)
    return matrix


def _finish(
    m,
    clf,
    x,
    y,
    eps,
    suite_list,
    norm,
    class_names,
    batch_size,
    seed,
    eot_samples,
    draws,
    progress,
    examples,
):
    """Check (i) over fresh draws, the remedies of the failed checks, and the tables of the final worst case."""
    start = time.time()
    if m.stochastic:
        first = _draws(clf, m.adversarial, y, m.correct, draws, batch_size).mean(axis=1)
        m.set_check(
            checklist.randomness_handled(
                True,
                eot_samples,
                first,
                m.randomness["suite_with_eot"],
                m.randomness["suite_without_eot"],
            )
        )
        m.randomness["accuracy_per_draw_before_remedies"] = first.tolist()
    _remedies(m, clf, x, y, eps, suite_list, norm, batch_size, seed, eot_samples, progress)
    if m.stochastic:
        m.draws = _draws(clf, m.adversarial, y, m.correct, draws, batch_size)
        m.randomness["accuracy_per_draw"] = m.draws.mean(axis=1).tolist()
        m.randomness["correct_in_all_draws"] = m.robust_accuracy_all_draws
    num_classes = len(class_names)
    predictions = m.clean_predictions
    per_class = metrics.per_class_accuracy(y, predictions, num_classes, class_names).rename(
        columns={"accuracy": "clean_accuracy"}
    )
    per_class["adversarial_accuracy"] = metrics.per_class_accuracy(
        y, m.adversarial_predictions, num_classes
    )["accuracy"]
    m.per_class = per_class
    m.confusion_adversarial = metrics.confusion_matrix(y, m.adversarial_predictions, num_classes)
    examples[m.name] = (
        x[:8],
        m.adversarial[:8],
        y[:8],
        predictions[:8],
        m.adversarial_predictions[:8],
        m.clean_probabilities[:8],
    )
    m.seconds += time.time() - start
    _log(progress, m.name, f"robust accuracy {m.robust_accuracy:.4f}", start)


def _remedies(m, clf, x, y, eps, suite_list, norm, batch_size, seed, eot_samples, progress):
    """Runs the remedy of every failed check (see the module docstring) and folds in its breaks."""
    failed = set(m.failed_checks)
    gradient = _gradient_attacks(suite_list)
    bpda = sorted(failed & set(BPDA_TRIGGERS))
    if bpda and not gradient:
        m.remedy_notes.append(
            f"({', '.join(bpda)}) failed -> BPDA: not run, the suite has no gradient attack to rerun."
        )
    elif bpda:
        _bpda(
            m,
            clf,
            x,
            y,
            eps,
            gradient,
            ",".join(bpda),
            norm,
            batch_size,
            seed,
            eot_samples,
            progress,
        )
    if "i" in failed and not gradient:
        m.remedy_notes.append(
            "(i) failed -> more EOT samples: not run, the suite has no gradient attack to rerun."
        )
    elif "i" in failed:
        samples = EOT_REMEDY_FACTOR * eot_samples
        _run_remedy(
            m,
            f"eot x{samples}",
            "i",
            models.expectation(clf.base, samples),
            clf,
            x,
            y,
            eps,
            gradient,
            norm,
            batch_size,
            seed + 300,
            progress,
            f"the gradient attacks again with EOT over {samples} draws ({EOT_REMEDY_FACTOR}x)",
        )
    if "g" in failed:
        margin = [
            a.describe()
            for a in suite_list
            if a.info.option(a.options, "loss") in ("margin", "dlr")
            or a.name in ("apgd_t", "fab_t")
        ]
        where = f"the suite's {', '.join(margin)}" if margin else "no attack of the suite"
        m.remedy_notes.append(
            f"(g) failed -> margin/DLR losses on the logits: already run ({where}, and the checklist's "
            f"PGD-{CHECK_STEPS} with the margin loss on logits); their breaks are in the headline."
        )


def _bpda(m, clf, x, y, eps, gradient, trigger, norm, batch_size, seed, eot_samples, progress):
    """BPDA: the gradient attacks through `tfadv.models.straight_through` of the model."""
    base = getattr(clf, "base", clf)
    probe = x[:PROBE_IMAGES]
    try:
        layers = models.nondifferentiable_layers(base.model, probe)
        if not layers:
            raise ValueError(
                "no layer passes a zero, undefined or non-finite gradient on these images"
            )
        view = models.as_classifier(models.straight_through(base.model, layers=layers))
    except (ValueError, TypeError) as error:
        m.remedy_notes.append(f"({trigger}) failed -> BPDA: not run ({error}).")
        return
    attacked = models.expectation(view, eot_samples) if m.stochastic else view
    _run_remedy(
        m,
        "bpda",
        trigger,
        attacked,
        clf,
        x,
        y,
        eps,
        gradient,
        norm,
        batch_size,
        seed + 200,
        progress,
        f"the gradient attacks again through straight_through (identity backward pass through {', '.join(layers)})",
    )


def _run_remedy(
    m, label, trigger, view, clf, x, y, eps, attack_list, norm, batch_size, seed, progress, what
):
    """Runs `attack_list` on `view` over the white-box survivors, scores the images on `clf` (the
    model as evaluated), folds the breaks in and records one row per attack and one note."""
    start = time.time()
    survivors = np.flatnonzero(m.white_box_robust)
    before, headline_before = m.white_box_robust_accuracy, float(m.robust.mean())
    rows = []
    if len(survivors):
        result = run_suite(
            view,
            x[survivors],
            y[survivors],
            eps,
            attack_list,
            norm=norm,
            batch_size=batch_size,
            seed=seed,
        )
        judged = attacks.predict_classes(
            clf, result.adversarial, batch_size
        )  # scored on the model itself
        attacked = result.broken_by != CLEAN_WRONG
        judged = np.where(attacked, judged, y[survivors])
        wrong = judged != y[survivors]
        remaining = len(survivors)
        for k, (attack, ran_on) in enumerate(zip(result.attacks, result.ran_on, strict=True)):
            broke = int(np.sum(wrong & (result.broken_by == k)))
            remaining -= broke
            rows.append(
                {
                    "remedy": label,
                    "trigger": trigger,
                    "attack": f"{label}: {attack}",
                    "ran_on": ran_on,
                    "broke": broke,
                    "white_box_robust_accuracy": (
                        np.sum(m.white_box_robust) - (len(survivors) - remaining)
                    )
                    / len(y),
                }
            )
        m.fold(y, survivors, result.adversarial, judged)
    m.remedies = (
        pd.concat([m.remedies, pd.DataFrame(rows, columns=REMEDY_COLUMNS)], ignore_index=True)
        if rows
        else m.remedies
    )
    broke = int(sum(row["broke"] for row in rows))
    m.remedy_notes.append(
        f"({trigger}) failed -> {label}: {what}, on the {len(survivors)} images every white-box attack missed: "
        f"broke {broke}; white-box robust accuracy {before:.4f} -> {m.white_box_robust_accuracy:.4f}, "
        f"headline {headline_before:.4f} -> {float(m.robust.mean()):.4f}."
    )
    m.seconds += time.time() - start
    _log(progress, m.name, f"remedy {label} broke {broke} of {len(survivors)}", start)
