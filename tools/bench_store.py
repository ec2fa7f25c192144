"""What the evaluation store, per-image seeding and chunking cost, what a resume saves, and two workers.

    python tools/bench_store.py --model=RUN [--n=500] [--suite=fast] [--eps=0.0313725] \\
        [--chunk_size=128] [--rounds=2] [--out=docs/results/evaluation_store]

In one process, on the same model and images:
1. overhead: `run_suite` with a store on disk, chunks and per-image draws, against the evaluation as
   it was before the store (the suite's attacks in sequence over the whole set in memory, draws per
   batch), interleaved over --rounds; ratio of medians (target: at most 1.05);
2. resume: a stored evaluation whose second half of chunks is missing (the state a kill at half its
   work leaves) is finished, against a full stored run (target: at most 0.55);
3. two workers: two processes share one store (`worker=(w, 2)`), against one process; the per-image
   outcomes must be identical; the per-chunk cost and the time to read the finished store give
   the projection for N workers (or GPUs): ceil(chunks / N) x chunk cost + read;
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
                "measure": f"add the last attack ({attack_list[-1].name}) to a finished run / full",
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
            "measure": f"grow {half} -> {len(x)} images / full {len(x)}",
            "seconds": t_grow,
            "baseline_seconds": full_seconds,
            "ratio": t_grow / full_seconds,
            "target": f"identical outcomes: {same}",
        }
    )
    return rows


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
        f"model {args.model}, {len(x)} test images, suite {args.suite}, eps {args.eps:.6f}, chunks of {args.chunk_size}"
    )
    root = tempfile.mkdtemp(prefix="bench-store-")
    common = (model, x, y, args.eps, args.suite)
    stored(
        *common, os.path.join(root, "warm"), args.chunk_size, args.batch_size, args.seed
    )  # traces everything
    before_the_store(*common, args.batch_size, args.seed)
    rows, old_times, new_times = [], [], []
    for r in range(args.rounds):
        t_old, acc_old = timed(lambda: before_the_store(*common, args.batch_size, args.seed))
        folder = os.path.join(root, f"full{r}")
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
            "measure": "store + chunks + per-image draws / before",
            "seconds": float(np.median(new_times)),
            "baseline_seconds": float(np.median(old_times)),
            "ratio": overhead,
            "target": "<= 1.05",
        }
    )

    # resume after losing the second half of the chunks
    full = os.path.join(root, "full0")
    half = os.path.join(root, "half")
    shutil.copytree(full, half)
    chunks = sorted(os.listdir(os.path.join(half, "chunks")))
    for name in chunks[len(chunks) // 2 :]:
        shutil.rmtree(os.path.join(half, "chunks", name))
    t_resume, resumed = timed(
        lambda: stored(*common, half, args.chunk_size, args.batch_size, args.seed)
    )
    reference = stored(*common, full, args.chunk_size, args.batch_size, args.seed)
    same = bool(np.array_equal(resumed.broken_by, reference.broken_by))
    rows.append(
        {
            "measure": f"resume with {len(chunks) - len(chunks) // 2} of {len(chunks)} chunks missing / full",
            "seconds": t_resume,
            "baseline_seconds": float(np.median(new_times)),
            "ratio": t_resume / float(np.median(new_times)),
            "target": "<= 0.55",
        }
    )
    say(
        f"resume: {t_resume:.1f} s for the missing half, outcomes identical to the full run: {same}"
    )

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
        f"two workers: exit codes {codes}, {t_two:.1f} s (one worker process: {t_one:.1f} s), "
        f"per-image outcomes identical to one process: {identical}; reading the finished store {t_read:.2f} s"
    )
    rows.append(
        {
            "measure": "two worker processes / one (2 shared cores: no speed-up expected)",
            "seconds": t_two,
            "baseline_seconds": t_one,
            "ratio": t_two / t_one,
            "target": "identical outcomes",
        }
    )
    for workers in (1, 2, 4, 8, 16):
        projected = math.ceil(len(chunks) / workers) * per_chunk + t_read
        rows.append(
            {
                "measure": f"projection, {workers} GPU(s)/workers: ceil({len(chunks)}/{workers}) x "
                f"{per_chunk:.1f} s per chunk + {t_read:.2f} s read",
                "seconds": projected,
                "baseline_seconds": float("nan"),
                "ratio": float("nan"),
                "target": "",
            }
        )
    rows += growing(common, args, root, reference, float(np.median(new_times)))
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
