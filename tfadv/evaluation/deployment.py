"""The deployment gap: the float model and its deployed exports (TFLite float32, float16, int8)
attacked the same way, side by side.

    gap = deployment_gap(keras_model, {"model_int8": "RUN/models/model_int8.tflite"}, x, y, 8 / 255)
    gap.table()  # one row per model: clean, agreement, each attack, worst case
    gap.verdicts()  # images whose verdict differs between float and a deployed model
    gap.write("out")  # deployment.md, deployment.csv, verdicts.csv, outcomes.csv, summary.json

Every model gets the gradient-free attacks of `tfadv.evaluation.gradient_free` (Square, HopSkipJump,
transfer PGD-20 from the float model, the float model's patch), the float model included (there
"transfer" is white-box PGD-20), so the columns compare like with like; the transfer images and
the patched images are made once and classified by every model.
"""

import dataclasses
import json
import os
import time

import numpy as np
import pandas as pd

from tfadv import models
from tfadv.evaluation import gradient_free
from tfadv.runtime.files import atomic_file, write_json, write_text

FILES = ("deployment.md", "deployment.csv", "verdicts.csv", "outcomes.csv", "summary.json")


@dataclasses.dataclass
class DeploymentGap:
    """The float model's and each deployed model's `GradientFreeResult` on the same images.

    Attributes:
        reference: the float model's name (first in `results`).
        results: {name: GradientFreeResult}.
        sizes: {name: bytes of its file, or None}.
        settings: the suite's attacks, eps, seed, patch size and the seconds each stage took.
    """

    reference: str
    results: dict
    sizes: dict
    settings: dict

    def table(self) -> pd.DataFrame:
        """One row per model: bytes, clean accuracy, agreement with the float model's clean
        classes, robust accuracy under each attack, the worst case, verdicts that differ."""
        base = self.results[self.reference]
        rows = []
        for name, result in self.results.items():
            row = {"model": name, "bytes": self.sizes.get(name)}
            row.update(result.row())
            row["agreement"] = float(np.mean(result.clean_predictions == base.clean_predictions))
            row["verdicts_differ"] = int(np.sum(result.verdicts() != base.verdicts()))
            row["seconds"] = round(sum(result.seconds.values()), 1)
            rows.append(row)
        columns = ["model", "bytes", "clean_accuracy", "agreement"]
        columns += [a for a in gradient_free.ATTACKS if a in rows[0]]
        return pd.DataFrame(rows)[[*columns, "worst_case", "verdicts_differ", "seconds"]]

    def verdicts(self) -> pd.DataFrame:
        """One row per (deployed model, image) whose verdict (wrong, robust, broken by ...)
        differs from the float model's, with both clean classes."""
        base = self.results[self.reference]
        reference, base_broken = base.verdicts(), base.broken_by()
        rows = []
        for name, result in self.results.items():
            if name == self.reference:
                continue
            mine = result.verdicts()
            for i in np.flatnonzero(mine != reference):
                rows.append(
                    {
                        "model": name,
                        "image": int(i),
                        "label": int(base.labels[i]),
                        "float_verdict": reference[i],
                        "verdict": mine[i],
                        "float_broken_by": base_broken[i],
                        "broken_by": result.broken_by()[i],
                        "float_clean_class": int(base.clean_predictions[i]),
                        "clean_class": int(result.clean_predictions[i]),
                    }
                )
        columns = [
            "model",
            "image",
            "label",
            "float_verdict",
            "verdict",
            "float_broken_by",
            "broken_by",
        ]
        columns += ["float_clean_class", "clean_class"]
        return pd.DataFrame(rows, columns=columns)

    def outcomes(self) -> pd.DataFrame:
        """Per image and model: label, clean class and the class under each attack."""
        frames = []
        for name, result in self.results.items():
            frame = pd.DataFrame(
                {"model": name, "image": np.arange(len(result.labels)), "label": result.labels}
            )
            frame["clean"] = result.clean_predictions
            for attack, predicted in result.predictions.items():
                frame[attack] = predicted
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

    def markdown(self) -> str:
        s = self.settings
        table = self.table()
        shown = table.copy()
        for column in shown.columns:
            if column not in ("model", "bytes", "verdicts_differ", "seconds"):
                shown[column] = shown[column].map(lambda v: f"{100 * v:.1f}%")
        shown["bytes"] = shown["bytes"].map(
            lambda v: "" if v is None or pd.isna(v) else f"{int(v):,}"
        )
        lines = [
            "# The deployment gap",
            "",
            f"{s['images']} {s.get('split', '')} images, "
            f"eps={s['eps']:g} (L{s['norm']}), seed {s['seed']}; "
            f"the float model `{self.reference}` and its deployed exports attacked the same way.",
            "",
            _markdown_table(shown),
            "",
            "Columns: clean accuracy; agreement of the clean classes with the float model; "
            "robust accuracy (correct when clean and after the attack) under each attack; "
            "the worst case per image over the eps-ball attacks ("
            + ", ".join(gradient_free.BALL_ATTACKS)
            + (
                "); the patch (another threat model: "
                f"a {s['patch_size']}x{s['patch_size']} patch, no eps) is beside it; images whose "
                "verdict differs from the float model's (wrong, broken or robust; verdicts.csv)."
            ),
            "",
            "Attacks:",
            "",
        ]
        base = self.results[self.reference]
        for attack, spec in base.attacks.items():
            lines.append(f"- {attack}: {spec}")
        lines += ["", "Masking checklist of the deployed models (no gradients):", ""]
        deployed = [r for n, r in self.results.items() if n != self.reference]
        for check in (deployed[0] if deployed else base).checklist():
            lines.append(f"- ({check.key}) {check.name}: {check.verdict}: {check.evidence}")
        lines += ["", f"Seconds: {json.dumps(s.get('seconds', {}))}", ""]
        return "\n".join(lines)

    def write(self, output_dir: str) -> str:
        """Writes FILES into `output_dir`, each atomically; returns the markdown's path."""
        os.makedirs(output_dir, exist_ok=True)
        for name, frame in (
            ("deployment.csv", self.table()),
            ("verdicts.csv", self.verdicts()),
            ("outcomes.csv", self.outcomes()),
        ):
            atomic_file(
                os.path.join(output_dir, name),
                lambda tmp, frame=frame: frame.to_csv(tmp, index=False),
            )
        summary = {
            "reference": self.reference,
            "settings": self.settings,
            "models": self.table().to_dict(orient="records"),
            "checklist": {
                name: [dataclasses.asdict(c) for c in result.checklist()]
                for name, result in self.results.items()
                if name != self.reference
            },
        }
        write_json(os.path.join(output_dir, "summary.json"), summary)
        return write_text(os.path.join(output_dir, "deployment.md"), self.markdown())


