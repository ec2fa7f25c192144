"""The `distances` section: each image's distance to the decision boundary, from one minimum-norm
run (FMN by default, `tfadv.attacks.minimum_norm`), and the robust-accuracy-vs-eps curve it gives.

    python -m tfadv.evaluate ... --sections=all          # or --sections=clean,suite,sweep,distances

Tables (per model): distances.csv (per image: label, clean prediction and confidence, distance,
found; inf where the search found none, 0 for an image misclassified already),
distance_quantiles.csv (median and quantiles of the clean-correct images' distances, over all
images, per class and per clean-confidence bucket), distance_curve.csv (at the sweep's eps values
and the evaluation eps: accuracy from the distances, beside FGSM/PGD of the sweep and the suite;
`honest` is the lowest at each eps, and `stopped_short` marks where the minimum-norm curve lies
above another attack's point: its search stopped before the boundary another attack found).
"""

import dataclasses

import numpy as np
import pandas as pd

from tfadv import attacks
from tfadv.evaluation import metrics, plots
from tfadv.evaluation.probe import Probe

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
CURVE_POINTS = 60  # eps values of the plotted minimum-norm curve


@dataclasses.dataclass
class Search:
    """One minimum-norm search over a set of images, batch by batch (numpy): distances float32
    (N,) in pixel scale (0 for images misclassified already, inf where none was found), found
    bool (N,), adversarial float32 (N, H, W, C), the closest adversarial (the clean image where
    none was found)."""

    distances: np.ndarray
    found: np.ndarray
    adversarial: np.ndarray


def search(model, images, labels, attack: str, norm: str, batch_size: int, **options) -> Search:
    """`tfadv.attacks.minimum_norm(model, ..., attack, norm, **options)` on `batch_size` images
    at a time (the distances section's and `python -m tfadv.attack`'s one search loop)."""
    parts = [
        attacks.minimum_norm(
            model,
            images[i : i + batch_size],
            labels[i : i + batch_size],
            attack,
            norm,
            **options,
        )
        for i in range(0, len(labels), batch_size)
    ]
    return Search(
        distances=np.concatenate([np.asarray(p.distances) for p in parts]),
        found=np.concatenate([np.asarray(p.success) for p in parts]),
        adversarial=np.concatenate([np.asarray(p.adversarial) for p in parts]),
    )


def curve(distances, eps_values) -> np.ndarray:
    """float64 (E,): the share of images whose distance exceeds each eps (robust at that eps)."""
    d = np.asarray(distances, np.float64)
    values = np.asarray(eps_values, np.float64).reshape(-1, 1)
    return (d[None, :] > values).mean(axis=1) if d.size else np.ones(len(values))


def curve_grid(distances, at_least: float = 0.0, points: int = CURVE_POINTS) -> np.ndarray:
    """`points` eps values from 0 to 1.05 x the largest finite distance (or `at_least`, when
    larger; 1.0 when both are 0): where the curve is plotted."""
    d = np.asarray(distances, np.float64)
    finite = d[np.isfinite(d)]
    high = max(float(finite.max()) if len(finite) else 0.0, float(at_least)) or 1.0
    return np.linspace(0.0, high * 1.05, points)


def curve_frame(distances, label: str, at_least: float = 0.0, points: int = CURVE_POINTS):
    """The minimum-norm curve as rows (attack = `label`, eps, adversarial_accuracy) on
    `curve_grid`, in the layout `tfadv.evaluation.plots.eps_curves` draws."""
    grid = curve_grid(distances, at_least, points)
    return pd.DataFrame(
        {"attack": label, "eps": grid, "adversarial_accuracy": curve(distances, grid)}
    )


def quantiles(distances) -> dict:
    """{q: quantile} of `distances` (inf where not found) at each of QUANTILES ({} for none)."""
    d = np.asarray(distances, np.float64)
    return {q: float(np.quantile(d, q)) for q in QUANTILES} if len(d) else {}


def quantile_row(group: str, distances, found) -> dict:
    """n, share found, median and quantiles of `distances` (inf where not found)."""
    d = np.asarray(distances, np.float64)
    row = {"group": group, "n": int(len(d)), "found": float(np.mean(found)) if len(d) else np.nan}
    values = quantiles(d)
    for q in QUANTILES:
        row["median" if q == 0.5 else f"q{int(q * 100)}"] = values.get(q, np.nan)
    return row


def quantile_table(table: pd.DataFrame, class_names) -> pd.DataFrame:
    """Quantiles of the clean-correct images' distances: all, per class, per confidence bucket."""
    correct = table[table["label"] == table["clean_prediction"]]
    rows = [quantile_row("all", correct["distance"], correct["found"])]
    for c, name in enumerate(class_names):
        chosen = correct[correct["label"] == c]
        rows.append(quantile_row(f"class {name}", chosen["distance"], chosen["found"]))
    for bucket, low, high in metrics.POSSAS_BUCKETS:
        inside = correct[(correct["confidence"] >= low) & (correct["confidence"] < high)]
        rows.append(quantile_row(f"confidence {bucket}", inside["distance"], inside["found"]))
    return pd.DataFrame(rows)


