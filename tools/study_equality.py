"""The equality table of the scaled evaluation: per-image outcomes of `python -m tfadv.evaluate`
on a trained model, whatever the batch size, image order, devices, workers or a kill + resume.

    python tools/study_equality.py --model=/work/runs/fgsm10 --limit=256 --suite=fast \\
        --eps=0.0313725 --out=docs/results/evaluation_store/equality \\
        [--batch_size=256] [--small_batch=32] [--chunk_size=64] [--seed=0] [--order_seed=1]

Runs the evaluation CLI in subprocesses, as a user would, every evaluation folder under a
temporary directory (the model folder is only read):
  reference     --batch_size=256, one process, one device;
  batch         --batch_size=32;
  order         the images in a random order (--order_seed), each with its original index: the CLI
                has no shuffle option, so this one runs the suite at the attack-runner layer
                (`tfadv.attacks.adversarial_images(..., indices=original)`, attack k on the
                survivors of the attacks before it, as the engine does) in a subprocess;
  mirrored      --distribution=mirrored --logical_cpus=2 (MirroredStrategy over 2 logical CPUs);
  workers       --distribution=multi_worker, 2 processes on localhost (TF_CONFIG;
                `tfadv.experiment.workers`);
  kill+resume   SIGKILL as soon as the progress output shows about half of the work units
                (`tfadv.experiment.kill_resume.run_and_kill`), then the same command with --resume;
  control       the reference with --seed + 1: a negative control (the measures must see other
                random draws), not part of the verdict.
Every CLI run is `--sections=suite` (the per-image outcomes are the suite's; the other sections
are left out to keep the study short) with one --chunk_size, so that there are several chunks to
share between workers and to lose on a kill.

Per variant: the configuration, images, clean and robust accuracy, the number of images whose
outcome (misclassified, robust, or broken by attack k: `EvaluationStore.outcomes()["broken_by"]`)
differs from the reference, the largest |margin difference| (logit margin at the final image),
wall seconds and exit codes. Writes equality.md (the table, the differing images, the exact
commands) and equality.csv to --out, prints the table; exits 1 if any variant differs or fails,
2 on bad arguments.
"""

import argparse
import csv
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from tfadv.experiment import kill_resume, workers  # noqa: E402  (no TensorFlow)

START = time.time()
COLUMNS = [
    "variant",
    "configuration",
    "images",
    "clean_accuracy",
    "robust_accuracy",
    "differing_images",
    "max_margin_difference",
    "seconds",
    "exit_codes",
    "status",
]


def say(text: str) -> None:
    print(f"[{time.time() - START:7.1f} s] {text}", flush=True)


