"""What the evaluation store, per-image seeding and chunking cost, what a resume saves, and two
workers.

    python tools/bench_store.py --model=RUN [--n=500] [--suite=fast] [--eps=0.0313725] \\
        [--chunk_size=128] [--rounds=2] [--out=docs/results/evaluation_store]

In one process (traced once beforehand), on the same model and images:
1. overhead: `run_suite` with a store on disk, chunks and per-image draws, against the evaluation as
   it was before the store (the suite's attacks in sequence over the whole set in memory, draws per
   batch), interleaved over --rounds; ratio of medians (target: at most 1.05);
2. resume: a stored evaluation whose last chunks are missing is finished, against a full stored
   run (target: at most 0.55 at about half the work). The kill point is chosen from the full run's
   own per-chunk costs (the attack seconds its units recorded; chunks differ: robust images reach
   the expensive attacks): the last chunks whose share is nearest one half. Reported: that share
   f, the overhead resume - f x full in seconds, the fixed cost every run pays once (reading the
   store; one call of each attack, timed on one image), and the ratio scaled to exactly half.
   Then the state a kill at half the full run's own time leaves (the units written after it
   deleted), resumed: the engine goes attack by attack, so a kill loses the batch in progress
   and its chunk's earlier batches;
3. two workers: two processes share one store (`worker=(w, 2)`), against one process; the per-image
   outcomes must be identical. The resume of 2. as the CLI runs it, in a new process (imports, model
   load and tracing paid again), against that one process; the per-chunk cost and the time to
   read the finished store give the projection for N workers (or GPUs): ceil(chunks / N) x chunk
   cost + read;
4. growing: the suite's last attack added to a finished evaluation of the others (it runs on the
   survivors only), and the first half of the images grown to all of them (only the new chunks
   run), each against a full stored run; both must end with the full run's per-image outcomes.
Writes bench.csv, bench.md and bench.log to --out.
"""

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tfadv.runtime import onednn  # noqa: E402

onednn.enable_by_default()  # before TensorFlow loads

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

LINES = []


def say(text: str) -> None:
    print(text, flush=True)
    LINES.append(text)


def load(model_path: str, n: int):
    from tfadv.experiment import load_run

    run = load_run(model_path, limit=n)
    return run.model, run.data.float_images(), run.data.labels


def before_the_store(model, x, y, eps, suite, batch_size, seed):
    """The evaluation as it ran before the store: whole set in memory, draws per batch."""
    from tfadv import attacks, evaluation

    broken = attacks.predict_classes(model, x, batch_size) != y
    for k, attack in enumerate(evaluation.suite_attacks(suite)):
        active = np.flatnonzero(~broken)
        if len(active):
            found = attacks.adversarial_images(
                model,
                x[active],
                y[active],
                attack,
                eps,
                batch_size=batch_size,
                seed=seed + k if attack.takes_seed else None,
            )
            broken[active[attacks.predict_classes(model, found, batch_size) != y[active]]] = True
    return float(np.mean(~broken))


