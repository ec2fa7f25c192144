"""Writing an EvaluationReport: report.md (the masking checklist first), summary.json, one CSV
per table, PNG figures and TensorBoard summaries, all into one folder written atomically.

    OUTPUT/report.md, summary.json, headline.csv, transfer.csv, transfer.png
    OUTPUT/<model>/suite.csv, checks.csv, remedies.csv, sweep.csv, per_class.csv, confidence.csv,
                   masking.csv, gradient_norms.csv, confusion_clean.csv, confusion_adversarial.csv,
                   eps_curves.png, confusion.png, gradient_norms.png, examples.png
    OUTPUT/tensorboard/<model>/   scalars (clean, robust per attack, headline) and the figures
"""

import os
import re

import pandas as pd

from tfadv.attacks import norms
from tfadv.evaluation import plots
from tfadv.evaluation.probe import threat_model
from tfadv.runtime.files import atomic_dir, link_tree, write_json, write_text


def folder_name(name: str) -> str:
    """A model name made safe as a folder name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "model"


def _table(frame: pd.DataFrame, digits: int = 3) -> str:
    return frame.to_markdown(index=False, floatfmt=f".{digits}f")


def markdown(report) -> str:
    lines = [
        "# Robustness evaluation",
        "",
        f"eps = {report.eps:g} ({report.eps * 255:.2f}/255, "
        f"{threat_model(norms.get(report.norm))}), {report.n} images, suite: "
        f"{', '.join(report.suite)}; sections: {', '.join(report.settings.get('sections', []))}. "
        "Robust accuracy is the per-image worst case over every attack run at this eps "
        "(suite, checklist attacks, doubled budget, transfer, remedies); for a model random at "
        "inference, the mean accuracy of fresh single draws on the worst-case images.",
        "",
        "## Headline",
        "",
        _table(report.headline().drop(columns="seconds"), 4),
        "",
    ]
    for name, m in report.models.items():
        failed = m.failed_checks
        verdict = (
            f"**gradient masking suspected** (failed: {', '.join(failed)})"
            if failed
            else "no masking symptom found"
        )
        headline = f"headline robust accuracy {m.robust_accuracy:.4f}"
        if m.draws is not None:
            headline += (
                f" (mean accuracy of {len(m.draws)} fresh single draws on the final images; "
                f"{m.robust_accuracy_all_draws:.4f} correct in all {len(m.draws)} draws)"
            )
        lines += [f"## Masking checklist: {name}", "", f"{verdict}; {headline}.", ""]
        checks = pd.DataFrame(
            [
                {"": c.key, "check": c.name, "verdict": c.verdict, "evidence": c.evidence}
                for c in m.checks
            ]
        )
        lines += [checks.to_markdown(index=False), ""]
        if m.remedy_notes:
            lines += ["Remedies run in this evaluation (folded into the headline):", ""]
            lines += [f"- {note}" for note in m.remedy_notes] + [""]
        if len(m.remedies):
            lines += [_table(m.remedies, 4), ""]
    for name, m in report.models.items():
        folder = folder_name(name)
        lines += [
            f"## {name}",
            "",
            f"Clean accuracy {m.clean['accuracy']:.4f}, top-1 error {m.clean['top1_error']:.4f}"
            + (
                f", top-5 error {m.clean['top5_error']:.4f}"
                if m.clean["top5_error"] is not None
                else ""
            )
            + (" (all predictions averaged over EOT draws)" if m.stochastic else "")
            + f"; evaluated in {m.seconds:.0f} s.",
            "",
            "### Attack suite (each attack on the images still unbroken)",
            "",
            _table(m.suite.table(), 4),
            "",
            *cost_lines(m),
            *(line for probe in m.probes() for line in probe.markdown(m, report)),
            "### Per-class accuracy, clean and under the worst-case attack "
            f"([confusion matrices]({folder}/confusion.png))",
            "",
            _table(m.per_class),
            "",
            f"Examples: [{folder}/examples.png]({folder}/examples.png)",
            "",
        ]
    if report.transfer is not None:
        lines += [
            "## Transfer matrix",
            "",
            "Accuracy of each target (columns) on PGD examples crafted on each source (rows); "
            "the diagonal is white-box.",
            "",
            report.transfer.reset_index(names="source").to_markdown(index=False, floatfmt=".4f"),
            "",
        ]
    return "\n".join(lines)


def _figures(report, name, m) -> dict:
    """The model's figures: those of its sections, the confusion matrices and the examples."""
    clean, adversarial, labels, predictions, adv_predictions, probabilities = report.examples[name]
    names = report.class_names
    figures = {k: v for probe in m.probes() for k, v in probe.figures(m, report).items()}
    figures["confusion"] = plots.heatmaps(
        {"clean": m.confusion_clean, f"worst case at eps={report.eps:g}": m.confusion_adversarial},
        names,
        names,
        name,
        row_title="true class",
        column_title="predicted class",
    )
    figures["examples"] = plots.example_grid(
        clean,
        adversarial,
        labels,
        predictions,
        adv_predictions,
        names,
        f"{name}: clean vs worst case",
        clean_confidence=probabilities.max(axis=1),
    )
    return figures


# the evaluation store's folder inside a report folder (kept when the report is rewritten)
STORE = "store"