class OneLineParser(argparse.ArgumentParser):
    def error(self, message):
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def parse_args(argv=None):
    parser = OneLineParser(prog="study_equality.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="run folder (read only)")
    parser.add_argument("--limit", type=int, default=256, help="first N test images")
    parser.add_argument("--suite", default="fast", help="standard, fast or attack specs")
    parser.add_argument("--eps", type=float, required=True, help="budget, pixel scale [0, 1]")
    parser.add_argument("--out", required=True, help="folder for equality.md and equality.csv")
    parser.add_argument("--batch_size", type=int, default=256, help="the reference's batch")
    parser.add_argument("--small_batch", type=int, default=32, help="the batch variant's batch")
    parser.add_argument("--chunk_size", type=int, default=64, help="images per work unit")
    parser.add_argument("--seed", type=int, default=0, help="the attacks' seed")
    parser.add_argument("--order_seed", type=int, default=1, help="seed of the image order")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per variant")
    parser.add_argument("--keep", action="store_true", help="keep the evaluation folders")
    parser.add_argument("--permuted_into", default="", help=argparse.SUPPRESS)  # internal
    args = parser.parse_args(argv)
    checks = (
        (os.path.isdir(args.model), "a run folder", "model", args.model),
        (args.limit >= 1, "limit >= 1", "limit", args.limit),
        (np.isfinite(args.eps) and 0 < args.eps <= 1, "eps in (0, 1]", "eps", args.eps),
        (args.suite.strip() != "", "a suite", "suite", args.suite),
        (args.batch_size >= 1, "batch_size >= 1", "batch_size", args.batch_size),
        (args.small_batch >= 1, "small_batch >= 1", "small_batch", args.small_batch),
        (args.chunk_size >= 1, "chunk_size >= 1", "chunk_size", args.chunk_size),
        (args.timeout > 0, "timeout > 0 (seconds)", "timeout", args.timeout),
        (args.out.strip() != "", "an output folder", "out", args.out),
    )
    for ok, what, name, value in checks:
        if not ok:
            parser.error(f"Expected {what}. Received: {name}={value!r}")
    return args


# ------------------------------------------------------------------ the runs


def cli_command(args, output_dir, batch_size, *extra, seed=None) -> list:
    return [
        sys.executable,
        "-m",
        "tfadv.evaluate",
        f"--model={args.model}",
        f"--limit={args.limit}",
        f"--suite={args.suite}",
        f"--eps={args.eps}",
        "--sections=suite",
        f"--chunk_size={args.chunk_size}",
        f"--seed={args.seed if seed is None else seed}",
        f"--batch_size={batch_size}",
        "--verbose=1",
        f"--output_dir={output_dir}",
        *extra,
    ]


def shown(command, env="") -> str:
    return (env + " " if env else "") + shlex.join(
        ["python", *command[1:]] if command[0] == sys.executable else command
    )


def run_logged(command, log, timeout) -> int:
    """Runs `command` (environment as the kill/resume helper's), output in `log`; exit code."""
    with open(log, "w") as out:
        try:
            return subprocess.run(
                command,
                cwd=workers.SOURCE_ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=kill_resume.environment(),
                timeout=timeout,
            ).returncode
        except subprocess.TimeoutExpired:
            return -1


def units_in_log(path) -> list:
    """(cumulative work units, line text after the timestamp) per progress line of a CLI log."""
    found, total = [], 0
    with open(path) as f:
        for line in f:
            match = re.search(r"\] (chunks? at images? ([\d, ]+)(?: \(|:).*)$", line.rstrip())
            if match:
                total += len(re.findall(r"\d+", match.group(2)))
                found.append((total, match.group(1)))
    return found


def store_folder(output_dir) -> str | None:
    """The suite store of the (one) model in an evaluation folder."""
    root = os.path.join(output_dir, "store")
    if not os.path.isdir(root):
        return None
    for name in sorted(os.listdir(root)):
        if os.path.exists(os.path.join(root, name, "store.json")):
            return os.path.join(root, name)
    return None


def read_outcomes(output_dir, n) -> dict | None:
    """broken_by, margins, labels, clean predictions of a finished evaluation's store."""
    from tfadv.runtime.quiet import native_stderr_silenced

    with native_stderr_silenced():
        from tfadv.evaluation.store import EvaluationStore  # imports TensorFlow (the package)

    folder = store_folder(output_dir)
    if folder is None:
        return None
    store = EvaluationStore(folder)
    with open(os.path.join(folder, "store.json")) as f:
        store.settings = json.load(f)
    if not store.complete(n):
        return None
    attacks = len(store.settings["attacks"])
    shape = next(
        (
            unit["adversarial"].shape[1:]
            for start in store.starts()
            for k in range(attacks)
            for unit in [store.get(start, f"a{k}")]
            if len(unit["adversarial"])
        ),
        (1, 1, 1),
    )
    # the images only seed the adversarial copy, unused here
    out = store.outcomes(np.zeros((n, *shape), np.float32), attacks)
    return {key: out[key] for key in ("broken_by", "margins", "labels", "clean_predictions")}


def permuted_main(args) -> None:
    """The suite at the attack-runner layer on the images in a random order, each attack seeded
    by (seed + k, original index); writes broken_by, margins, labels, clean predictions (.npz)."""
    from tfadv import attacks, evaluation
    from tfadv.evaluation import engine
    from tfadv.experiment import run_folder, splits
    from tfadv.runtime import devices

    devices.set_seed(args.seed, deterministic=False)  # as the evaluation job does
    model = run_folder.load_model(args.model, "", "model")
    data, _ = splits.load_split(args.model, "", "", "test", args.limit)
    x, y = data.float_images(), np.asarray(data.labels, np.int64)
    view, _ = evaluation.attacked_view(model, x, 8)
    order = np.random.default_rng(args.order_seed).permutation(len(x))
    xp, yp = x[order], y[order]
    logits = engine.batched_logits(view, xp, args.batch_size)
    clean = logits.argmax(axis=1)
    margins = np.full(len(x), np.nan, np.float32)
    margins[order] = engine.logit_margins(logits, yp)
    broken_by = np.full(len(x), -2, np.int64)
    broken_by[order] = np.where(clean == yp, -1, -2)
    for k, attack in enumerate(evaluation.suite_attacks(args.suite, "inf")):
        alive = np.flatnonzero(broken_by[order] == -1)  # positions in the permuted order
        if len(alive) == 0:
            break
        found = attacks.adversarial_images(
            view,
            xp[alive],
            yp[alive],
            attack,
            args.eps,
            batch_size=args.batch_size,
            seed=args.seed + k if attack.takes_seed else None,
            indices=order[alive],
        )
        adv_logits = engine.batched_logits(view, found, args.batch_size)
        margins[order[alive]] = engine.logit_margins(adv_logits, yp[alive])
        hit = order[alive][adv_logits.argmax(axis=1) != yp[alive]]
        broken_by[hit] = k
        print(f"{attack.describe()} on {len(alive)} images, broke {len(hit)}", flush=True)
    clean_predictions = np.zeros(len(x), np.int64)
    clean_predictions[order] = clean
    np.savez(
        args.permuted_into,
        broken_by=broken_by,
        margins=margins,
        labels=y,
        clean_predictions=clean_predictions,
        order=order,
    )


# ------------------------------------------------------------------ comparison


def compare(name, configuration, outcome, reference, seconds, codes) -> dict:
    row = {
        "variant": name,
        "configuration": configuration,
        "images": "",
        "clean_accuracy": "",
        "robust_accuracy": "",
        "differing_images": "",
        "max_margin_difference": "",
        "seconds": f"{seconds:.1f}",
        "exit_codes": " ".join(str(c) for c in codes),
        "status": "FAILED",
        "details": [],
    }
    if outcome is None:
        return row
    broken = outcome["broken_by"]
    row["images"] = len(broken)
    row["clean_accuracy"] = f"{np.mean(outcome['clean_predictions'] == outcome['labels']):.4f}"
    row["robust_accuracy"] = f"{np.mean(broken == -1):.4f}"
    if reference is None:
        row["status"] = "reference"
        return row
    if len(broken) != len(reference["broken_by"]):
        row["status"] = "DIFFERS (image count)"
        return row
    differ = np.flatnonzero(broken != reference["broken_by"])
    row["differing_images"] = len(differ)
    row["max_margin_difference"] = (
        f"{float(np.max(np.abs(outcome['margins'] - reference['margins']))):.3g}"
    )
    row["details"] = [
        (int(i), int(reference["broken_by"][i]), int(broken[i])) for i in differ.tolist()
    ]
    ok = len(differ) == 0 and all(c == 0 for c in codes if c is not None and c != -9)
    row["status"] = "same" if ok else "DIFFERS"
    return row


def outcome_name(code: int, attacks: list) -> str:
    return {-2: "misclassified clean", -1: "robust"}.get(code) or f"broken by {attacks[code]}"


# ------------------------------------------------------------------ main


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.permuted_into:
        permuted_main(args)
        return 0
    args.model = os.path.abspath(args.model)
    root = tempfile.mkdtemp(prefix="study_equality_")
    say(f"evaluation folders under {root}")
    rows, commands, notes = [], [], []
    n = args.limit
    reference = None
    attacks_run: list = []

    def finish(name, configuration, output_dir, seconds, codes, outcome=None):
        nonlocal reference, attacks_run
        if outcome is None:
            outcome = read_outcomes(output_dir, n) if output_dir else None
        if output_dir and not attacks_run and store_folder(output_dir):
            with open(os.path.join(store_folder(output_dir), "store.json")) as f:
                attacks_run = json.load(f)["attacks"]
        row = compare(name, configuration, outcome, reference, seconds, codes)
        if reference is None and outcome is not None:
            reference = outcome
            n_ref = len(outcome["broken_by"])
            if n_ref != n:
                notes.append(f"the split has {n_ref} images (--limit={n})")
        rows.append(row)
        say(
            f"{name}: {row['status']}; robust {row['robust_accuracy']}, "
            f"{row['differing_images'] or 0} differing images, max |margin diff| "
            f"{row['max_margin_difference'] or '-'}, {seconds:.1f} s, exit {row['exit_codes']}"
        )
        return row

    def cli_variant(name, configuration, batch_size, *extra, seed=None):
        """One `python -m tfadv.evaluate` run into root/name, logged and compared."""
        out = os.path.join(root, name)
        command = cli_command(args, out, batch_size, *extra, seed=seed)
        commands.append((name, shown(command)))
        say(f"{name}: {configuration}")
        began = time.time()
        code = run_logged(command, os.path.join(root, f"{name}.log"), args.timeout)
        return finish(name, configuration, out, time.time() - began, [code])

    # reference
    first = cli_variant(
        "reference", f"batch {args.batch_size}, 1 process, 1 device", args.batch_size
    )
    if reference is None:
        say(f"the reference failed (exit {first['exit_codes']}); see {root}/reference.log")
        return 1
    n = len(reference["broken_by"])

    # batch size
    cli_variant("batch", f"batch {args.small_batch}", args.small_batch)

    # image order (library layer)
    target = os.path.join(root, "order.npz")
    command = [
        sys.executable,
        os.path.abspath(__file__),
        f"--model={args.model}",
        f"--limit={args.limit}",
        f"--suite={args.suite}",
        f"--eps={args.eps}",
        f"--batch_size={args.batch_size}",
        f"--seed={args.seed}",
        f"--order_seed={args.order_seed}",
        f"--out={root}",
        f"--permuted_into={target}",
    ]
    commands.append(("order", shown(command)))
    say(f"order: images permuted (order_seed={args.order_seed}), attack-runner layer")
    began = time.time()
    code = run_logged(command, os.path.join(root, "order.log"), args.timeout)
    outcome = None
    if code == 0 and os.path.exists(target):
        with np.load(target) as f:
            outcome = {key: f[key] for key in f.files}
        notes.append(
            "order: the CLI has no shuffle option; this variant runs the suite through "
            "`tfadv.attacks.adversarial_images(..., indices=original index)` on the images in "
            f"the order of `np.random.default_rng({args.order_seed}).permutation({n})` (first "
            f"images: {', '.join(map(str, outcome['order'][:6]))}, ...), attack k on the "
            "survivors of attacks 0..k-1 in that order, not through the CLI's store"
        )
    finish(
        "order",
        f"batch {args.batch_size}, permuted images (library layer)",
        None,
        time.time() - began,
        [code],
        outcome,
    )

    # two logical CPU devices
    cli_variant(
        "mirrored",
        f"batch {args.batch_size}, MirroredStrategy, 2 logical CPUs",
        args.batch_size,
        "--distribution=mirrored",
        "--logical_cpus=2",
    )

    # two workers on localhost
    out = os.path.join(root, "workers")
    command = cli_command(args, out, args.batch_size, "--distribution=multi_worker")
    commands.append(
        ("workers", shown(command, "TF_CONFIG=<worker i of 2, localhost ports>") + "  # x2")
    )
    say("workers: 2 processes on localhost (TF_CONFIG)")
    began = time.time()
    started = workers.start_workers(
        command[3:], 2, os.path.join(root, "workers_logs"), module="tfadv.evaluate"
    )
    codes = workers.wait_all(started, args.timeout)
    finish(
        "workers",
        f"batch {args.batch_size}, 2 workers (multi_worker, TF_CONFIG)",
        out,
        time.time() - began,
        codes,
    )

    # kill -9 at about half of the work units, then --resume
    out = os.path.join(root, "killed")
    progress = units_in_log(os.path.join(root, "reference.log"))
    total = progress[-1][0] if progress else 0
    half = next(((units, line) for units, line in progress if units >= total / 2), None)
    command = cli_command(args, out, args.batch_size)
    resume = [*command, "--resume"]
    commands.append(
        ("kill+resume", shown(command) + "  # SIGKILLed at the progress line named in the notes")
    )
    commands.append(("kill+resume", shown(resume)))
    if half is None:
        notes.append("kill+resume: no progress lines in the reference log; not run")
        rows.append(compare("kill+resume", "not run", None, reference, 0.0, []))
    else:
        units, line = half
        say(f"kill+resume: SIGKILL at unit {units} of {total}: '{line[:70]}...'")
        began = time.time()
        codes = []
        try:
            codes.append(
                kill_resume.run_and_kill(
                    command,
                    os.path.join(root, "killed.log"),
                    re.escape(line),
                    0.0,
                    timeout=args.timeout,
                )
            )
        except RuntimeError as e:
            notes.append(f"kill+resume: {e}")
            codes.append("ended-before-kill")
        folder = store_folder(out)
        on_disk = 0
        if folder:
            for _, _, files in os.walk(os.path.join(folder, "chunks")):
                on_disk += sum(name.endswith(".npz") for name in files)
        report = os.path.exists(os.path.join(out, "report.md"))
        notes.append(
            f"kill+resume: SIGKILL right after the progress line of work unit {units} of "
            f"{total} (chunks x (clean + attacks)), `{line}`; units on disk after the kill: "
            f"{on_disk}, report written before the kill: {report}"
        )
        codes.append(run_logged(resume, os.path.join(root, "resume.log"), args.timeout))
        finish(
            "kill+resume",
            f"batch {args.batch_size}, SIGKILL at {units}/{total} units, then --resume",
            out,
            time.time() - began,
            codes,
        )

    # negative control: another seed must show up in the measures (not part of the verdict)
    row = cli_variant(
        "control",
        f"batch {args.batch_size}, seed {args.seed + 1}",
        args.batch_size,
        seed=args.seed + 1,
    )
    if row["status"] != "FAILED":
        row["status"] = "control (another seed)"
    notes.append(
        "control: the reference's command with --seed=seed+1, a negative control showing that "
        "the measures see a change of the attacks' random draws; it is not part of the verdict"
    )

    write(args, rows, commands, notes, attacks_run, root)
    bad = [
        row["variant"]
        for row in rows
        if row["status"] not in ("reference", "same") and row["variant"] != "control"
    ]
    verdict = "DIFFERS: " + ", ".join(bad) if bad else "all same"
    say(f"done in {time.time() - START:.0f} s; {verdict}")
    if bad or args.keep:
        say(f"evaluation folders and logs kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if bad else 0


def write(args, rows, commands, notes, attacks_run, root) -> None:
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "equality.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*COLUMNS, "differing"])
        writer.writeheader()
        for row in rows:
            detail = ";".join(f"{i}:{a}->{b}" for i, a, b in row["details"])
            writer.writerow({**{key: row[key] for key in COLUMNS}, "differing": detail})
    header = "| " + " | ".join(COLUMNS) + " |"
    table = [header, "|" + "---|" * len(COLUMNS)]
    table += ["| " + " | ".join(str(row[key]) for key in COLUMNS) + " |" for row in rows]
    print("\n".join(table), flush=True)
    lines = [
        "# Equality table: per-image outcomes of the scaled evaluation",
        "",
        f"Model {args.model}, the first {args.limit} test images, suite {args.suite} "
        f"({', '.join(attacks_run)}), eps={args.eps} (L-inf, pixel scale), seed {args.seed}, "
        f"chunks of {args.chunk_size} images, `--sections=suite`. Written "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `tools/study_equality.py` "
        f"in {time.time() - START:.0f} s (2-core machine, niced).",
        "",
        "An image's outcome is `broken_by` of the store: misclassified clean, robust, or broken "
        "by attack k. differing_images counts the images whose outcome differs from the "
        "reference's; max_margin_difference is the largest |difference| of the logit margin "
        "(z_y - max_other z) at the image's final (adversarial or clean) input. Exit code -9: "
        "the SIGKILLed run.",
        "",
        *table,
        "",
    ]
    for row in rows:
        for i, a, b in row["details"]:
            lines.append(
                f"- {row['variant']}: image {i}: reference {outcome_name(a, attacks_run)}, "
                f"variant {outcome_name(b, attacks_run)}"
            )
    if notes:
        lines += ["", "Notes:", "", *[f"- {note}" for note in notes]]
    lines += ["", "Commands (evaluation folders under a temporary directory):", "", "```"]
    lines += [f"# {name}\n{command}" for name, command in commands]
    lines += [
        "```",
        "",
        "Reproduce: `python tools/study_equality.py "
        + " ".join(
            f"--{key}={getattr(args, key)}"
            for key in ("model", "limit", "suite", "eps", "batch_size", "small_batch")
        )
        + f" --chunk_size={args.chunk_size} --order_seed={args.order_seed} --out=OUT`",
        "",
    ]
    with open(os.path.join(args.out, "equality.md"), "w") as f:
        f.write("\n".join(lines))
    say(f"written: {args.out}/equality.md, equality.csv")


if __name__ == "__main__":
    sys.exit(main())
