"""Kill, resume, compare: is a run interrupted at a given moment and continued with resume=True
the same run as the uninterrupted one? (tests/test_resume.py, tools/study_resume.py)

    points = kill_points(config)                       # every stage's epochs, stage ends, export,
    evaluation
    rows = check(config, points, work_dir)             # [Row(point, reference, resumed, equal),
    ...]

A kill point names a moment of the run:

    KillPoint("teacher", "epoch", 2)   in epoch 2 (0-based) of stage "teacher": epochs 0-1 finished
    KillPoint("model", "stage_end")    after the stage's last epoch, before it is marked finished
    KillPoint("run", "export")         in the export, after the first model was written
    KillPoint("run", "evaluation")     in the test-accuracy computation, after the export

Two ways to interrupt:
- "snapshot": the uninterrupted run copies its run folder at each kill point, which is the
  folder a kill at that moment leaves behind (all its writes are atomic), and each copy is
  resumed. One reference run serves every kill point of a configuration.
- "raise": a separate run raises `Interrupted` at the kill point (inside fit, export or the
  evaluation) and is then resumed in its folder.
A real `kill -9` of the CLI is tools/check_resume.py.
"""

import contextlib
import dataclasses
import os
import shutil

import keras

from tfadv import evaluation
from tfadv.experiment import run_folder
from tfadv.experiment.config import DISTILLATION_RECIPES

MOMENTS = ("epoch", "stage_end", "export", "evaluation")


class Interrupted(Exception):
    """Raised at a kill point (mode "raise")."""


@dataclasses.dataclass(frozen=True)
class KillPoint:
    """A moment of a run: `moment` in MOMENTS; `stage` ("model", "teacher", "student"; "run" for
    export and evaluation); `epoch` (0-based) for "epoch": killed in that epoch, after the
    previous ones finished."""

    stage: str
    moment: str
    epoch: int = 0

    def __post_init__(self):
        if self.moment not in MOMENTS:
            raise ValueError(f"Expected moment in {MOMENTS}. Received: moment={self.moment!r}")
        if self.moment == "epoch" and self.epoch < 1:
            raise ValueError(
                "Expected epoch >= 1 (at least one finished epoch before the kill). Received: "
                f"epoch={self.epoch!r}"
            )

    def describe(self) -> str:
        if self.moment == "epoch":
            return f"in epoch {self.epoch + 1} (after {self.epoch} finished)"
        return {
            "stage_end": "after the last epoch, before the stage is marked done",
            "export": "in the export (first model written)",
            "evaluation": "in the test-accuracy evaluation (after the export)",
        }[self.moment]


@dataclasses.dataclass
class Row:
    point: KillPoint
    mode: str
    reference: dict  # summary.json "weights" of the uninterrupted run: name -> checksum
    resumed: dict
    reference_accuracy: dict
    resumed_accuracy: dict
    resumed_epochs: dict  # stage -> epochs the resumed run trained (stages it fit at all)

    @property
    def equal(self) -> bool:
        return self.reference == self.resumed and self.reference_accuracy == self.resumed_accuracy


def stages(config) -> tuple:
    """The stages a run trains, in order."""
    if config.recipe in DISTILLATION_RECIPES:
        return ("student",) if config.teacher_dir else ("teacher", "student")
    return ("model",)


def kill_points(config, moments=MOMENTS) -> list:
    """Every kill point of a run: in each epoch after the first and at the end of every stage,
    then in the export and in the evaluation (those among `moments`)."""
    points = []
    for stage in stages(config):
        if "epoch" in moments:
            points += [KillPoint(stage, "epoch", epoch) for epoch in range(1, config.epochs)]
        if "stage_end" in moments:
            points.append(KillPoint(stage, "stage_end"))
    return points + [
        KillPoint("run", moment) for moment in ("export", "evaluation") if moment in moments
    ]


def copy_run_folder(source: str, target: str) -> None:
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)


class _AtKillPoints(keras.callbacks.Callback):
    """Calls act(point) at the kill points inside training: the n-th fit of the run is stage n."""

    def __init__(self, stage_names, points, act):
        super().__init__()
        self.stage_names, self.points, self.act = stage_names, set(points), act
        self.fits = 0

    def _at(self, point):
        if point in self.points:
            self.act(point)

    def on_train_begin(self, logs=None):
        self.fits += 1
        self.stage = self.stage_names[min(self.fits, len(self.stage_names)) - 1]

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (
            batch == 1 and self._epoch >= 1
        ):  # mid-epoch (the tiny runs have >= 3 batches); the previous epoch's backup is written
            self._at(KillPoint(self.stage, "epoch", self._epoch))

    def on_train_end(self, logs=None):
        self._at(KillPoint(self.stage, "stage_end"))