def write(report, output_dir: str, overwrite: bool = False) -> str:
    """Writes the whole report into `output_dir` (replaced only with overwrite=True); an evaluation
    store in `output_dir/store` is kept (hard-linked into the new folder before the swap)."""
    if os.path.exists(output_dir) and os.listdir(output_dir) and not overwrite:
        raise ValueError(
            "Expected a new or empty output_dir (or overwrite=True). "
            f"Received: output_dir={output_dir!r}, which already exists"
        )

    def fill(tmp):
        if os.path.isdir(os.path.join(output_dir, STORE)):
            link_tree(os.path.join(output_dir, STORE), os.path.join(tmp, STORE))
        write_json(os.path.join(tmp, "robustbench.json"), robustbench(report))
        write_text(os.path.join(tmp, "report.md"), markdown(report))
        write_json(os.path.join(tmp, "summary.json"), report.summary())
        report.headline().to_csv(os.path.join(tmp, "headline.csv"), index=False)
        if report.transfer is not None:
            report.transfer.to_csv(os.path.join(tmp, "transfer.csv"))
            names = list(report.transfer.index)
            figure = plots.heatmaps(
                {"accuracy": report.transfer.to_numpy(float)},
                names,
                names,
                "transfer",
                ".2f",
                "source",
                "target",
            )
            plots.save_png(figure, os.path.join(tmp, "transfer.png"))
        for name, m in report.models.items():
            folder = os.path.join(tmp, folder_name(name))
            os.makedirs(folder)
            tables = {
                "suite": m.suite.table(),
                **{k: v for probe in m.probes() for k, v in probe.tables(m).items()},
                "per_class": m.per_class,
                "remedies": m.remedies,
                "checks": pd.DataFrame(
                    [
                        {
                            "key": c.key,
                            "check": c.name,
                            "verdict": c.verdict,
                            "evidence": c.evidence,
                        }
                        for c in m.checks
                    ]
                ),
                "confusion_clean": pd.DataFrame(
                    m.confusion_clean, index=report.class_names, columns=report.class_names
                ),
                "confusion_adversarial": pd.DataFrame(
                    m.confusion_adversarial, index=report.class_names, columns=report.class_names
                ),
            }
            for table_name, frame in tables.items():
                frame.to_csv(
                    os.path.join(folder, f"{table_name}.csv"),
                    index=table_name.startswith("confusion"),
                )
            pngs = {
                figure_name: plots.png_bytes(figure)
                for figure_name, figure in _figures(report, name, m).items()
            }
            for figure_name, data in pngs.items():
                with open(os.path.join(folder, f"{figure_name}.png"), "wb") as f:
                    f.write(data)
            _tensorboard(os.path.join(tmp, "tensorboard", folder_name(name)), m, pngs)

    return atomic_dir(output_dir, fill)


PROJECT_IMAGES = 10_000  # the cost of the suite is projected to a CIFAR-10 test set


def robustbench(report) -> dict:
    """RobustBench-style entries, one per model: clean_acc, autoattack_acc (the suite's robust
    accuracy), eps, norm, n_examples, forward passes and gradients; `tfadv_robust_acc` is the
    report's headline (the worst case over every attack it ran)."""
    dataset = report.settings.get("dataset", "")
    entries = {}
    for name, m in report.models.items():
        entry = m.suite.robustbench(
            report.norm, model=name, dataset=dataset, suite=", ".join(report.suite)
        )
        entries[name] = {**entry, "tfadv_robust_acc": m.robust_accuracy}
    return entries


def cost_lines(m) -> list:
    """Markdown lines on what the suite spent and what PROJECT_IMAGES images would cost."""
    if not m.suite.forwards:
        return []
    cost = m.suite.cost(PROJECT_IMAGES)
    projected = cost["projected"]
    return [
        f"Suite cost: {cost['gradients']:,} input gradients and {cost['forwards']:,} forward "
        f"passes (images x passes) in {cost['seconds']:.0f} s for {cost['images']} images; at "
        f"this rate {PROJECT_IMAGES:,} images would take {projected['gradients']:,.0f} gradients, "
        f"{projected['forwards']:,.0f} forward passes and {projected['seconds'] / 3600:.2f} h.",
        "",
    ]


def _tensorboard(folder: str, m, pngs: dict) -> None:
    import tensorflow as tf

    writer = tf.summary.create_file_writer(folder)
    with writer.as_default():
        tf.summary.scalar("clean_accuracy", m.clean["accuracy"], step=0)
        tf.summary.scalar("robust_accuracy", m.robust_accuracy, step=0)
        for step, row in enumerate(m.suite.table().to_dict(orient="records")):
            tf.summary.scalar(
                "suite_robust_accuracy_after_attack", row["robust_accuracy"], step=step
            )
        sweep = m.sweep if m.sweep is not None else pd.DataFrame(columns=["attack", "eps"])
        for row in sweep.to_dict(orient="records"):
            tf.summary.scalar(
                f"sweep/{row['attack']}",
                row["adversarial_accuracy"],
                step=int(round(row["eps"] * 1000)),
            )
        for figure_name, data in pngs.items():
            tf.summary.image(figure_name, tf.io.decode_png(data)[None], step=0)
    writer.close()
