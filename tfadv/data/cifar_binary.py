"""Reader for the official CIFAR-10 *binary* archive (cifar-10-binary.tar.gz).

Each record is 3,073 bytes: a label byte, then 1,024 red, 1,024 green and 1,024
blue bytes, row-major 32x32. Nothing is unpickled.
"""

import os
import tarfile
import zlib

import numpy as np

from tfadv.data.types import DataError, ImageSet

RECORD_BYTES = 1 + 32 * 32 * 3
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"
META_FILE = "batches.meta.txt"
FOLDER = "cifar-10-batches-bin"
DEFAULT_CLASS_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def parse_records(raw: bytes, source: str) -> ImageSet:
    """Parses concatenated CIFAR-10 binary records into an ImageSet."""
    if len(raw) == 0 or len(raw) % RECORD_BYTES:
        raise DataError(
            f"{source}: {len(raw)} bytes is not a whole number of {RECORD_BYTES}-byte CIFAR-10 "
            "records "
            "(truncated or not a CIFAR-10 binary file)"
        )
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DataError(f"{source}: label {labels.max()} outside 0-9 (not a CIFAR-10 binary file)")
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return ImageSet(np.ascontiguousarray(images), labels)


def _read_members(path: str) -> dict:
    """Returns {basename: bytes} for the archive's .bin and meta files."""
    wanted = set(TRAIN_FILES) | {TEST_FILE, META_FILE}
    found = {}
    if os.path.isdir(path):
        folder = (
            path
            if os.path.basename(os.path.normpath(path)) == FOLDER
            else os.path.join(path, FOLDER)
        )
        if not os.path.isdir(folder):
            archive = os.path.join(path, "cifar-10-binary.tar.gz")
            if os.path.isfile(archive):
                return _read_members(archive)
            raise DataError(
                f"no CIFAR-10 binary archive in {path!r}: expected {FOLDER}/ or "
                "cifar-10-binary.tar.gz"
            )
        for name in wanted:
            file_path = os.path.join(folder, name)
            if os.path.isfile(file_path):
                with open(file_path, "rb") as f:
                    found[name] = f.read()
        return found
    if not os.path.exists(path):
        raise DataError(f"data_dir={path!r} does not exist")
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                name = os.path.basename(member.name)
                if member.isfile() and name in wanted:
                    found[name] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise DataError(f"cannot read CIFAR-10 archive {path!r}: corrupt or truncated ({e})") from e
    return found


def load_cifar10_binary(path: str):
    """Loads (train, test, class_names) from a CIFAR-10 binary folder or .tar.gz."""
    members = _read_members(path)
    train_parts = [parse_records(members[n], f"{path}:{n}") for n in TRAIN_FILES if n in members]
    if not train_parts or TEST_FILE not in members:
        raise DataError(
            f"{path!r} is not a CIFAR-10 binary archive: it lacks data_batch_*.bin or {TEST_FILE}"
        )
    train = ImageSet(
        np.concatenate([p.images for p in train_parts]),
        np.concatenate([p.labels for p in train_parts]),
    )
    test = parse_records(members[TEST_FILE], f"{path}:{TEST_FILE}")
    class_names = DEFAULT_CLASS_NAMES
    if META_FILE in members:
        names = [
            n.strip()
            for n in members[META_FILE].decode("utf-8", "replace").splitlines()
            if n.strip()
        ]
        if len(names) == 10:
            class_names = names
    return train, test, list(class_names)
