"""Running a suite over chunks of images: stored, resumable, growing, over devices and workers.

    result = run_chunked(model, images, labels, eps, attack_list, store=EvaluationStore(folder))

The work unit is one chunk of image indices and one attack. The clean predictions of every chunk
come first, then the attacks in order, each on the images still unbroken; consecutive chunks are
attacked together until a group has a full batch of survivors (small chunks would otherwise run
the late attacks on a handful of images at a time), and each chunk's unit is written to the store
as soon as the batches holding its images are done, so a run killed at any moment and started
again redoes only the missing units, an attack appended to a finished evaluation runs only on the
survivors, and more images only add chunks. Every random draw of an attack derives from the seed,
the attack's place in the suite and the image's index (`indices=` of the attack runner), so an
image's outcome does not depend on its chunk, its batch, the device or the worker that ran it.

Devices: with a `tf.distribute` strategy of several local replicas (MirroredStrategy over GPUs or
logical CPUs), each attack call on a chunk is split over the replicas. Workers: with `worker=(w, W)`
(one process per host of a MultiWorkerMirroredStrategy cluster), process w takes the chunks
w, w + W, ...; the chief reads the store once every chunk is there.
"""

import time

import numpy as np
import tensorflow as tf

from tfadv import attacks, models
from tfadv.evaluation.store import EvaluationStore, fingerprint

CHUNK_SIZE = (
    512  # images per work unit: big enough for full batches, small enough to lose little on a kill
)
CLEAN_WRONG, ROBUST = -2, -1


def model_fingerprint(model) -> str:
    """What identifies a model's function: its weights (Keras), its variables (SavedModel), the
    EOT samples of a random model's view."""
    clf = models.as_classifier(model)
    samples = getattr(clf, "samples", 0)
    variables = getattr(clf.model, "weights", None) or getattr(clf.model, "variables", None) or []
    values = [np.asarray(v.numpy() if hasattr(v, "numpy") else v) for v in variables]
    return f"{fingerprint(*values) if values else clf.name}:eot{samples}"


