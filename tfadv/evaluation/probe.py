"""The evaluation's sections as probes: each measures one thing, keeps what it measured as units
(NumPy arrays) in the evaluation store, and derives its tables, figures and report lines from them.

    class Probe:
        name = "sweep"; needs = ("clean",)
        def run(self, context) -> dict: ...            # model calls; returns the units to keep
        def apply(self, m, units, context): ...        # no model call: units -> ModelEvaluation
        def tables(self, m) -> dict; figures(self, m, report) -> dict
        def markdown(self, m, report) -> list

`run_probe` runs a probe only when the store has no units of it made with the same key (the
settings, the data, the model and the keys of the sections it needs): a finished evaluation is
rebuilt without calling the model, and a section added to it runs alone. Attacks whose breaks
join the worst case record them with `Folds`, which `replay` folds into the evaluation again.
"""

import dataclasses
import hashlib
import json
import time

import numpy as np
import pandas as pd

from tfadv.attacks import norms


@dataclasses.dataclass
class Context:
    """What a probe of one model sees: the model as attacked (`clf`, its EOT view for a random
    model), the images, the settings, the evaluation so far (`m`) and the section store."""

    name: str
    clf: object
    x: np.ndarray  # float32 (N, H, W, C) in [0, 1]
    y: np.ndarray  # int (N,)
    eps: float  # pixel scale
    norm: object  # a tfadv.attacks.norms.Norm
    suite_list: list
    sweep_eps: list
    class_names: list
    batch_size: int
    seed: int
    eot_samples: int
    draws: int
    progress: bool
    suite_store: dict
    units: object  # tfadv.evaluation.store.SectionUnits
    base_key: str
    m: object = None  # the ModelEvaluation being filled
    keys: dict = dataclasses.field(default_factory=dict)  # section -> key of its units
    views: dict = dataclasses.field(default_factory=dict)  # every model's attacked view
    suite: object = None  # the SuiteResult, once the suite ran in this evaluation
    start: float = dataclasses.field(default_factory=time.time)

    @property
    def stochastic(self) -> bool:
        return self.m.stochastic

    def log(self, text: str) -> None:
        if self.progress:
            print(f"[{self.name}] {text} ({time.time() - self.start:.1f} s)", flush=True)


class Probe:
    """One section (see the module docstring). `needs`: sections whose results it reads."""

    name = ""
    needs: tuple = ()
    title = ""

    def settings(self, context) -> dict:
        """What, besides the data, model, eps, norm and seed, its units depend on."""
        return {}

    def run(self, context) -> dict:
        raise NotImplementedError

    def apply(self, m, units, context) -> None:
        raise NotImplementedError

    def tables(self, m) -> dict:
        return {}

    def figures(self, m, report) -> dict:
        return {}

    def markdown(self, m, report) -> list:
        return []


def key_of(probe, context) -> str:
    """16 hex digits naming the units' inputs: the evaluation's base key, the probe's settings and
    the keys of the sections it needs."""
    needed = {name: context.keys.get(name, "") for name in probe.needs}
    text = json.dumps([context.base_key, probe.name, probe.settings(context), needed], default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_probe(probe, context) -> dict:
    """The probe's units from the store, or from `probe.run` (then stored); applied to context.m."""
    key = key_of(probe, context)
    context.keys[probe.name] = key
    units = context.units.get(probe.name, key)
    if units is None:
        began = time.time()
        units = probe.run(context)
        units["_seconds"] = np.float64(time.time() - began)
        context.units.put(probe.name, key, units)
    probe.apply(context.m, units, context)
    context.m.seconds += float(units.get("_seconds", 0.0))
    return units


def eps_max(norm):
    """The largest eps of the norm's ball, pixel scale (None: unbounded)."""
    return norms.get(norm).eps_max


def threat_model(norm) -> str:
    """ "Linf" or "L2" (RobustBench's label)."""
    return norms.get(norm).threat_model


# ------------------------------------------------------------------ units <-> tables


def frame_units(prefix: str, frame: pd.DataFrame) -> dict:
    """A DataFrame as arrays `<prefix>.<column>` plus its column order."""
    out = {}
    for column in frame.columns:
        values = frame[column].to_numpy()
        out[f"{prefix}.{column}"] = values.astype(str) if values.dtype == object else values
    out[f"{prefix}.__columns__"] = np.array([str(c) for c in frame.columns])
    return out


def unit_frame(prefix: str, units: dict) -> pd.DataFrame:
    columns = [str(c) for c in units[f"{prefix}.__columns__"]]
    return pd.DataFrame({c: units[f"{prefix}.{c}"] for c in columns}, columns=columns)


def dict_units(prefix: str, values: dict) -> dict:
    return {
        f"{prefix}.keys": np.array(list(values), dtype=str),
        f"{prefix}.values": np.array(list(values.values()), np.float64),
    }


def unit_dict(prefix: str, units: dict) -> dict:
    return {
        str(k): float(v)
        for k, v in zip(units[f"{prefix}.keys"], units[f"{prefix}.values"], strict=True)
    }


def texts(units: dict, key: str) -> list:
    return [str(t) for t in units.get(key, [])]


# ------------------------------------------------------------------ breaks


class Folds:
    """Attacks' results recorded as units, to be folded into a ModelEvaluation in order.

    Only the images `ModelEvaluation.fold` may keep are stored: those classified wrongly and,
    with `attempt`, the attempted survivors."""

    def __init__(self, prefix: str = "fold"):
        self.prefix, self.units, self.count = prefix, {}, 0

    def add(self, labels, index, images, predictions, white_box=True, attempt=None, m=None):
        """Records one fold; with `m`, also folds it there now and returns the new breaks."""
        index, predictions = np.asarray(index), np.asarray(predictions)
        keep = predictions != labels[index]
        if attempt is not None:
            keep = keep | attempt
        p = f"{self.prefix}{self.count}"
        self.units.update(
            {
                f"{p}.index": index,
                f"{p}.predictions": predictions,
                f"{p}.kept": np.flatnonzero(keep),
                f"{p}.images": np.asarray(images, np.float32)[keep],
                f"{p}.white_box": np.bool_(white_box),
                f"{p}.attempt": np.zeros(0, bool) if attempt is None else np.asarray(attempt),
            }
        )
        self.count += 1
        self.units[f"{self.prefix}.count"] = np.int64(self.count)
        return None if m is None else replay_one(m, labels, self.units, p)


def replay_one(m, labels, units, p) -> int:
    index = units[f"{p}.index"]
    images = np.zeros((len(index), *m.adversarial.shape[1:]), np.float32)
    images[units[f"{p}.kept"]] = units[f"{p}.images"]
    attempt = units[f"{p}.attempt"]
    return m.fold(
        labels,
        index,
        images,
        units[f"{p}.predictions"],
        white_box=bool(units[f"{p}.white_box"]),
        attempt=attempt if len(attempt) == len(index) and len(index) else None,
    )


def replay(m, labels, units, prefix: str = "fold") -> list:
    """Folds every recorded result into `m`, in order; returns the new breaks of each."""
    count = int(units.get(f"{prefix}.count", 0))
    return [replay_one(m, labels, units, f"{prefix}{k}") for k in range(count)]