def comparison(distances, sweep, suite_eps, suite_accuracy) -> pd.DataFrame:
    """At the sweep's eps values and the evaluation eps: the minimum-norm curve, the sweep's
    attacks, the suite's point, `honest` (the lowest) and `stopped_short`."""
    points = sorted({float(suite_eps), *(sweep["eps"] if sweep is not None else ())})
    frame = pd.DataFrame({"eps": points, "min_norm": curve(distances, points)})
    if sweep is not None:
        table = sweep.pivot_table(index="eps", columns="attack", values="adversarial_accuracy")
        for attack in table.columns:
            frame[attack] = [_at(table[attack], e) for e in points]
    frame["suite"] = [suite_accuracy if np.isclose(e, suite_eps) else np.nan for e in points]
    others = frame.drop(columns=["eps", "min_norm"]).to_numpy(np.float64)
    best_other = np.min(np.where(np.isnan(others), np.inf, others), axis=1, initial=np.inf)
    frame["honest"] = np.minimum(frame["min_norm"], best_other)
    frame["stopped_short"] = frame["min_norm"] > best_other + 1e-12
    return frame


def _at(series, eps) -> float:
    close = np.isclose(series.index.to_numpy(np.float64), eps)
    return float(series[close].iloc[0]) if close.any() else np.nan


class Distances(Probe):
    """FMN (or another search of `tfadv.attacks.minimum_norm`) on the evaluated images."""

    name, needs, title = "distances", ("clean",), "Distances to the boundary"

    def __init__(self, attack: str = "fmn", **options):
        self.attack, self.options = attack, options

    def settings(self, c):
        return {"attack": self.attack, **self.options}

    def run(self, c):
        found = search(c.clf, c.x, c.y, self.attack, c.norm.name, c.batch_size, **self.options)
        return {"distances": found.distances, "found": found.found}

    def apply(self, m, units, c):
        table = pd.DataFrame(
            {
                "index": np.arange(len(c.y)),
                "label": c.y,
                "clean_prediction": m.clean_predictions,
                "confidence": m.clean_probabilities.max(axis=1),
                "distance": units["distances"],
                "found": units["found"] | (m.clean_predictions != c.y),
            }
        )
        m.distances = table
        m.distance_quantiles = quantile_table(table, c.class_names)
        m.distance_curve = comparison(units["distances"], m.sweep, c.eps, m.suite.robust_accuracy)
        m.distance_norm = c.norm.name
        c.log(f"median distance {m.distance_quantiles['median'].iloc[0]:.4g} ({self.attack})")

    def tables(self, m):
        return {
            "distances": m.distances,
            "distance_quantiles": m.distance_quantiles,
            "distance_curve": m.distance_curve,
        }

    def figures(self, m, report):
        d = m.distances["distance"].to_numpy(np.float64)
        lines = [curve_frame(d, "min-norm", at_least=report.eps)]
        if m.sweep is not None:
            lines.append(m.sweep[["attack", "eps", "adversarial_accuracy"]])
        point = {
            "attack": ["suite"],
            "eps": [report.eps],
            "adversarial_accuracy": [m.suite.robust_accuracy],
        }
        lines.append(pd.DataFrame(point))
        frame = pd.concat(lines, ignore_index=True)
        title = f"{m.name}: accuracy vs eps (L{m.distance_norm}), minimum norm beside the attacks"
        return {"distance_curve": plots.eps_curves(frame, title)}

    def markdown(self, m, report):
        q = m.distance_quantiles.iloc[0]
        at = m.distance_curve[np.isclose(m.distance_curve["eps"], report.eps)].iloc[0]
        short = m.distance_curve["stopped_short"]
        verdict = (
            "search stopped short at eps "
            f"{', '.join(f'{e:g}' for e in m.distance_curve['eps'][short])}"
            if short.any()
            else "no attack found a closer boundary than the search"
        )
        return [
            f"### Distances to the boundary ([curve]({m.folder}/distance_curve.png))",
            "",
            f"Median L{m.distance_norm} distance of the clean-correct images {q['median']:.4g} "
            f"(found for {q['found']:.1%}); at eps = {report.eps:g} the distances give accuracy "
            f"{at['min_norm']:.4f}, the suite {at['suite']:.4f} (honest {at['honest']:.4f}); "
            f"{verdict}.",
            "",
            m.distance_curve.to_markdown(index=False, floatfmt=".4f"),
            "",
            m.distance_quantiles.to_markdown(index=False, floatfmt=".4g"),
            "",
        ]