def batched_logits(model, images, batch_size):
    """float32 (N, classes): the model's logits of `images`, `batch_size` at a time."""
    if len(images) == 0:
        return np.zeros((0, 0), np.float32)
    parts = [
        np.asarray(attacks.logits_of(model, images[i : i + batch_size]))
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(parts)


def logit_margins(logits, labels):
    """z_y - max_{j != y} z_j per image (< 0: misclassified)."""
    if len(labels) == 0:
        return np.zeros(0, np.float32)
    own = logits[np.arange(len(labels)), labels]
    others = logits.copy()
    others[np.arange(len(labels)), labels] = -np.inf
    return (own - others.max(axis=1)).astype(np.float32)


def _budget(model) -> models.Budget:
    """The model's one Budget (kept on the model): compiled attacks are cached per Budget, so a new
    one per evaluation would trace every attack again."""
    owner = models.as_classifier(model).model
    budget = getattr(owner, "_tfadv_budget", None)
    if budget is None:
        budget = models.Budget()
        object.__setattr__(owner, "_tfadv_budget", budget)  # not tracked by Keras or tf.Module
    return budget


def _replicas(strategy) -> int:
    return 1 if strategy is None else strategy.num_replicas_in_sync


def _adversarial(model, images, labels, rows, attack, eps, batch_size, seed):
    """The attack's images for the images at global indices `rows` (draws keyed by the index)."""
    return attacks.adversarial_images(
        model,
        images[rows],
        labels[rows],
        attack,
        eps,
        batch_size=batch_size,
        seed=seed,
        indices=rows,
    )


def _attack_rows(model, images, labels, rows, attack, eps, batch_size, seed, strategy, log):
    """The attack's images for `rows` (global indices); halves the batch when out of memory."""
    while True:
        try:
            if _replicas(strategy) > 1:
                return _on_replicas(
                    model, images, labels, rows, attack, eps, batch_size, seed, strategy
                )
            return _adversarial(model, images, labels, rows, attack, eps, batch_size, seed)
        except tf.errors.ResourceExhaustedError:
            if batch_size == 1:
                raise
            batch_size = max(1, batch_size // 2)
            log(f"out of memory: retrying {attack.describe()} with batch_size={batch_size}")


def _on_replicas(model, images, labels, rows, attack, eps, batch_size, seed, strategy):
    """Each batch split over the strategy's replicas (each with its images' indices), gathered."""
    replicas = strategy.num_replicas_in_sync
    per_replica = max(1, -(-min(batch_size, len(rows)) // replicas))
    parts = []
    for begin in range(0, len(rows), per_replica * replicas):
        block = rows[begin : begin + per_replica * replicas]
        shares = [block[r * per_replica : (r + 1) * per_replica] for r in range(replicas)]

        def attack_share(context, shares=shares):
            mine = shares[context.replica_id_in_sync_group]
            return tf.constant(mine, tf.int64)

        share_rows = strategy.experimental_distribute_values_from_function(attack_share)

        def run(share):
            share = share.numpy() if hasattr(share, "numpy") else share
            if len(share) == 0:
                return tf.zeros([0, *images.shape[1:]], tf.float32)
            return tf.convert_to_tensor(
                _adversarial(model, images, labels, share, attack, eps, len(share), seed)
            )

        outputs = strategy.experimental_local_results(strategy.run(run, args=(share_rows,)))
        parts.extend(np.asarray(out) for out in outputs)
    return np.concatenate(parts) if parts else np.zeros((0, *images.shape[1:]), np.float32)


def run_chunked(
    model,
    images,
    labels,
    eps,
    attack_list,
    *,
    store: EvaluationStore,
    norm="inf",
    batch_size=256,
    seed=0,
    chunk_size=CHUNK_SIZE,
    strategy=None,
    worker=(0, 1),
    progress=False,
) -> dict:
    """Fills `store` with every missing (chunk, attack) unit this worker owns; returns the
    per-image outcomes (`EvaluationStore.outcomes`) once the store is complete, else None.

    Args:
        model: any classifier `tfadv.models.as_classifier` accepts.
        images: float32 (N, H, W, C) in [0, 1]; labels: int64 (N,).
        eps: the budget (pixel scale); attack_list: `tfadv.attacks.Attack` values, in order.
        norm: the norm of eps ("inf" or "2"), recorded in the store.
        store: where units are kept (settings are checked: see `EvaluationStore.open`).
        batch_size: images per attack call (halved on out-of-memory).
        seed: attack k draws from (seed + k, image index).
        chunk_size: images per work unit (fixed for the life of a store).
        strategy: a tf.distribute strategy whose local replicas share each attack call, or None.
        worker: (index, count): this process takes the chunks index, index + count, ...
        progress: one line per unit.
    """
    n = len(images)
    described = [attack.describe() for attack in attack_list]
    store.open(
        {
            "eps": float(eps),
            "norm": attacks.norms.get(norm).name,
            "seed": int(seed),
            "chunk_size": int(chunk_size),
            "model": model_fingerprint(model),
            "data": fingerprint(images[:1], labels[:1]),
            "attacks": described,
        }
    )
    index, count = worker
    start_time = time.time()

    def log(text):
        if progress:
            print(f"[{time.time() - start_time:7.1f} s] {text}", flush=True)

    counted = models.counted(model, _budget(model))
    run = dict(eps=eps, batch_size=batch_size, strategy=strategy, log=log)
    owned = [
        start for number, start in enumerate(range(0, n, chunk_size)) if number % count == index
    ]
    rows = {start: np.arange(start, min(start + chunk_size, n)) for start in owned}
    alive = {
        start: _clean_unit(model, images, labels, rows[start], store, batch_size, log)
        for start in owned
    }
    for k, attack in enumerate(
        attack_list
    ):  # attack by attack, so that small chunks share full batches
        seed_k = seed + k if attack.takes_seed else None
        pending = [start for start in owned if not store.has(start, f"a{k}")]
        for group in _groups(
            pending, {start: int(alive[start].sum()) for start in pending}, batch_size
        ):
            todo = {start: rows[start][alive[start]] for start in group}
            _attack_group(counted, images, labels, todo, attack, k, seed_k, store, **run)
        for start in owned:
            result = store.get(start, f"a{k}")
            alive[start][np.isin(rows[start], result["indices"][result["broken"]])] = False
    if not store.complete(n):
        return None
    return store.outcomes(images, len(attack_list))


def _groups(pending, sizes, batch_size):
    """Consecutive chunks grouped until each group has at least `batch_size` images to attack."""
    group, total = [], 0
    for start in pending:
        group.append(start)
        total += sizes[start]
        if total >= batch_size:
            yield group
            group, total = [], 0
    if group:
        yield group


def _attack_group(
    counted, images, labels, todo, attack, k, seed, store, *, eps, batch_size, strategy, log
):
    """Attack k on the images `todo` ({chunk start: rows}) of a group of chunks, a batch at a time;
    each chunk's unit is written as soon as the batches holding its images are done (a kill loses
    at most the batch under way and the chunk it is in): what it broke, the margins at its
    results, and its images' seconds, forward passes and gradients (a batch's cost is shared
    equally by its images)."""
    every = np.concatenate(list(todo.values()))
    found = np.zeros((len(every), *images.shape[1:]), np.float32)
    spent = np.zeros((len(every), 3), np.float64)  # seconds, forwards, gradients per image
    chunks, done, begin = list(todo.items()), 0, 0
    for start, rows in chunks:
        while done < begin + len(rows):  # attack batches until this chunk's images are in
            batch = every[done : done + batch_size]
            began = time.time()
            counted.budget.reset()
            found[done : done + len(batch)] = _attack_rows(
                counted, images, labels, batch, attack, eps, batch_size, seed, strategy, log
            )
            used = counted.budget.read()
            cost = [time.time() - began, used["forwards"], used["gradients"]]
            spent[done : done + len(batch)] = np.array(cost) / len(batch)
            done += len(batch)
        part = slice(begin, begin + len(rows))
        _put_unit(counted.base, labels, store, start, rows, k, found[part], spent[part], batch_size)
        begin += len(rows)
    log(
        f"chunks at images {', '.join(map(str, todo))}: {attack.describe()} "
        f"on {len(every)} images, {int(round(spent[:, 2].sum()))} gradients, "
        f"{int(round(spent[:, 1].sum()))} forward passes"
    )


def _put_unit(model, labels, store, start, rows, k, found, spent, batch_size):
    """Writes attack k's unit of the chunk at `start`: its images `rows`, the attack's images
    `found` for them and their costs `spent` (seconds, forwards, gradients per image)."""
    logits = batched_logits(model, found, batch_size)
    predicted = logits.argmax(axis=1) if len(rows) else np.zeros(0, np.int64)
    broken = predicted != labels[rows]
    cost = spent.sum(axis=0)
    store.put(
        start,
        f"a{k}",
        indices=rows,
        broken=broken,
        predictions=predicted,
        margins=logit_margins(logits, labels[rows]),
        adversarial=found[broken],
        seconds=np.float64(cost[0]),
        forwards=np.int64(round(cost[1])),
        gradients=np.int64(round(cost[2])),
    )


def _clean_unit(model, images, labels, rows, store, batch_size, log):
    """The chunk's clean predictions (computed once, then read back; its images are checked
    against the ones it was made with); returns which rows are correctly classified."""
    start = int(rows[0])
    data = fingerprint(images[rows], labels[rows])
    unit = store.get(start, "clean") if store.has(start, "clean") else None
    if unit is not None and len(unit["indices"]) == len(
        rows
    ):  # a grown last chunk is made anew below
        if unit["data"].item() == data:
            return unit["predictions"] == unit["labels"]
        raise ValueError(
            f"Expected the images this evaluation was made with. Received: images {start}-"
            f"{rows[-1]} differ from them (fingerprint {data})"
        )
    # new, or a last chunk that grew with more images: (re)computed from scratch
    logits = batched_logits(model, images[rows], batch_size)
    predictions = logits.argmax(axis=1)
    store.drop_chunk(start)
    store.put(
        start,
        "clean",
        indices=rows,
        labels=labels[rows],
        predictions=predictions,
        margins=logit_margins(logits, labels[rows]),
        data=np.array(data),
    )
    accuracy = np.mean(predictions == labels[rows])
    log(f"chunk at image {start} ({len(rows)} images): clean accuracy {accuracy:.4f}")
    return predictions == labels[rows]