def stored(model, x, y, eps, suite, folder, chunk_size, batch_size, seed, worker=(0, 1)):
    from tfadv import evaluation

    return evaluation.run_suite(
        model,
        x,
        y,
        eps,
        suite,
        store=folder,
        chunk_size=chunk_size,
        batch_size=batch_size,
        seed=seed,
        worker=worker,
    )


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def growing(common, args, root, reference, full_seconds) -> list:
    """Rows 4: an attack added to a finished evaluation, and a larger image count."""
    from tfadv import evaluation

    model, x, y, eps, suite = common
    attack_list = evaluation.suite_attacks(suite)
    rows = []
    if len(attack_list) > 1:
        folder = os.path.join(root, "grow_suite")
        first = [a.describe() for a in attack_list[:-1]]
        stored(model, x, y, eps, first, folder, args.chunk_size, args.batch_size, args.seed)
        every = [a.describe() for a in attack_list]
        t_add, grown = timed(
            lambda: stored(
                model, x, y, eps, every, folder, args.chunk_size, args.batch_size, args.seed
            )
        )
        same = bool(np.array_equal(grown.broken_by, reference.broken_by))
        say(
            f"adding {attack_list[-1].describe()} to a finished evaluation: {t_add:.1f} s, "
            f"outcomes identical to the full run: {same}"
        )
        rows.append(
            {
                "measure": f"add the last attack ({attack_list[-1].name}) to a finished run of the "
                f"others / full stored run",
                "seconds": t_add,
                "baseline_seconds": full_seconds,
                "ratio": t_add / full_seconds,
                "target": f"identical outcomes: {same}",
            }
        )
    folder = os.path.join(root, "grow_limit")
    half = (len(x) // 2 // args.chunk_size) * args.chunk_size or len(x) // 2
    stored(model, x[:half], y[:half], eps, suite, folder, *_sizes(args))
    t_grow, grown = timed(lambda: stored(model, x, y, eps, suite, folder, *_sizes(args)))
    same = bool(np.array_equal(grown.broken_by, reference.broken_by))
    say(f"growing {half} to {len(x)} images: {t_grow:.1f} s, identical to the full run: {same}")
    rows.append(
        {
            "measure": f"grow a finished run of {half} images to {len(x)} / full stored run",
            "seconds": t_grow,
            "baseline_seconds": full_seconds,
            "ratio": t_grow / full_seconds,
            "target": f"identical outcomes: {same}",
        }
    )
    return rows


def chunk_costs(folder: str) -> pd.DataFrame:
    """Per chunk of a finished store, in order: its first image, its images, and what its attack
    units recorded (each group's seconds, forward passes and gradients shared by images)."""
    rows = []
    base = os.path.join(folder, "chunks")
    for name in sorted(os.listdir(base)):
        units = [
            np.load(os.path.join(base, name, unit))
            for unit in sorted(os.listdir(os.path.join(base, name)))
            if unit.startswith("a")
        ]
        rows.append(
            {
                "chunk": name,
                "start": int(name[1:]),
                "images": len(np.load(os.path.join(base, name, "clean.npz"))["indices"]),
                "seconds": sum(float(u["seconds"]) for u in units),
                "gradients": sum(int(u["gradients"]) for u in units),
                "forwards": sum(int(u["forwards"]) for u in units),
            }
        )
    return pd.DataFrame(rows)


def call_cost(common, args, image: int) -> dict:
    """Seconds of one call of each attack of the suite on the single image `image` (best of
    two): what a call costs whatever its batch (its iterations run one after another)."""
    from tfadv import attacks, evaluation

    model, x, y, eps, suite = common
    costs = {}
    for k, attack in enumerate(evaluation.suite_attacks(suite)):
        seed = args.seed + k if attack.takes_seed else None
        costs[attack.name] = min(
            timed(
                lambda attack=attack, seed=seed: attacks.adversarial_images(
                    model, x[[image]], y[[image]], attack, eps, seed=seed, indices=[image]
                )
            )[0]
            for _ in range(2)
        )
    return costs


def resume(common, args, root, full, t_full, reference):
    """Rows 2: a kill at about half the work, chosen from the full run's own per-chunk costs
    (the last chunks whose share of its attack seconds is nearest one half are deleted), then
    resumed; the overhead over that share and what it is made of."""
    model, x, y, eps, suite = common
    costs = chunk_costs(full)
    chunks = list(costs["chunk"])
    if len(chunks) < 2:
        say(f"resume: skipped (one chunk of {args.chunk_size}: nothing to kill half of)")
        return [], chunks, []
    share = costs["seconds"][::-1].cumsum()[::-1] / costs["seconds"].sum()  # from chunk i on
    first = int(np.argmin(np.abs(share.to_numpy()[1:] - 0.5))) + 1  # first missing chunk
    missing = costs.iloc[first:]
    f = float(share.iloc[first])
    f_images = missing["images"].sum() / costs["images"].sum()
    f_passes = (missing["forwards"].sum() + missing["gradients"].sum()) / (
        costs["forwards"].sum() + costs["gradients"].sum()
    )
    times = []
    for r in range(args.rounds):
        half = os.path.join(root, f"half{r}")
        shutil.copytree(full, half)
        for name in missing["chunk"]:
            shutil.rmtree(os.path.join(half, "chunks", name))
        seconds, resumed = timed(lambda half=half: stored(*common, half, *_sizes(args)))
        times.append(seconds)
    t_resume = float(np.median(times))
    same = bool(np.array_equal(resumed.broken_by, reference.broken_by))
    # the costs a run pays once whatever its size: reading the store, one call per attack
    t_read = min(timed(lambda: stored(*common, full, *_sizes(args)))[0] for _ in range(3))
    # an image the last attack runs on (robust, or broken by it): a call that runs every attack
    survivors = np.flatnonzero(reference.broken_by >= len(reference.attacks) - 1)
    survivors = np.union1d(survivors, np.flatnonzero(reference.robust))
    calls = call_cost(common, args, int(survivors[0])) if len(survivors) else {}
    t_calls = sum(calls.values())
    overhead = t_resume - f * t_full
    fixed = (1 - f) * (t_read + t_calls)
    kill = int(missing["start"].iloc[0])
    say(
        f"resume: kill at image {kill} ({len(missing)} of {len(chunks)} chunks missing): "
        f"{f_images:.1%} of the images, {f:.1%} of the full run's attack seconds, {f_passes:.1%} "
        f"of its forward passes + gradients; resumed in {t_resume:.2f} s (median of "
        f"{', '.join(f'{t:.2f}' for t in times)}) against "
        f"{f:.3f} x {t_full:.2f} s = {f * t_full:.2f} s: overhead {overhead:.2f} s, of which "
        f"(1 - {f:.3f}) x ({t_read:.2f} s reading the store + {t_calls:.2f} s one call of each "
        f"attack) = {fixed:.2f} s paid once by every run; outcomes identical to the full run: "
        f"{same}"
    )
    say(
        "one call on one image: "
        + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in calls.items())
    )
    what = f"{len(missing)} of {len(chunks)} chunks missing (images {kill}-{len(x) - 1})"
    return (
        [
            {
                "measure": f"resume, {what} / full stored run",
                "seconds": t_resume,
                "baseline_seconds": t_full,
                "ratio": t_resume / t_full,
                "target": f"<= 0.55; identical outcomes: {same}",
            },
            {
                "measure": f"resume: work left, the full run's attack seconds in chunks {kill}- "
                f"(by images {f_images:.3f}, by passes {f_passes:.3f})",
                "seconds": f * t_full,
                "baseline_seconds": t_full,
                "ratio": f,
                "target": "about 0.5",
            },
            {
                "measure": "resume: overhead, resume - work left",
                "seconds": overhead,
                "baseline_seconds": t_full,
                "ratio": overhead / t_full,
                "target": "",
            },
            {
                "measure": "resume: of the overhead, (1 - work left) x the fixed cost every run "
                f"pays once ({t_read:.2f} s reading the store + {t_calls:.2f} s one call per "
                "attack on 1 image)",
                "seconds": fixed,
                "baseline_seconds": t_full,
                "ratio": fixed / t_full,
                "target": "",
            },
            {
                "measure": "resume: scaled to a kill at exactly half the work, "
                "0.5 + overhead / full",
                "seconds": 0.5 * t_full + overhead,
                "baseline_seconds": t_full,
                "ratio": 0.5 + overhead / t_full,
                "target": "<= 0.55",
            },
        ],
        chunks,
        list(missing["chunk"]),
    )