@contextlib.contextmanager
def _at_export_and_evaluation(points, act):
    """Within: run_folder.export_models exports model by model and calls act(export point) after
    the first; the first evaluation.predict_probabilities after the export calls act(evaluation)."""
    export_models, predict = run_folder.export_models, evaluation.predict_probabilities
    exported = []

    def export_one_by_one(output_dir, named_models):
        paths = {}
        for name, model in named_models.items():
            paths.update(export_models(output_dir, {name: model}))
            if len(paths) == 1 and KillPoint("run", "export") in points:
                act(KillPoint("run", "export"))
        exported.append(True)
        return paths

    def predict_after_export(*args, **kwargs):
        if exported and KillPoint("run", "evaluation") in points:
            exported.clear()
            act(KillPoint("run", "evaluation"))
        return predict(*args, **kwargs)

    run_folder.export_models, evaluation.predict_probabilities = (
        export_one_by_one,
        predict_after_export,
    )
    try:
        yield
    finally:
        run_folder.export_models, evaluation.predict_probabilities = export_models, predict


def _folder(work_dir, point, mode) -> str:
    name = f"{point.stage}-{point.moment}" + (f"{point.epoch}" if point.moment == "epoch" else "")
    return os.path.join(work_dir, f"{mode}-{name}")


def reference_with_snapshots(config, points, work_dir):
    """The uninterrupted run (in work_dir/uninterrupted), copying its run folder at each kill
    point to work_dir/snapshot-<point>; returns (its RunSummary, {point: copy})."""
    from tfadv.experiment.run import run_training

    run_dir = os.path.join(work_dir, "uninterrupted")
    copies = {}

    def snapshot(point):
        copies[point] = _folder(work_dir, point, "snapshot")
        copy_run_folder(run_dir, copies[point])

    config = dataclasses.replace(config, output_dir=run_dir, overwrite=True, resume=False)
    with _at_export_and_evaluation(points, snapshot):
        summary = run_training(
            config, extra_callbacks=[_AtKillPoints(stages(config), points, snapshot)]
        )
    missing = set(points) - set(copies)
    if missing:
        raise ValueError(
            "Expected the run to pass every kill point. Received: points never reached "
            f"{sorted(map(str, missing))}"
        )
    return summary, copies


def interrupt(config, point, work_dir) -> str:
    """Runs `config` in work_dir/raise-<point>, raising `Interrupted` at `point`; returns the
    folder."""
    from tfadv.experiment.run import run_training

    folder = _folder(work_dir, point, "raise")
    config = dataclasses.replace(config, output_dir=folder, overwrite=True, resume=False)

    def stop(point):
        raise Interrupted(str(point))

    try:
        with _at_export_and_evaluation({point}, stop):
            run_training(config, extra_callbacks=[_AtKillPoints(stages(config), {point}, stop)])
    except Interrupted:
        return folder
    raise ValueError(
        f"Expected the run to reach the kill point. Received: point={point}, never reached"
    )


class _EpochCounter(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.fits = []  # epochs trained by each fit

    def on_train_begin(self, logs=None):
        self.fits.append(0)

    def on_epoch_begin(self, epoch, logs=None):
        self.fits[-1] += 1


def resume_in(config, folder):
    """Continues the run folder `folder` with resume=True; returns its RunSummary and
    {stage: epochs trained} for the stages it fit (the last ones: finished stages are not fit)."""
    from tfadv.experiment.run import run_training

    counter = _EpochCounter()
    summary = run_training(
        dataclasses.replace(config, output_dir=folder, resume=True, overwrite=False),
        extra_callbacks=[counter],
    )
    names = stages(config)
    return summary, dict(zip(names[len(names) - len(counter.fits) :], counter.fits, strict=True))


def check(config, points, work_dir, mode="snapshot", reference=None) -> list:
    """Kill at each of `points` (mode "snapshot" or "raise"), resume, compare with the
    uninterrupted run (`reference`, a RunSummary, is run here when not given); one Row a point."""
    if mode not in ("snapshot", "raise"):
        raise ValueError(f"Expected mode 'snapshot' or 'raise'. Received: mode={mode!r}")
    if mode == "snapshot":
        reference, folders = reference_with_snapshots(config, points, work_dir)
    else:
        if reference is None:
            from tfadv.experiment.run import run_training

            reference = run_training(
                dataclasses.replace(
                    config, output_dir=os.path.join(work_dir, "uninterrupted"), overwrite=True
                )
            )
        folders = {point: interrupt(config, point, work_dir) for point in points}
    rows = []
    for point in points:
        resumed, trained = resume_in(config, folders[point])
        rows.append(
            Row(
                point,
                mode,
                reference.weights,
                resumed.weights,
                reference.test_accuracy,
                resumed.test_accuracy,
                trained,
            )
        )
    return rows
