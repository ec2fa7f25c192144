"""Times FGSM and PGD-10 for tfadv, CleverHans and the Adversarial Robustness Toolbox.

    python tools/bench_attacks.py [--model=RUN_OR_KERAS_FILE] [--batch_size=256] [--repeats=5]

One process, one model (baseline_cnn, random weights unless --model), one batch, the same
inputs for every library; each timed call runs after warm-up, the calls are interleaved
round-robin (so that load from other processes hits all of them alike) and the median is
reported (and the minimum, which other processes on a shared machine disturb least). The floor "10 x fwd+bwd" is a compiled tf.function doing ten input-gradient
computations of the same loss (each step depends on the previous one, so none is elided).
CleverHans is timed as documented (eager) and wrapped in tf.function; libraries that are
not installed are skipped.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfadv import attacks, export, models, runtime  # noqa: E402

EPS = 8 / 255
STEPS = 10
ALPHA = 2 / 255


def ten_gradients_fn(logits_model, jit):
    """The floor: STEPS forward+backward passes to the input in one compiled function."""

    @tf.function(jit_compile=jit)
    def run(x, y):
        def body(i, adv):
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(adv)
                loss = tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits_model(adv, training=False))
            return i + 1, adv + 1e-6 * tape.gradient(loss, adv)

        return tf.while_loop(lambda i, _: i < STEPS, body, (tf.constant(0), x))[1]

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
            logits_model, x, EPS, ALPHA, STEPS, np.inf, clip_min=0.0, clip_max=1.0, y=y, rand_init=True
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
        classifier, eps=EPS, eps_step=ALPHA, max_iter=STEPS, num_random_init=1, batch_size=batch_size, verbose=False
    )
    x_np, y_np = x.numpy(), y.numpy()
    return {
        "art fgsm": lambda *_: fgsm.generate(x_np, y_np),
        "art pgd-10": lambda *_: pgd.generate(x_np, y_np),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="", help="run folder or .keras file (default: random baseline_cnn)")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--jit_compile", default="auto")
    args = parser.parse_args()

    runtime.set_seed(0, deterministic=False)
    model = export.load(args.model) if args.model else models.build("baseline_cnn")
    logits_model = models.logits_model(model)
    jit = runtime.resolve_jit_compile(args.jit_compile)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((args.batch_size, *model.input_shape[1:]), dtype=np.float32))
    y = tf.constant(rng.integers(0, model.output_shape[-1], args.batch_size), tf.int64)

    fns = {
        "10 x fwd+bwd (floor)": ten_gradients_fn(logits_model, jit),
        "tfadv fgsm": lambda x, y: attacks.fgsm(model, x, y, EPS, jit_compile=jit),
        "tfadv pgd-10": lambda x, y: attacks.pgd(model, x, y, EPS, steps=STEPS, alpha=ALPHA, seed=0, jit_compile=jit),
        "tfadv bim-10 (no random start)": lambda x, y: attacks.bim(model, x, y, EPS, steps=STEPS, alpha=ALPHA, jit_compile=jit),
        **cleverhans_fns(logits_model, x, y),
        **art_fns(logits_model, x, y, args.batch_size),
    }
    times = {name: [] for name in fns}
    for fn in fns.values():  # warm-up: tracing, graph optimisation, caches
        for _ in range(2):
            np.asarray(fn(x, y))
    for _ in range(args.repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            np.asarray(fn(x, y))  # forces the result
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) for name, t in times.items()}

    print(f"baseline_cnn, batch {args.batch_size}, eps {EPS:.4f}, jit_compile={jit}, "
          f"median of {args.repeats} after warm-up, {os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'method':34s} {'seconds':>9s} {'min':>9s}")
    for name in fns:
        print(f"{name:34s} {median[name]:9.4f} {min(times[name]):9.4f}")
    fastest = {name: min(t) for name, t in times.items()}
    print("\nratios (target in brackets): on medians, and on minima (least disturbed by other load)")
    for label, stat in (("median", median), ("min", fastest)):
        floor, fgsm, pgd = stat["10 x fwd+bwd (floor)"], stat["tfadv fgsm"], stat["tfadv pgd-10"]
        print(f"[{label}] tfadv pgd-10 / 10 x fwd+bwd{'':12s}{pgd / floor:6.3f}  [<= 1.05]")
        for other in ("cleverhans pgd-10 (eager)", "cleverhans pgd-10 (tf.function)", "art pgd-10"):
            if other in stat:
                target = "[>= 2.5]" if other.startswith("art") else "[>= 1]"
                print(f"[{label}] {other + ' / tfadv pgd-10':44s}{stat[other] / pgd:6.3f}  {target}")
        for other in ("cleverhans fgsm (eager)", "cleverhans fgsm (tf.function)", "art fgsm"):
            if other in stat:
                print(f"[{label}] {other + ' / tfadv fgsm':44s}{stat[other] / fgsm:6.3f}")


if __name__ == "__main__":
    main()