def timed_kill(common, args, root, full, when, t_full, reference):
    """Row 2b: the state a kill at half the full run's own time leaves (every unit written after
    it deleted: units are written whole or not at all), resumed. The engine runs attack by
    attack over batches, so this loses the batch in progress (and its chunk's earlier batches)."""
    began, seconds = when
    kill_at = began + seconds / 2
    killed = os.path.join(root, "killed")
    shutil.copytree(full, killed)
    lost = 0
    for name in sorted(os.listdir(os.path.join(killed, "chunks"))):
        for unit in os.listdir(os.path.join(killed, "chunks", name)):
            if os.path.getmtime(os.path.join(full, "chunks", name, unit)) > kill_at:
                os.remove(os.path.join(killed, "chunks", name, unit))
                lost += unit.startswith("a")
    costs = chunk_costs(full)
    t_resume, resumed = timed(lambda: stored(*common, killed, *_sizes(args)))
    same = bool(np.array_equal(resumed.broken_by, reference.broken_by))
    say(
        f"kill at half the full run's time ({seconds / 2:.2f} s of {seconds:.2f} s): "
        f"{lost} of {len(costs) * len(reference.attacks)} attack units missing; resumed in "
        f"{t_resume:.2f} s ({t_resume / t_full:.3f} of the full run); identical: {same}"
    )
    return [
        {
            "measure": f"resume after a kill at half the full run's time ({lost} of "
            f"{len(costs) * len(reference.attacks)} attack units missing) / full stored run",
            "seconds": t_resume,
            "baseline_seconds": t_full,
            "ratio": t_resume / t_full,
            "target": f"<= 0.55; identical outcomes: {same}",
        }
    ]


