"""The evaluation store: what every attack did to every image, kept chunk by chunk on disk.

    store = EvaluationStore("evaluations/mine")        # opens or creates the folder
    store.open(settings)                               # refuses a changed eps, norm, model or data
    store.table()                                      # pandas: one row per (image, attack)

Layout (one work unit = one chunk of image indices and one attack; one file each):

    FOLDER/store.json                the settings every chunk was made with; the attacks in order
    FOLDER/chunks/c<start>/clean.npz indices, labels, clean predictions and margins, data hash
    FOLDER/chunks/c<start>/a<k>.npz  attack k on the images still unbroken before it: the indices it
                                     ran on, broken, predictions and margins at its result, the
                                     adversarial images of the broken ones, seconds

Format: NumPy .npz, one file per unit written under a temporary name and renamed
(`tfadv.runtime.files.atomic_file`), so a kill at any moment leaves a unit whole or absent and
`--resume` redoes only what is absent; it holds the adversarial images next to the per-image
columns without a second file or a new dependency (Parquet would need pyarrow and still a
separate file for the images), and `table()` reads it into pandas.
"""

import hashlib
import json
import os
import shutil

import numpy as np
import pandas as pd

from tfadv.runtime.files import atomic_file, write_json

STORE_FILE = "store.json"
CHUNKS = "chunks"
# Settings that must not change between the runs that fill one store (a growing image count and
# appended attacks are allowed: they add work units).
FIXED = ("eps", "norm", "seed", "chunk_size", "model", "data")


