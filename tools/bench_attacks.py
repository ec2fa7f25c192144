"""Times FGSM and PGD-10 for tfadv, CleverHans and the Adversarial Robustness Toolbox.

    python tools/bench_attacks.py [--model=RUN_OR_KERAS_FILE] [--batch_size=256] [--repeats=7]
        [--processes=3] [--out=docs/results/attack_speed]

One model (baseline_cnn, random weights unless --model), one batch, the same inputs for
every library, all libraries in the same process. After warm-up, each round times every
method once, in a new random order; a ratio is taken within each round and the median over
rounds is printed with its range. The whole is repeated in --processes fresh processes and
pooled: this machine's speed drifts by up to 2x over seconds to minutes (ratios within a
round cancel that), and one compiled function can run 10-15% faster or slower than another
for the whole life of a process (fresh processes average that out; the per-process medians
are printed to show it). The floor "10 x fwd+bwd" is a
compiled tf.function doing ten input-gradient computations of the same loss, unrolled in
the graph (each step depends on the previous one, so none is elided); the same in a
tf.while_loop is timed too. oneDNN is on or off for all alike (see
tfadv.runtime.onednn; TF_ENABLE_ONEDNN_OPTS=0 for TensorFlow's own kernels).
CleverHans is timed as documented ("eager": its loop runs eagerly around a gradient that
CleverHans itself compiles with tf.function) and wrapped whole in tf.function. ART runs its
TensorFlowV2Classifier eagerly (its own design: no compiled step). Libraries that are not
installed are skipped.

Also measured, on the same batch: the largest absolute difference between tfadv's and
CleverHans's L-inf FGSM, BIM-10 and PGD-10 without random start (0 means the same bits).
With --out, writes report.md (the printed report, the command and the load average before
and after each process), times.csv (seconds of every method in every round), ratios.csv and
agreement.csv there.
"""

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from tfadv.runtime import onednn  # noqa: E402

# before TensorFlow loads, as importing tfadv first does (see tfadv.runtime.onednn)
onednn.enable_by_default()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfadv import attacks, models  # noqa: E402
from tfadv.experiment import load_model  # noqa: E402
from tfadv.runtime import devices as runtime  # noqa: E402

EPS = 8 / 255
STEPS = 10
ALPHA = 2 / 255


def ten_gradients_fn(logits_model, jit, unrolled=True):
    """The floor: STEPS forward+backward passes to the input in one compiled function, unrolled
    in the graph or (unrolled=False) in a tf.while_loop."""

    def step(adv, y):
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(adv)
            loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
                y, logits_model(adv, training=False)
            )
        return adv + 1e-6 * tape.gradient(loss, adv)

    @tf.function(jit_compile=jit, autograph=False)
    def run(x, y):
        if not unrolled:
            return tf.while_loop(
                lambda i, _: i < STEPS, lambda i, adv: (i + 1, step(adv, y)), (tf.constant(0), x)
            )[1]
        adv = x
        for _ in range(STEPS):
            adv = step(adv, y)
        return adv

    return run


def cleverhans_fns(logits_model, x, y):
    try:
        from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method
        from cleverhans.tf2.attacks.projected_gradient_descent import projected_gradient_descent
    except ImportError:
        return {}

    def fgsm(x, y):
        return fast_gradient_method(logits_model, x, EPS, np.inf, clip_min=0.0, clip_max=1.0, y=y)

    def pgd(x, y):
        return projected_gradient_descent(
            logits_model,
            x,
            EPS,
            ALPHA,
            STEPS,
            np.inf,
            clip_min=0.0,
            clip_max=1.0,
            y=y,
            rand_init=True,
        )

    return {
        "cleverhans fgsm (eager)": fgsm,
        "cleverhans fgsm (tf.function)": tf.function(fgsm),
        "cleverhans pgd-10 (eager)": pgd,
        "cleverhans pgd-10 (tf.function)": tf.function(pgd),
    }


def art_fns(logits_model, x, y, batch_size):
    try:
        from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent
        from art.estimators.classification import TensorFlowV2Classifier
    except ImportError:
        return {}
    classifier = TensorFlowV2Classifier(
        model=logits_model,
        nb_classes=int(logits_model.output_shape[-1]),
        input_shape=tuple(x.shape[1:]),
        loss_object=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        clip_values=(0.0, 1.0),
    )
    fgsm = FastGradientMethod(classifier, eps=EPS, batch_size=batch_size)
    pgd = ProjectedGradientDescent(
        classifier,
        eps=EPS,
        eps_step=ALPHA,
        max_iter=STEPS,
        num_random_init=1,
        batch_size=batch_size,
        verbose=False,
    )
    x_np, y_np = x.numpy(), y.numpy()
    return {
        "art fgsm": lambda *_: fgsm.generate(x_np, y_np),
        "art pgd-10": lambda *_: pgd.generate(x_np, y_np),
    }