def _sizes(args):
    return args.chunk_size, args.batch_size, args.seed


def worker_main(args) -> None:
    index, count = (int(v) for v in args.worker.split("/"))
    model, x, y = load(args.model, args.n)
    stored(
        model,
        x,
        y,
        args.eps,
        args.suite,
        args.store,
        args.chunk_size,
        args.batch_size,
        args.seed,
        (index, count),
    )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", required=True, help="a run folder (its test split is used)")
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--suite", default="fast")
    p.add_argument("--eps", type=float, default=8 / 255)
    p.add_argument("--chunk_size", type=int, default=128)
    p.add_argument("--batch_size", type=int, default=256)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="")
    p.add_argument(
        "--worker", default="", help=argparse.SUPPRESS
    )  # internal: "w/W" runs one worker
    p.add_argument("--store", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker_main(args)

    model, x, y = load(args.model, args.n)
    say(
        f"model {args.model}, {len(x)} test images, suite {args.suite}, eps {args.eps:.6f}, "
        f"chunks of {args.chunk_size}"
    )
    say(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    root = tempfile.mkdtemp(prefix="bench-store-")
    common = (model, x, y, args.eps, args.suite)
    stored(
        *common, os.path.join(root, "warm"), args.chunk_size, args.batch_size, args.seed
    )  # traces everything
    before_the_store(*common, args.batch_size, args.seed)
    rows, old_times, new_times, began = [], [], [], []
    for r in range(args.rounds):
        t_old, acc_old = timed(lambda: before_the_store(*common, args.batch_size, args.seed))
        folder = os.path.join(root, f"full{r}")
        began.append(time.time())
        t_new, result = timed(
            lambda folder=folder: stored(
                *common, folder, args.chunk_size, args.batch_size, args.seed
            )
        )
        old_times.append(t_old)
        new_times.append(t_new)
        say(
            f"round {r + 1}: before the store {t_old:.1f} s (robust {acc_old:.4f}); "
            f"stored, chunked, per-image draws {t_new:.1f} s (robust {result.robust_accuracy:.4f})"
        )
    overhead = float(np.median(new_times) / np.median(old_times))
    rows.append(
        {
            "measure": f"full stored run (store on disk, chunks of {args.chunk_size}, per-image "
            f"draws) / before the store (all images in memory, draws per batch), medians of "
            f"{args.rounds} rounds",
            "seconds": float(np.median(new_times)),
            "baseline_seconds": float(np.median(old_times)),
            "ratio": overhead,
            "target": "<= 1.05",
        }
    )

    # resume after a kill at about half the work
    full = os.path.join(root, "full0")
    t_full = float(np.median(new_times))
    reference = stored(*common, full, args.chunk_size, args.batch_size, args.seed)
    resumed_rows, chunks, missing = resume(common, args, root, full, t_full, reference)
    rows += resumed_rows
    rows += timed_kill(common, args, root, full, (began[0], new_times[0]), t_full, reference)

    # two worker processes sharing one store, against one process
    shared = os.path.join(root, "workers")
    command = [
        sys.executable,
        os.path.abspath(__file__),
        f"--model={args.model}",
        f"--n={args.n}",
        f"--suite={args.suite}",
        f"--eps={args.eps}",
        f"--chunk_size={args.chunk_size}",
        f"--batch_size={args.batch_size}",
        f"--seed={args.seed}",
        f"--store={shared}",
    ]
    start = time.perf_counter()
    procs = [subprocess.Popen([*command, f"--worker={w}/2"]) for w in range(2)]
    codes = [proc.wait() for proc in procs]
    t_read, merged = timed(
        lambda: stored(*common, shared, args.chunk_size, args.batch_size, args.seed)
    )
    t_two = time.perf_counter() - start
    one = os.path.join(root, "one")
    start = time.perf_counter()
    procs = [subprocess.Popen([*command[:-1], f"--store={one}", "--worker=0/1"])]
    codes += [proc.wait() for proc in procs]
    t_one = time.perf_counter() - start
    if missing:  # the resume as the CLI runs it: a new process (imports, model load, tracing)
        cut = os.path.join(root, "cut")
        shutil.copytree(full, cut)
        for name in missing:
            shutil.rmtree(os.path.join(cut, "chunks", name))
        start = time.perf_counter()
        codes.append(subprocess.call([*command[:-1], f"--store={cut}", "--worker=0/1"]))
        t_new_process = time.perf_counter() - start
        say(
            f"resume in a new process ({len(missing)} of {len(chunks)} chunks missing): "
            f"{t_new_process:.1f} s, a full run in a new process {t_one:.1f} s"
        )
    identical = bool(np.array_equal(merged.broken_by, reference.broken_by)) and bool(
        np.array_equal(merged.adversarial, reference.adversarial)
    )
    units = pd.DataFrame(
        [
            {"chunk": c, "seconds": float(np.load(os.path.join(full, "chunks", c, u))["seconds"])}
            for c in chunks
            for u in os.listdir(os.path.join(full, "chunks", c))
            if u.startswith("a")
        ]
    )
    per_chunk = float(units.groupby("chunk")["seconds"].sum().mean())
    say(
        f"two workers: exit codes of the processes {codes}, {t_two:.1f} s (one worker process: "
        f"{t_one:.1f} s), per-image outcomes identical to one process: {identical}; reading the "
        f"finished store {t_read:.2f} s"
    )
    rows.append(
        {
            "measure": f"two worker processes sharing a store / one process, wall time with model "
            f"load and tracing (outcomes identical: {identical})",
            "seconds": t_two,
            "baseline_seconds": t_one,
            "ratio": t_two / t_one,
            "target": f"no speed-up on {os.cpu_count()} shared cores",
        }
    )
    if missing:
        rows.append(
            {
                "measure": f"resume in a new process (imports, model load, tracing), "
                f"{len(missing)} of {len(chunks)} chunks missing / a full run in a new process",
                "seconds": t_new_process,
                "baseline_seconds": t_one,
                "ratio": t_new_process / t_one,
                "target": "",
            }
        )
    for workers in (1, 2, 4, 8, 16):
        projected = math.ceil(len(chunks) / workers) * per_chunk + t_read
        rows.append(
            {
                "measure": f"projection, {workers} GPU(s)/workers: ceil({len(chunks)}/{workers}) x "
                f"{per_chunk:.2f} s per chunk (full run's mean) + {t_read:.2f} s read",
                "seconds": projected,
                "baseline_seconds": float("nan"),
                "ratio": float("nan"),
                "target": "",
            }
        )
    rows += growing(common, args, root, reference, float(np.median(new_times)))
    say(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    table = pd.DataFrame(rows)
    say(table.to_markdown(index=False, floatfmt=".3f"))
    if args.out:
        from tfadv.runtime.files import write_text

        os.makedirs(args.out, exist_ok=True)
        table.to_csv(os.path.join(args.out, "bench.csv"), index=False)
        write_text(
            os.path.join(args.out, "bench.md"),
            table.to_markdown(index=False, floatfmt=".3f") + "\n",
        )
        write_text(
            os.path.join(args.out, "bench.log"), "\n".join([" ".join(sys.argv), *LINES]) + "\n"
        )
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
