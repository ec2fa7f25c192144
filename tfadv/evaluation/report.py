"""The robustness report: everything `python -m tfadv.evaluate` measures, as one object.

    report = tfadv.evaluation.evaluate(
        {"standard": m1, "distilled": m2}, images, labels, eps=8 / 255
    )
    print(report.markdown()); report.write("evaluations/run")

An evaluation loops over sections (`tfadv.evaluation.sections`: clean, suite, checklist, sweep,
confidence, gradients, transfer, and distances on request), each a probe that keeps its units in
the evaluation store; then the masking checklist from what they measured, and the remedy of every
failed check (`tfadv.evaluation.remedies`). The headline robust accuracy is the per-image worst
case over every attack run at the evaluation eps; a model whose outputs differ between calls is
attacked through expectation over transformation (`tfadv.models.expectation`), and its final
images are scored over R fresh single draws: the headline is the mean accuracy of the draws,
beside the share correct in all. With a store folder, a finished evaluation is rebuilt without
calling the model, and a section added to it runs alone.
"""

import dataclasses
import os
from dataclasses import field

import numpy as np
import pandas as pd

from tfadv import attacks, models
from tfadv.evaluation import metrics, sections
from tfadv.evaluation.engine import CHUNK_SIZE, model_fingerprint
from tfadv.evaluation.probe import Context, eps_max, run_probe
from tfadv.evaluation.remedies import REMEDY_COLUMNS, Remedies
from tfadv.evaluation.store import SectionUnits, fingerprint
from tfadv.evaluation.suite import CLEAN_WRONG, SuiteResult, suite_attacks

SWEEP_EPS = sections.SWEEP_EPS
DRAWS = 10  # fresh draws that score a random model's final images
PROBE_IMAGES = 64  # images used to tell whether a model is random at inference
PER_IMAGE = ("gradient_norms", "distances")  # tables kept out of summary.json


@dataclasses.dataclass
class ModelEvaluation:
    """All results of one model (see the module docstring); a section may add its own results as
    attributes (the checklist's `doubled`, the distances' `distances`, `distance_curve`, ...)."""

    name: str
    stochastic: bool = False  # outputs differ between calls: attacked through EOT
    seconds: float = 0.0
    clean: dict = dataclasses.field(default_factory=dict)
    suite: SuiteResult | None = None
    robust: np.ndarray | None = None  # bool (N,): survived every attack at the evaluation eps
    white_box_robust: np.ndarray | None = None  # bool (N,): every white-box attack and remedy
    adversarial: np.ndarray | None = field(default=None, repr=False)  # (N, H, W, C): worst case
    adversarial_predictions: np.ndarray | None = field(default=None, repr=False)
    clean_predictions: np.ndarray | None = field(default=None, repr=False)
    clean_probabilities: np.ndarray | None = field(default=None, repr=False)
    attack_accuracy: dict = dataclasses.field(default_factory=dict)  # extra attacks, at eps
    sweep: pd.DataFrame | None = None
    confidence: pd.DataFrame | None = None
    gradient_norms: pd.DataFrame | None = None  # per image: correct, norm on each view
    masking: pd.DataFrame | None = None
    per_class: pd.DataFrame | None = None
    confusion_clean: np.ndarray | None = None
    confusion_adversarial: np.ndarray | None = None
    checks: list = dataclasses.field(default_factory=list)
    remedies: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=REMEDY_COLUMNS))
    remedy_notes: list = dataclasses.field(default_factory=list)  # one sentence per remedy
    randomness: dict = dataclasses.field(default_factory=dict)  # random models: EOT vs not
    draws: np.ndarray | None = field(default=None, repr=False)  # bool (R, N): correct per draw
    sections: list = dataclasses.field(default_factory=list)  # the probes that ran, in order

    def probes(self) -> list:
        """The probes of the sections that ran on this model, in order."""
        known = sections.probes()
        return [known[name] for name in self.sections if name in known]

    @property
    def folder(self) -> str:
        """This model's folder inside a report folder."""
        from tfadv.evaluation.report_files import folder_name

        return folder_name(self.name)

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
        """Adds the breaks of an attack on images `index` to the worst case; returns how many are
        new.

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
                "per_class": m.per_class.to_dict(orient="records"),
                "confusion_clean": m.confusion_clean.tolist(),
                "confusion_adversarial": m.confusion_adversarial.tolist(),
                "stochastic": m.stochastic,
                "white_box_robust_accuracy": m.white_box_robust_accuracy,
                "remedy_runs": m.remedies.to_dict(orient="records"),
                "remedy_notes": m.remedy_notes,
                "randomness": m.randomness,
                "sections": m.sections,
                **{
                    table: frame.to_dict(orient="records")
                    for probe in m.probes()
                    for table, frame in probe.tables(m).items()
                    if table not in PER_IMAGE
                },
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
            f"Expected images of the shape model {name!r} takes, {tuple(shape[1:])}. "
            f"Received: images of shape {images.shape[1:]}"
        )
    classes = clf.num_classes
    if classes is None:
        classes = int(attacks.logits_of(clf, images[:2]).shape[-1])
    if classes != num_classes:
        raise ValueError(
            f"Expected a model with as many classes as the data set ({num_classes}). "
            f"Received: model {name!r} with {classes} classes"
        )


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
    sections_run=None,
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
        store: a folder keeping every model's suite outcomes chunk by chunk and its sections'
            units (`<store>/<model>/`; see `tfadv.evaluation.store`): an evaluation killed at any
            moment continues where it stopped, an appended attack runs on the survivors only,
            more images add chunks, a finished one is rebuilt without a model call and an added
            section runs alone. None: in memory.
        chunk_size: images per stored work unit.
        strategy: a tf.distribute strategy whose local replicas share each attack call.
        sections_run: the sections to run, a comma string or list of names or "all" (see
            `tfadv.evaluation.sections`; default: all but distances).

    Raises:
        ValueError: empty or mismatched data, eps outside its range, an unknown suite, attack or
            section, a model whose input shape or class count does not match the data, draws < 1.
    """
    probes = sections.select(sections_run)
    suite_list = suite_attacks(suite, norm)
    norm = attacks.norms.get(norm)
    attacks.checks.check_eps(eps, at_most=eps_max(norm))
    if isinstance(draws, bool) or not isinstance(draws, (int, np.integer)) or draws < 1:
        raise ValueError(f"Expected draws to be an integer >= 1. Received: draws={draws!r}")
    x, y, classifiers, class_names = _inputs(models_in, images, labels, class_names)
    settings = {
        "batch_size": batch_size,
        "seed": seed,
        "eot_samples": eot_samples,
        "draws": int(draws),
        "check_steps": sections.CHECK_STEPS,
        "sections": [p.name for p in probes],
    }
    described = [a.describe() for a in suite_list]
    report = EvaluationReport(
        float(eps), norm.name, described, len(x), {}, None, class_names, settings
    )
    data = fingerprint(x, y)
    contexts = {}
    for name, clf in classifiers.items():
        units = SectionUnits(suite_folder(store, name))
        view, stochastic = _view(clf, x, eot_samples, units, data)
        base_key = f"{model_fingerprint(view)}:{data}:{float(eps)!r}:{norm.name}:{seed}"
        contexts[name] = Context(
            name,
            view,
            x,
            y,
            float(eps),
            norm,
            suite_list,
            [float(e) for e in sweep_eps],
            class_names,
            batch_size,
            seed,
            eot_samples,
            int(draws),
            progress,
            {"store": suite_folder(store, name), "chunk_size": chunk_size, "strategy": strategy},
            units,
            base_key,
            m=ModelEvaluation(name, stochastic),
        )
    views = {name: c.clf for name, c in contexts.items()}
    for name, c in contexts.items():
        c.views = views
        report.models[name] = m = c.m
        for probe in probes:
            if probe.name == "transfer" and len(views) < 2:
                continue
            run_probe(probe, c)
            m.sections.append(probe.name)
        m.checks = sections.checks(m, c, m.sections)
    if all("transfer" in m.sections for m in report.models.values()) and len(views) > 1:
        report.transfer = sections.apply_transfer(report, y)
    for c in contexts.values():
        run_probe(Remedies([s for s in c.m.sections if s in sections.FOLDING]), c)
        _worst_case(c.m, x, y, class_names, report.examples)
        c.log(f"robust accuracy {c.m.robust_accuracy:.4f}")
    return report