def cleverhans_agreement(model, logits_model, x, y) -> dict:
    """{attack: largest |tfadv - CleverHans|} for L-inf FGSM, BIM-10 and PGD-10 without random
    start."""
    try:
        from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method
        from cleverhans.tf2.attacks.projected_gradient_descent import projected_gradient_descent
    except ImportError:
        return {}

    def ch_iterative(rand_init):
        return projected_gradient_descent(
            logits_model,
            x,
            EPS,
            ALPHA,
            STEPS,
            np.inf,
            clip_min=0.0,
            clip_max=1.0,
            y=y,
            rand_init=rand_init,
        )

    pairs = {
        "fgsm": (
            attacks.fgsm(model, x, y, EPS),
            fast_gradient_method(logits_model, x, EPS, np.inf, clip_min=0.0, clip_max=1.0, y=y),
        ),
        "bim-10": (attacks.bim(model, x, y, EPS, steps=STEPS, alpha=ALPHA), ch_iterative(False)),
        "pgd-10 (no random start)": (
            attacks.pgd(model, x, y, EPS, steps=STEPS, alpha=ALPHA, random_start=False),
            ch_iterative(False),
        ),
    }
    return {
        name: float(np.abs(np.asarray(a) - np.asarray(b)).max()) for name, (a, b) in pairs.items()
    }


def time_methods(args) -> dict:
    """{method: [seconds per round]} in this process."""
    load_before = os.getloadavg()
    runtime.set_seed(0, deterministic=False)
    model = load_model(args.model) if args.model else models.build("baseline_cnn")
    logits_model = models.logits_model(model)
    jit = runtime.resolve_jit_compile(args.jit_compile)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((args.batch_size, *model.input_shape[1:]), dtype=np.float32))
    y = tf.constant(rng.integers(0, model.output_shape[-1], args.batch_size), tf.int64)

    fns = {
        "10 x fwd+bwd (floor)": ten_gradients_fn(logits_model, jit),
        "10 x fwd+bwd, tf.while_loop": ten_gradients_fn(logits_model, jit, unrolled=False),
        "tfadv fgsm": lambda x, y: attacks.fgsm(model, x, y, EPS, jit_compile=jit),
        "tfadv pgd-10": lambda x, y: attacks.pgd(
            model, x, y, EPS, steps=STEPS, alpha=ALPHA, seed=0, jit_compile=jit
        ),
        "tfadv bim-10 (no random start)": lambda x, y: attacks.bim(
            model, x, y, EPS, steps=STEPS, alpha=ALPHA, jit_compile=jit
        ),
        **cleverhans_fns(logits_model, x, y),
        **art_fns(logits_model, x, y, args.batch_size),
    }
    times = {name: [] for name in fns}
    for fn in fns.values():  # warm-up: tracing, graph optimisation, caches
        for _ in range(2):
            np.asarray(fn(x, y))
    order_rng = np.random.default_rng(1)
    for _ in range(args.repeats):  # one round times every method once, in a new random order
        for name in order_rng.permutation(list(fns)):
            start = time.perf_counter()
            np.asarray(fns[name](x, y))  # forces the result
            times[name].append(time.perf_counter() - start)
    return {
        "times": times,
        "jit": jit,
        "onednn": onednn.is_enabled(),
        "agreement": cleverhans_agreement(model, logits_model, x, y),
        "load": [load_before, os.getloadavg()],
    }


def time_in_processes(args) -> list:
    """Runs `time_methods` in `args.processes` fresh processes, one after another."""
    results = []
    for index in range(args.processes):
        command = [
            sys.executable,
            os.path.abspath(__file__),
            "--worker",
            "--processes=1",
            f"--model={args.model}",
            f"--batch_size={args.batch_size}",
            f"--repeats={args.repeats}",
            f"--jit_compile={args.jit_compile}",
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode:
            last_line = (done.stderr.strip().splitlines() or ["no error output"])[-1]
            sys.exit(
                f"error: benchmark process {index + 1} failed (exit {done.returncode}): {last_line}"
            )
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"process {index + 1}/{args.processes} done", file=sys.stderr, flush=True)
    return results


