"""Process-wide runtime choices: seeding, XLA, logical CPUs and tf.distribute strategies."""

import tensorflow as tf

from tfadv.runtime.choices import DISTRIBUTIONS, JIT_CHOICES
from tfadv.runtime.quiet import native_stderr_silenced


def gpu_available() -> bool:
    with native_stderr_silenced():  # the CUDA probe logs "failed call to cuInit" on CPU machines
        return bool(tf.config.list_physical_devices("GPU"))


def resolve_jit_compile(setting="auto") -> bool:
    """'auto' means XLA on a GPU only: on CPU it made a PGD step ~3.4x slower here."""
    if isinstance(setting, bool):
        return setting
    setting = str(setting).lower()
    if setting not in JIT_CHOICES:
        raise ValueError(
            f"Expected jit_compile to be one of {JIT_CHOICES}. Received: jit_compile={setting!r}"
        )
    return gpu_available() if setting == "auto" else setting == "true"


def set_seed(seed: int, deterministic: bool = True) -> None:
    """Seeds Python, NumPy and TF; with `deterministic`, asks TF for deterministic ops."""
    import keras

    keras.utils.set_random_seed(int(seed))
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def split_cpu(logical_devices: int) -> None:
    """Splits the CPU into N logical devices (to exercise MirroredStrategy on one machine).

    Must run before TensorFlow initialises its devices.
    """
    if logical_devices <= 1:
        return
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(logical_devices)]
        )
    except RuntimeError as e:
        raise ValueError(
            f"Expected logical_cpus set before TensorFlow initialises ({e}). "
            f"Received: logical_cpus={logical_devices}"
        ) from e


def make_strategy(name: str = "default"):
    """A tf.distribute strategy by name: default (one device), mirrored, multi_worker."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or [
            d.name for d in tf.config.list_logical_devices("CPU")
        ]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multi_worker":
        return _MultiWorkerStrategy()  # reads TF_CONFIG; one worker without it
    raise ValueError(
        f"Expected distribution to be one of {DISTRIBUTIONS}. Received: distribution={name!r}"
    )


class _MultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """MultiWorkerMirroredStrategy whose `reduce` takes what Keras 3.15's fit hands it.

    With two workers, Keras' TF trainer calls `strategy.reduce("MEAN", batch, axis=None)` on a
    nest (images, labels) of PerReplica values to build the model symbolically, and
    `strategy.reduce("MEAN", metric, axis=0)` on scalar metrics; the TF 2.21 strategy accepts
    neither ("Attempt to convert a value (PerReplica: ...) to a Tensor", "Invalid reduction
    dimension 0"). This reduces a nest value by value, and scalars across replicas only.
    """

    def reduce(self, reduce_op, value, axis=None):
        def one(v):
            first = (
                v.values[0]
                if isinstance(v, tf.distribute.DistributedValues)
                else tf.convert_to_tensor(v)
            )
            return super(_MultiWorkerStrategy, self).reduce(
                reduce_op, v, axis if first.shape.rank else None
            )

        return tf.nest.map_structure(one, value)


def worker_task(strategy) -> tuple:
    """(task type, task index) of this process in a multi-worker cluster; ("", 0) otherwise."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return "", 0
    return resolver.task_type, int(resolver.task_id or 0)


def is_chief(strategy) -> bool:
    """True for the one process that writes results: the "chief" task, else worker 0, else the only
    process."""
    task_type, index = worker_task(strategy)
    if not task_type:
        return True
    if "chief" in strategy.cluster_resolver.cluster_spec().as_dict():
        return task_type == "chief"
    return task_type == "worker" and index == 0


def barrier(strategy) -> None:
    """Returns once every worker got here (a one-number all-reduce); a no-op in one process."""
    if worker_task(strategy)[0]:
        strategy.reduce("SUM", tf.constant(1.0), axis=None)