def _markdown_table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _size(model):
    path = getattr(getattr(getattr(model, "model", None), "fn", None), "path", None)
    return os.path.getsize(path) if path and os.path.exists(path) else None


def deployment_gap(
    float_model,
    deployed: dict,
    images,
    labels,
    eps,
    *,
    reference: str = "model",
    suite: str = "fast",
    norm: str = "inf",
    patch_size: int = gradient_free.PATCH_SIZE,
    seed: int = 0,
    batch_size: int = 256,
    progress: bool = False,
) -> DeploymentGap:
    """The float model and each deployed model under the same gradient-free attacks.

    Args:
        float_model: the float (differentiable) model: a Keras model, SavedModel or classifier.
        deployed: {name: model or .tflite path} (e.g. the run's TFLite exports).
        images: float32 (N, H, W, C) in [0, 1]; labels: int (N,).
        eps: the budget, pixel scale (L-inf: in [0, 1]).
        reference: the float model's name in the table.
        suite: "fast" or "standard" (see `tfadv.evaluation.gradient_free.SETTINGS`).
        patch_size: side of the patch in pixels.
        seed: every random draw of image k comes from (seed, k).

    Raises:
        ValueError: no deployed model, a corrupt .tflite file, a suite that is not fast or standard.
    """
    specs = gradient_free.settings(suite)
    if not deployed:
        raise ValueError(f"Expected at least one deployed model. Received: deployed={deployed!r}")
    loaded = {name: models.load(m) if isinstance(m, str) else m for name, m in deployed.items()}
    x, y = np.asarray(images, np.float32), np.asarray(labels, np.int64)
    seconds = {}
    start = time.time()
    transfer = gradient_free.transfer_images(
        float_model, x, y, eps, spec=specs["transfer"], norm=norm, seed=seed, batch_size=batch_size
    )
    seconds["transfer images"] = round(time.time() - start, 1)
    start = time.time()
    patched = gradient_free.patched_images(
        float_model, x, y, size=patch_size, steps=specs["patch_steps"], seed=seed
    )
    seconds["patch"] = round(time.time() - start, 1)
    results, sizes = {}, {reference: None}
    options = dict(
        suite=suite,
        norm=norm,
        transfer=transfer,
        patched=patched,
        seed=seed,
        batch_size=batch_size,
        progress=progress,
    )
    for name, model in {reference: float_model, **loaded}.items():
        start = time.time()
        results[name] = gradient_free.evaluate_gradient_free(model, x, y, eps, name=name, **options)
        results[name].attacks["patch"] = (
            f"{patch_size}x{patch_size} patch, {specs['patch_steps']} steps on the float model"
        )
        sizes[name] = sizes.get(name) or _size(model)
        seconds[name] = round(time.time() - start, 1)
        if progress:
            print(
                f"{name}: {seconds[name]:.0f} s, worst case {results[name].worst_case.mean():.4f}",
                flush=True,
            )
    settings = {
        "eps": float(eps),
        "norm": results[reference].norm,
        "images": int(len(y)),
        "suite": suite,
        "seed": seed,
        "patch_size": patch_size,
        "attacks": dict(results[reference].attacks),
        "seconds": seconds,
    }
    return DeploymentGap(reference, results, sizes, settings)
