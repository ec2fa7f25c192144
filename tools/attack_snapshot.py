"""Runs ~36 attack configurations on a tiny seeded model and saves the adversarial outputs
(and a few derived values) to an .npz, to check that a refactor leaves them bit-identical.

    PYTHONPATH=$PWD python tools/attack_snapshot.py /tmp/before.npz
    PYTHONPATH=$PWD python tools/attack_snapshot.py /tmp/after.npz --compare /tmp/before.npz
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfadv import attacks, data, models  # noqa: E402

EPS, EPS2 = 8 / 255, 0.5
CONFIGS = [
    ("fgsm", EPS, {}),
    ("fgsm", EPS2, {"norm": "2"}),
    ("fgsm", EPS, {"loss": "margin"}),
    ("fgsm_targeted", EPS, {}),
    ("fgsm_random", EPS, {"seed": 1}),
    ("bim", EPS, {"steps": 5}),
    ("bim", EPS2, {"steps": 5, "norm": "2"}),
    ("bim", EPS, {"steps": 5, "target": "random", "seed": 0}),
    ("pgd", EPS, {"steps": 5, "seed": 2}),
    ("pgd", EPS2, {"steps": 5, "norm": "2", "seed": 2}),
    ("pgd", EPS, {"steps": 5, "loss": "margin", "seed": 3}),
    ("pgd", EPS, {"steps": 5, "loss": "dlr", "seed": 3}),
    ("pgd", EPS, {"steps": 5, "loss": "ce_t", "target": "least_likely", "seed": 3}),
    ("pgd", EPS, {"steps": 5, "loss_on": "probabilities", "seed": 3}),
    ("pgd", EPS, {"steps": 4, "restarts": 3, "seed": 4}),
    ("pgd", EPS2, {"steps": 4, "restarts": 2, "norm": "2", "seed": 4}),
    ("pgd", EPS, {"steps": 6, "early_stop": True, "restarts": 2, "seed": 5}),
    ("pgd", EPS2, {"steps": 6, "early_stop": True, "norm": "2", "seed": 5}),
    ("pgd", EPS, {"steps": 25, "seed": 6}),  # while_loop (not unrolled)
    ("random_sign", EPS, {"seed": 7}),
    ("apgd", EPS, {"steps": 12, "seed": 8}),
    ("apgd", EPS2, {"steps": 12, "norm": "2", "seed": 8}),
    ("apgd_dlr", EPS, {"steps": 12, "restarts": 2, "seed": 8}),
    ("apgd_t", EPS, {"steps": 10, "n_targets": 2, "seed": 9}),
    ("apgd_t", EPS2, {"steps": 10, "n_targets": 2, "norm": "2", "seed": 9}),
    ("fab_t", EPS, {"steps": 10, "n_targets": 2, "seed": 10}),
    ("fab_t", EPS2, {"steps": 10, "n_targets": 2, "norm": "2", "seed": 10}),
    ("square", EPS, {"queries": 60, "seed": 11}),
    ("square", EPS2, {"queries": 60, "norm": "2", "seed": 11}),
    ("square", EPS, {"queries": 60, "target": "random", "seed": 11}),
    ("one_pixel", 1.0, {"population": 20, "max_queries": 200, "seed": 12}),
    ("patch", None, {"size": 4, "steps": 5, "seed": 13}),
    ("hop_skip_jump", None, {"max_queries": 200, "steps": 3, "seed": 14}),
    ("hop_skip_jump", EPS, {"max_queries": 200, "steps": 3, "norm": "inf", "seed": 14}),
    ("deepfool", None, {"steps": 10}),
    ("deepfool", None, {"steps": 10, "norm": "inf"}),
    ("cw_l2", None, {"steps": 10, "binary_search_steps": 2}),
    ("fmn", None, {"steps": 10}),
    ("fmn", None, {"steps": 10, "norm": "inf"}),
    ("fmn", None, {"steps": 10, "norm": "1"}),
]


def model_and_batch():
    keras.utils.set_random_seed(0)
    model = models.build("tiny_cnn")
    train = data.make_synthetic(256, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(train.float_images(), train.labels, epochs=2, batch_size=64, verbose=0)
    test = data.make_synthetic(16, seed=1)
    return model, test.float_images(), test.labels


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("output")
    parser.add_argument("--compare")
    args = parser.parse_args()
    model, x, y = model_and_batch()
    out = {"weights": np.concatenate([w.ravel() for w in model.get_weights()])}
    for i, (name, eps, options) in enumerate(CONFIGS):
        key = f"{i:02d}_{name}"
        try:
            out[key] = np.asarray(attacks.get(name)(model, x, y, eps, **options))
        except Exception as error:  # a config the code rejects is recorded too
            out[key] = np.asarray(f"{type(error).__name__}: {error}")
    out["logits"] = np.asarray(attacks.logits_of(model, x))
    out["probabilities"] = np.asarray(attacks.probabilities_of(model, x))
    out["gradient"] = np.asarray(attacks.input_gradient(model, x, y))
    out["targets"] = np.asarray(attacks.choose_targets(model, x, y, "random", seed=3))
    out["flips"] = np.asarray(attacks.steps_to_flip(model, x, y, max_steps=20))
    np.savez(args.output, **out)
    if args.compare:
        before = np.load(args.compare)
        same = [k for k in before.files if k in out and np.array_equal(before[k], out[k])]
        differ = sorted(set(before.files) - set(same))
        print(f"bit-identical: {len(same)}/{len(before.files)}; differ: {differ}")
        for k in differ:
            print(
                " ",
                k,
                str(before[k])[:200] if before[k].dtype.kind == "U" else "",
                str(out.get(k))[:200] if k in out and out[k].dtype.kind == "U" else "",
            )


if __name__ == "__main__":
    main()