def ratio_rows(results) -> list:
    """One dict per ratio of RATIOS whose methods ran: median over every round, range, per-process
    medians."""
    rows = []
    for numerator, denominator, target in RATIOS:
        if numerator not in results[0]["times"] or denominator not in results[0]["times"]:
            continue
        per_process = [
            [a / b for a, b in zip(r["times"][numerator], r["times"][denominator], strict=True)]
            for r in results
        ]
        every = [ratio for ratios in per_process for ratio in ratios]
        rows.append(
            {
                "numerator": numerator,
                "denominator": denominator,
                "median": round(statistics.median(every), 4),
                "lowest": round(min(every), 4),
                "highest": round(max(every), 4),
                "process_medians": " ".join(
                    f"{statistics.median(ratios):.3f}" for ratios in per_process
                ),
                "rounds": len(every),
                "target": target,
            }
        )
    return rows


def report(results, args) -> list:
    """The report's lines."""
    first = results[0]
    names = list(first["times"])
    pooled = {name: [t for r in results for t in r["times"][name]] for name in names}
    onednn_state = "on" if first["onednn"] else "off (TF_ENABLE_ONEDNN_OPTS=0)"
    lines = [
        f"baseline_cnn, batch {args.batch_size}, eps {EPS:.4f}, "
        f"jit_compile={first['jit']}, oneDNN {onednn_state}, "
        f"{len(results)} processes x {args.repeats} rounds after warm-up, {os.cpu_count()} CPUs",
        "load average (1, 5, 15 min) before and after each process: "
        + "; ".join(
            " -> ".join(" ".join(f"{v:.2f}" for v in load) for load in r["load"]) for r in results
        ),
        f"{'method':34s} {'median s':>9s} {'min s':>9s}",
    ]
    lines += [
        f"{name:34s} {statistics.median(pooled[name]):9.4f} {min(pooled[name]):9.4f}"
        for name in names
    ]
    lines += [
        "",
        "ratios: median over all rounds of the ratio within each round [lowest, highest];",
        "then the median within each process (the spread between processes); (target)",
    ]
    for row in ratio_rows(results):
        label = f"{row['numerator']} / {row['denominator']}"
        lines.append(
            f"{label:58s}{row['median']:6.3f} [{row['lowest']:.2f}, {row['highest']:.2f}]  "
            f"{row['process_medians']}  {row['target']}"
        )
    if first["agreement"]:
        lines += ["", "largest |tfadv - CleverHans| on this batch (L-inf; 0 = the same bits):"]
        lines += [f"{name:34s} {diff:.3g}" for name, diff in first["agreement"].items()]
    return lines


def write_outputs(out: str, results, lines) -> None:
    """report.md, times.csv, ratios.csv and agreement.csv in `out`."""
    os.makedirs(out, exist_ok=True)
    command = "python " + " ".join([os.path.relpath(__file__), *sys.argv[1:]])
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(f"# Attack speed\n\n`{command}` ({when})\n\n```\n" + "\n".join(lines) + "\n```\n")
    with open(os.path.join(out, "times.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["process", "round", "method", "seconds"])
        for p, result in enumerate(results):
            for name, times in result["times"].items():
                writer.writerows([p, r, name, f"{t:.5f}"] for r, t in enumerate(times))
    rows = ratio_rows(results)
    with open(os.path.join(out, "ratios.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(os.path.join(out, "agreement.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["attack", "max_abs_difference_vs_cleverhans"])
        writer.writerows(results[0]["agreement"].items())


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default="", help="run folder or .keras file (default: random baseline_cnn)"
    )
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=7, help="rounds per process")
    parser.add_argument(
        "--processes", type=int, default=3, help="fresh processes, one after another"
    )
    parser.add_argument("--jit_compile", default="auto")
    parser.add_argument(
        "--out", default="", help="folder for report.md and the CSVs (default: print only)"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.repeats < 1 or args.processes < 1:
        parser.error(
            f"--repeats and --processes must be >= 1. Received: {args.repeats}, {args.processes}"
        )
    if args.worker:
        print(json.dumps(time_methods(args)))
        return
    results = time_in_processes(args) if args.processes > 1 else [time_methods(args)]
    lines = report(results, args)
    print("\n".join(lines))
    if args.out:
        write_outputs(args.out, results, lines)
        print(f"written to {args.out}")


RATIOS = (  # (numerator, denominator, target)
    ("tfadv pgd-10", "10 x fwd+bwd (floor)", "(<= 1.05)"),
    ("10 x fwd+bwd, tf.while_loop", "10 x fwd+bwd (floor)", ""),
    ("cleverhans pgd-10 (eager)", "tfadv pgd-10", "(>= 1)"),
    ("cleverhans pgd-10 (tf.function)", "tfadv pgd-10", "(>= 1)"),
    ("art pgd-10", "tfadv pgd-10", "(>= 2.5)"),
    ("cleverhans fgsm (eager)", "tfadv fgsm", ""),
    ("cleverhans fgsm (tf.function)", "tfadv fgsm", ""),
    ("art fgsm", "tfadv fgsm", ""),
)


if __name__ == "__main__":
    main()
