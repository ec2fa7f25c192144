"""Gradient masking by an input quantizer, flagged and remedied in one evaluation (issue 17).

    python tools/study_bpda.py --out=docs/results/masking_remedy

A plain CNN (--model, trained --epochs on the CIFAR-10 mini archive through the recipes: recipe
standard via `study_common.train_run`, seeded pipeline, resume, run folder --out/runs/twin; constant
learning rate, no augmentation by default: the "twin") and the same
network behind an input layer stop_gradient(round(x * 255 / q) * q / 255) (q = --quantize_step;
the "quantized" model, same weights) are evaluated together by `tfadv.evaluation.evaluate` on the
first --test_images test images at --eps with --suite. The quantizer gives a zero input gradient,
so white-box gradient attacks see nothing while examples crafted on the twin transfer: checks (b)
and (f) flag it, and the evaluation runs the remedy, BPDA (the suite's gradient attacks again
through `tfadv.models.straight_through`, identity backward pass through the quantizer), on the
images every white-box attack missed.

Outputs in --out: report/ (the full evaluation report), bpda.csv and study.md (the table below),
flags.json, run.log if you tee it. The trained twin is the run folder --out/runs/twin (reused unless
--retrain; not needed to read results).

A smoke run: --epochs=1 --train_images=200 --test_images=50 --suite=fgsm --sweep_eps=0.03.

Table, per model: clean accuracy; robust accuracy under the suite; the white-box worst case before
the remedy (suite, checklist attacks, doubled budget); accuracy under transfer from the other model
(PGD-20 crafted on it); the white-box worst case after BPDA; the headline (everything, transfer
included); the checks that failed; images BPDA ran on and broke.
"""

import os

import study_common as common


def flags(argv=None):
    p = common.parser(__doc__)
    p.set_defaults(epochs=5, test_images=200)
    p.add_argument("--eps", type=float, default=8 / 255, help="L-inf budget, pixel scale")
    p.add_argument(
        "--suite",
        default="apgd(steps=20),apgd_t(steps=20, n_targets=3)",
        help="attack suite of evaluate",
    )
    p.add_argument("--quantize_step", type=int, default=4, help="quantizer step in 1/255 units")
    p.add_argument("--sweep_eps", default="0.01,0.03", help="eps sweep of the report (comma list)")
    p.add_argument("--eval_batch_size", type=int, default=200)
    common.add_training_flags(p, lr_schedule="constant")
    return common.parse(p, argv, check=_check)


def _check(args) -> None:
    if not 0 < args.eps <= 1:
        raise ValueError(f"--eps={args.eps}: must be in (0, 1]")
    if args.quantize_step < 1:
        raise ValueError(f"--quantize_step={args.quantize_step}: must be >= 1")


def quantized(model, step: int):
    """`model` behind stop_gradient(round(x * 255 / step) * step / 255): same weights, no input
    gradient."""
    import keras
    import tensorflow as tf

    def quantize(x):
        return tf.stop_gradient(tf.round(x * 255.0 / step) * step / 255.0)

    inputs = keras.Input(model.input_shape[1:])
    return keras.Model(
        inputs, model(keras.layers.Lambda(quantize, name="quantize")(inputs)), name="quantized"
    )


def table(report):
    import pandas as pd

    rows = []
    for name, m in report.models.items():
        other = [source for source in report.transfer.index if source != name]
        remedy = m.remedies[m.remedies["remedy"] == "bpda"]
        broke = int(remedy["broke"].sum())
        ran_on = int(remedy["ran_on"].iloc[0]) if len(remedy) else 0
        rows.append(
            {
                "model": name,
                "clean_accuracy": m.clean["accuracy"],
                "suite_robust_accuracy": m.suite.robust_accuracy,
                "white_box_before_remedy": m.white_box_robust_accuracy + broke / report.n,
                "transfer_accuracy": min(
                    float(report.transfer.loc[source, name]) for source in other
                ),
                "white_box_after_bpda": m.white_box_robust_accuracy,
                "headline_robust_accuracy": m.robust_accuracy,
                "checks_failed": ",".join(m.failed_checks) or "none",
                "bpda_ran_on": ran_on,
                "bpda_broke": broke,
            }
        )
    return pd.DataFrame(rows)


def main(argv=None):
    args = flags(argv)
    common.start(args)
    from tfadv import evaluation
    from tfadv.experiment.splits import load_split

    info = common.train_run(args, "twin", recipe="standard")
    twin = common.load_run_model(info)
    test, names = load_split(info["dir"], split="test", limit=args.test_images)
    target = quantized(twin, args.quantize_step)
    x, y = test.float_images(), test.labels
    common.log(
        f"twin clean accuracy {common.accuracy(twin, x, y):.4f}, "
        f"quantized {common.accuracy(target, x, y):.4f} on {len(y)} images"
    )
    report = evaluation.evaluate(
        {"twin": twin, "quantized": target},
        x,
        y,
        args.eps,
        suite=args.suite,
        class_names=names,
        sweep_eps=common.float_list(args.sweep_eps),
        batch_size=args.eval_batch_size,
        seed=args.seed,
    )
    out = report.write(os.path.join(args.out, "report"), overwrite=True)
    common.log(f"report -> {out}")
    frame = table(report)
    notes = [f"- {name}: {note}" for name, m in report.models.items() for note in m.remedy_notes]
    section = common.write_table(
        args,
        frame,
        "bpda",
        f"Quantized input (step {args.quantize_step}/255) "
        f"vs its twin, eps {args.eps * 255:.0f}/255, {len(y)} images",
    )
    common.finish(args, [section, "Remedies:\n", *notes, ""], "BPDA remedy of a masked gradient")


if __name__ == "__main__":
    main()