def fingerprint(*arrays) -> str:
    """16 hex digits of sha256 over the arrays' bytes, shapes and dtypes."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.shape}:{array.dtype}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def _npz(path: str, **arrays) -> None:
    atomic_file(path, lambda tmp: np.savez(tmp, **arrays))


def _load(path: str) -> dict:
    with np.load(path) as f:
        return {key: f[key] for key in f.files}


class EvaluationStore:
    """A folder of per-chunk, per-attack outcomes (see the module docstring).

    Args:
        folder: where the store lives; None keeps it in memory (same behaviour, nothing written).
    """

    def __init__(self, folder: str | None):
        self.folder = folder
        self.settings: dict = {}
        self._memory: dict = {}

    # -------------------------------------------------------------- settings

    def open(self, settings: dict) -> None:
        """Starts a new store with `settings` (eps, norm, seed, chunk_size, model, data, attacks),
        or continues one made with the same fixed settings; appended attacks extend it.

        Raises:
            ValueError: a fixed setting or an earlier attack differs from the stored one.
        """
        stored = self._read_settings()
        if stored is not None:
            for key in FIXED:
                if stored.get(key) != settings.get(key):
                    raise ValueError(
                        f"Expected the {key} the evaluation in {self.folder!r} was made with, "
                        f"{key}={stored.get(key)!r} (it cannot continue with another). "
                        f"Received: {key}={settings.get(key)!r}"
                    )
            old, new = stored["attacks"], settings["attacks"]
            if new[: len(old)] != old:
                raise ValueError(
                    f"Expected the attacks the evaluation in {self.folder!r} ran, {old}, "
                    f"with new ones appended. Received: attacks={new}"
                )
        self.settings = dict(settings)
        if self.folder is not None:
            write_json(os.path.join(self.folder, STORE_FILE), self.settings)

    def _read_settings(self):
        if self.folder is None:
            return self.settings or None
        path = os.path.join(self.folder, STORE_FILE)
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f)

    # -------------------------------------------------------------- units

    def _path(self, start: int, unit: str) -> str:
        return os.path.join(self.folder, CHUNKS, f"c{start:07d}", f"{unit}.npz")

    def has(self, start: int, unit: str) -> bool:
        if self.folder is None:
            return (start, unit) in self._memory
        return os.path.exists(self._path(start, unit))

    def put(self, start: int, unit: str, **arrays) -> None:
        """Writes one unit ("clean" or "a<k>") of the chunk starting at `start`, atomically."""
        if self.folder is None:
            self._memory[(start, unit)] = {k: np.asarray(v) for k, v in arrays.items()}
        else:
            _npz(self._path(start, unit), **arrays)

    def get(self, start: int, unit: str) -> dict:
        if self.folder is None:
            return self._memory[(start, unit)]
        return _load(self._path(start, unit))

    def starts(self) -> list:
        """The chunk starts that have a clean unit, in order."""
        if self.folder is None:
            return sorted(start for start, unit in self._memory if unit == "clean")
        folder = os.path.join(self.folder, CHUNKS)
        if not os.path.isdir(folder):
            return []
        found = [
            int(name[1:])
            for name in os.listdir(folder)
            if name.startswith("c") and name[1:].isdigit()
        ]
        return sorted(start for start in found if self.has(start, "clean"))

    # -------------------------------------------------------------- reading

    def complete(self, n: int) -> bool:
        """Every chunk of the first `n` images has its clean unit and every attack's unit."""
        settings = self._read_settings()
        if settings is None:
            return False
        size, attacks = settings["chunk_size"], len(settings["attacks"])
        for start in range(0, n, size):
            if not self.has(start, "clean") or len(self.get(start, "clean")["indices"]) != min(
                size, n - start
            ):
                return False
            if not all(self.has(start, f"a{k}") for k in range(attacks)):
                return False
        return True

    def drop_chunk(self, start: int) -> None:
        """Forgets every unit of the chunk starting at `start` (before it is made anew)."""
        if self.folder is None:
            self._memory = {key: value for key, value in self._memory.items() if key[0] != start}
            return
        shutil.rmtree(os.path.dirname(self._path(start, "clean")), ignore_errors=True)

    def outcomes(self, images, attacks: int) -> dict:
        """Per image of `images` (float32 (N, H, W, C)): labels, clean predictions, broken_by (-2
        misclassified, -1 robust, k: broken by attack k), the worst-case predictions, margins and
        adversarial images (the clean image where unbroken), and per attack the number of images
        it ran on, its seconds, forward passes and gradients. Every chunk must be complete."""
        n = len(images)
        adversarial = np.array(images, np.float32, copy=True)
        labels = np.zeros(n, np.int64)
        clean = np.zeros(n, np.int64)
        broken_by = np.full(n, -2, np.int64)
        predictions = np.zeros(n, np.int64)
        margins = np.full(n, np.nan, np.float32)
        ran_on, seconds = np.zeros(attacks, np.int64), np.zeros(attacks)
        forwards, gradients = np.zeros(attacks, np.int64), np.zeros(attacks, np.int64)
        size = self.settings["chunk_size"]
        for start in range(0, n, size):
            unit = self.get(start, "clean")
            rows = unit["indices"]
            labels[rows], clean[rows], predictions[rows] = (
                unit["labels"],
                unit["predictions"],
                unit["predictions"],
            )
            margins[rows] = unit["margins"]
            broken_by[rows] = np.where(unit["predictions"] == unit["labels"], -1, -2)
            for k in range(attacks):
                result = self.get(start, f"a{k}")
                ran, broken = result["indices"], result["broken"]
                ran_on[k] += len(ran)
                seconds[k] += float(result["seconds"])
                forwards[k] += int(result.get("forwards", 0))
                gradients[k] += int(result.get("gradients", 0))
                margins[ran] = result["margins"]
                hit = ran[broken]
                broken_by[hit] = k
                predictions[hit] = result["predictions"][broken]
                adversarial[hit] = result["adversarial"]
        return {
            "labels": labels,
            "clean_predictions": clean,
            "broken_by": broken_by,
            "predictions": predictions,
            "margins": margins,
            "adversarial": adversarial,
            "ran_on": ran_on.tolist(),
            "seconds": seconds.tolist(),
            "forwards": forwards.tolist(),
            "gradients": gradients.tolist(),
        }

    def table(self) -> pd.DataFrame:
        """One row per (image, attack run on it): index, label, attack, broken, prediction,
        margin."""
        rows = []
        attacks = self.settings.get("attacks", [])
        for start in self.starts():
            for k, name in enumerate(attacks):
                if not self.has(start, f"a{k}"):
                    continue
                unit = self.get(start, f"a{k}")
                labels = dict(
                    zip(
                        *(self.get(start, "clean")[key] for key in ("indices", "labels")),
                        strict=True,
                    )
                )
                for index, broken, prediction, margin in zip(
                    unit["indices"],
                    unit["broken"],
                    unit["predictions"],
                    unit["margins"],
                    strict=True,
                ):
                    rows.append(
                        {
                            "index": int(index),
                            "label": int(labels[int(index)]),
                            "attack": name,
                            "attack_index": k,
                            "broken": bool(broken),
                            "prediction": int(prediction),
                            "margin": float(margin),
                        }
                    )
        return pd.DataFrame(
            rows,
            columns=["index", "label", "attack", "attack_index", "broken", "prediction", "margin"],
        )


SECTIONS = "sections"


class SectionUnits:
    """The units of every evaluation section of one model: FOLDER/sections/<name>.npz, each
    written atomically with the key of the settings and inputs it was made with; a unit whose key
    differs (another eps, suite, model or image set) is treated as absent. None: in memory."""

    def __init__(self, folder: str | None):
        self.folder = folder
        self._memory: dict = {}

    def _path(self, name: str) -> str:
        return os.path.join(self.folder, SECTIONS, f"{name}.npz")

    def get(self, name: str, key: str) -> dict | None:
        """The units of section `name` made with `key`, or None."""
        if self.folder is None:
            units = self._memory.get(name)
        else:
            units = _load(self._path(name)) if os.path.exists(self._path(name)) else None
        if units is None or str(units.get("_key", "")) != key:
            return None
        return {k: v for k, v in units.items() if k != "_key"}

    def put(self, name: str, key: str, units: dict) -> None:
        """Keeps the units (NumPy arrays, no objects) of section `name` under `key`."""
        arrays = {k: np.asarray(v) for k, v in units.items()}
        for k, v in arrays.items():
            if v.dtype == object:
                raise ValueError(f"Expected arrays of numbers or strings. Received: {k}={v!r}")
        arrays["_key"] = np.array(key)
        if self.folder is None:
            self._memory[name] = arrays
        else:
            _npz(self._path(name), **arrays)
