"""TFDS image-classification datasets, failing fast when offline.

TFDS's own download retries take minutes without a network; we check whether
the dataset is already prepared and, if not, whether its download host answers
within a few seconds, before handing over to TFDS.
"""

import socket
import urllib.parse

import numpy as np

from tfadv.data.types import DataError, ImageSet

PROBE_TIMEOUT_SECONDS = 5.0
DEFAULT_PROBE_URL = "https://storage.googleapis.com"


def _host_reachable(url: str, timeout: float = PROBE_TIMEOUT_SECONDS) -> bool:
    parsed = urllib.parse.urlparse(url)
    host = parsed.hostname
    if not host:
        return False
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _download_urls(builder) -> list:
    """Best-effort list of the URLs the builder would download (for the probe)."""
    checksums = getattr(builder, "url_infos", None) or {}
    urls = [u for u in checksums if isinstance(u, str) and u.startswith("http")]
    return urls or [DEFAULT_PROBE_URL]


def _offline_message(name):
    return (
        f"dataset {name!r} is not prepared locally and cannot be downloaded (no network); "
        "pass --data_dir=PATH to a local copy (for cifar10: the CIFAR-10 binary archive) "
        "or use --dataset=synthetic"
    )


def load_tfds(name: str, tfds_data_dir: str | None = None):
    """Loads (train, test, class_names) of TFDS dataset `name` into memory as uint8."""
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=tfds_data_dir)
    except Exception as e:  # DatasetNotFoundError and friends
        raise DataError(f"unknown dataset {name!r}: {str(e).splitlines()[0]}") from e
    if not builder.info.supervised_keys:
        raise DataError(f"dataset {name!r} has no (image, label) supervised keys")
    if not _is_prepared(builder):
        urls = _download_urls(builder)
        if not _host_reachable(urls[0]):
            raise DataError(_offline_message(name))
        try:
            builder.download_and_prepare()
        except Exception as e:
            raise DataError(f"{_offline_message(name)} ({type(e).__name__})") from e
    try:
        train, test = (_read_split(tfds, builder, split) for split in ("train", "test"))
    except (KeyError, ValueError) as e:
        raise DataError(
            f"dataset {name!r} needs 'train' and 'test' splits ({str(e).splitlines()[0]})"
        ) from e
    label_feature = builder.info.features[builder.info.supervised_keys[1]]
    class_names = list(
        getattr(label_feature, "names", None) or [str(i) for i in range(label_feature.num_classes)]
    )
    return train, test, class_names


def _is_prepared(builder) -> bool:
    is_prepared = getattr(builder, "is_prepared", None)
    if callable(is_prepared):
        return bool(is_prepared())
    import tensorflow as tf

    return tf.io.gfile.exists(builder.data_dir)


def _read_split(tfds, builder, split) -> ImageSet:
    batches = list(tfds.as_numpy(builder.as_dataset(split=split, as_supervised=True).batch(10_000)))
    if not batches:
        raise DataError(f"split {split!r} of {builder.name!r} is empty")
    return _to_imageset(
        np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])
    )


def _to_imageset(images, labels) -> ImageSet:
    images = np.asarray(images)
    if images.ndim == 3:  # (N, H, W) grayscale without a channel axis
        images = images[..., None]
    if images.dtype != np.uint8:
        raise DataError(f"expected uint8 images from TFDS, got {images.dtype}")
    return ImageSet(images, np.asarray(labels, dtype=np.int64))