def _inputs(models_in, images, labels, class_names):
    """(images, labels, {name: classifier}, class names), checked."""
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
            f"Expected labels in [0, {len(class_names)}). "
            f"Received: labels with min={y.min()}, max={y.max()}"
        )
    for name, clf in classifiers.items():
        check_data(clf, x, y, len(class_names), name)
        if not getattr(clf, "differentiable", True):
            raise ValueError(
                f"Expected a model with gradients (the checklist, sweep and remedies need them): "
                "evaluate the float model, or attack this one with a gradient-free attack "
                f"(tfadv.attack --attack=square or hop_skip_jump). Received: {name}={clf!r}"
            )
    return x, y, classifiers, class_names


def _view(clf, x, eot_samples, units, data):
    """(the view every attack sees, whether the model is random at inference), the latter kept
    in the section store so that a rebuilt evaluation asks the model nothing."""
    key = f"{model_fingerprint(clf)}:{data}:{eot_samples}"
    kept = units.get("view", key)
    if kept is None:
        kept = {"stochastic": np.bool_(models.is_stochastic(clf, x[:PROBE_IMAGES]))}
        units.put("view", key, kept)
    stochastic = bool(kept["stochastic"])
    return (models.expectation(clf, eot_samples) if stochastic else clf), stochastic


def _worst_case(m, x, y, class_names, examples) -> None:
    """Per-class accuracy, the adversarial confusion matrix and the example grid of the final
    worst case (no model call)."""
    num_classes = len(class_names)
    per_class = metrics.per_class_accuracy(y, m.clean_predictions, num_classes, class_names)
    per_class = per_class.rename(columns={"accuracy": "clean_accuracy"})
    adversarial = metrics.per_class_accuracy(y, m.adversarial_predictions, num_classes)
    per_class["adversarial_accuracy"] = adversarial["accuracy"]
    m.per_class = per_class
    m.confusion_adversarial = metrics.confusion_matrix(y, m.adversarial_predictions, num_classes)
    examples[m.name] = (
        x[:8],
        m.adversarial[:8],
        y[:8],
        m.clean_predictions[:8],
        m.adversarial_predictions[:8],
        m.clean_probabilities[:8],
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
