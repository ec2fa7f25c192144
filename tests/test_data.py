"""tfadv.data: the binary archive reader, synthetic data, TFDS, imbalance, splits, pipelines."""

import io
import os
import tarfile
import time

import numpy as np
import pytest

from tfadv import data as data_lib
from tfadv.data import cifar_binary, tfds_source
from tfadv.data.types import DataError

MINI_TRAIN_COUNTS = [479, 479, 444, 448, 489, 435, 464, 477, 481, 464]


def _write_archive(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return str(path)


def _records(labels, fill=None):
    rng = np.random.default_rng(0)
    out = bytearray()
    for label in labels:
        pixels = (
            rng.integers(0, 256, 3072, dtype=np.uint8)
            if fill is None
            else np.full(3072, fill, np.uint8)
        )
        out += bytes([label]) + pixels.tobytes()
    return bytes(out)


def test_mini_archive_reads_real_cifar10(mini_archive):
    train, test, names = cifar_binary.load_cifar10_binary(mini_archive)
    assert train.images.shape == (4660, 32, 32, 3) and test.images.shape == (932, 32, 32, 3)
    assert train.class_counts(10).tolist() == MINI_TRAIN_COUNTS
    assert names[0] == "airplane" and names[9] == "truck"
    assert 100 < train.images.mean() < 140  # real photos, not noise or zeros


def test_record_layout_is_channel_planes_row_major(tmp_path):
    record = np.zeros(3073, np.uint8)
    record[0] = 7
    record[1 + 0 * 1024 + 5 * 32 + 9] = 200  # red plane, row 5, column 9
    record[1 + 2 * 1024 + 31 * 32 + 0] = 90  # blue plane, row 31, column 0
    parsed = cifar_binary.parse_records(record.tobytes() * 2, "test")
    assert parsed.labels.tolist() == [7, 7]
    assert parsed.images[0, 5, 9, 0] == 200 and parsed.images[0, 31, 0, 2] == 90
    assert parsed.images.sum() == 2 * (200 + 90)


def test_extracted_folder_and_tarball_agree(tmp_path):
    members = {f"data_batch_{i}.bin": _records([i, i + 1]) for i in range(1, 6)}
    members["test_batch.bin"] = _records([3, 4, 5])
    archive = _write_archive(tmp_path / "c.tar.gz", members)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    a = cifar_binary.load_cifar10_binary(archive)
    b = cifar_binary.load_cifar10_binary(str(tmp_path / "x"))
    c = cifar_binary.load_cifar10_binary(str(tmp_path / "x" / "cifar-10-batches-bin"))
    for other in (b, c):
        np.testing.assert_array_equal(a[0].images, other[0].images)
        np.testing.assert_array_equal(a[1].labels, other[1].labels)
    assert len(a[0]) == 10 and len(a[1]) == 3


def test_truncated_archive_is_a_data_error(tmp_path, mini_archive):
    blob = open(mini_archive, "rb").read()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(blob[: len(blob) // 3])
    with pytest.raises(DataError, match="corrupt or truncated"):
        cifar_binary.load_cifar10_binary(str(cut))


@pytest.mark.parametrize(
    "members, fragment",
    [
        (
            {"test_batch.bin": b"\x00" * 100, "data_batch_1.bin": b"\x00" * 3073},
            "not a whole number",
        ),
        ({"test_batch.bin": _records([1]), "data_batch_1.bin": _records([12])}, "label 12"),
        ({"readme.txt": b"hello"}, "lacks data_batch"),
    ],
)
def test_malformed_archives_are_data_errors(tmp_path, members, fragment):
    with pytest.raises(DataError, match=fragment):
        cifar_binary.load_cifar10_binary(_write_archive(tmp_path / "bad.tar.gz", members))


def test_not_an_archive_and_missing_paths(tmp_path):
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"this is not gzip")
    with pytest.raises(DataError, match="corrupt or truncated"):
        cifar_binary.load_cifar10_binary(str(junk))
    with pytest.raises(DataError, match="does not exist"):
        cifar_binary.load_cifar10_binary(str(tmp_path / "nope.tar.gz"))
    with pytest.raises(DataError, match="no CIFAR-10 binary archive"):
        cifar_binary.load_cifar10_binary(str(tmp_path))


def test_synthetic_is_deterministic_balanced_and_varied():
    a = data_lib.make_synthetic(500, seed=3)
    b = data_lib.make_synthetic(500, seed=3)
    c = data_lib.make_synthetic(500, seed=4)
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.images, c.images)
    assert a.class_counts(10).tolist() == [50] * 10
    # classes are not told apart by colour or brightness: per-class mean pixels are close
    means = np.array([a.images[a.labels == k].mean() for k in range(10)])
    assert means.std() < 0.05 * means.mean()


def test_load_synthetic_splits_and_limits():
    ds = data_lib.load(
        "synthetic", train_limit=1000, test_limit=200, validation_fraction=0.2, seed=1
    )
    assert (len(ds.train), len(ds.val), len(ds.test)) == (800, 200, 200)
    assert ds.input_shape == (32, 32, 3) and ds.num_classes == 10
    assert not set(map(bytes, ds.train.images[:50])) & set(map(bytes, ds.val.images))


@pytest.mark.parametrize(
    "spec, cls, expected",
    [
        ("under:3:0.1", 3, 10),
        ("under:cat:0.25", 3, 25),
        ("over:0:2", 0, 200),
        ("over:9:2.5", 9, 250),
        ("under:5:1", 5, 100),
    ],
)
def test_imbalance_counts_are_exact(spec, cls, expected):
    train = data_lib.make_synthetic(1000, seed=0)  # 100 per class
    names = [
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
    out = data_lib.apply_imbalance(train, data_lib.parse_imbalance(spec, names), seed=0)
    counts = out.class_counts(10)
    assert counts[cls] == expected
    assert all(counts[k] == 100 for k in range(10) if k != cls)
    kept = {bytes(img) for img in out.images[out.labels == cls]}
    assert kept <= {bytes(img) for img in train.images[train.labels == cls]}


def test_imbalance_through_load_leaves_validation_balanced(mini_archive):
    ds = data_lib.load("cifar10", data_dir=mini_archive, imbalance="under:3:0.2", seed=0)
    full = data_lib.load("cifar10", data_dir=mini_archive, seed=0)
    assert ds.train.class_counts(10)[3] == round(full.train.class_counts(10)[3] * 0.2)
    np.testing.assert_array_equal(ds.val.labels, full.val.labels)


@pytest.mark.parametrize(
    "spec",
    [
        "under:3",
        "sideways:1:0.5",
        "under:11:0.5",
        "under:dragon:0.5",
        "under:1:1.5",
        "over:1:0.5",
        "under:1:x",
    ],
)
def test_bad_imbalance_specs(spec):
    with pytest.raises(ValueError, match="imbalance="):
        data_lib.parse_imbalance(spec, [str(i) for i in range(10)])


def test_pipeline_scales_and_augments():
    train = data_lib.make_synthetic(64, seed=0)
    plain = next(iter(data_lib.to_dataset(train, 64)))
    np.testing.assert_allclose(plain[0].numpy(), train.images / 255.0, atol=1e-7)
    aug = next(iter(data_lib.to_dataset(train, 64, augment=data_lib.parse_augment("all"))))[
        0
    ].numpy()
    assert aug.shape == (64, 32, 32, 3) and aug.min() >= 0 and aug.max() <= 1
    assert not np.allclose(aug, plain[0].numpy())


def test_bad_augment_spec():
    assert data_lib.parse_augment("standard") == ("flip", "crop")
    with pytest.raises(ValueError, match="rotate"):
        data_lib.parse_augment("flip,rotate")


def test_tfds_offline_fails_fast_naming_the_way_out(monkeypatch, tmp_path):
    monkeypatch.setattr(tfds_source, "_host_reachable", lambda url, timeout=0: False)
    start = time.time()
    with pytest.raises(DataError) as err:
        data_lib.load("mnist", data_dir=str(tmp_path))
    assert time.time() - start < 30
    assert "--data_dir" in str(err.value) and "--dataset=synthetic" in str(err.value)


def test_unknown_dataset():
    with pytest.raises(DataError, match="unknown dataset 'no_such_dataset_xyz'"):
        data_lib.load("no_such_dataset_xyz")


def test_tfds_grayscale_dataset_through_mock(monkeypatch, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.setattr(tfds_source, "_host_reachable", lambda url, timeout=0: True)
    with tfds.testing.mock_data(num_examples=40):
        ds = data_lib.load("mnist", data_dir=str(tmp_path), validation_fraction=0.25)
    assert ds.input_shape == (28, 28, 1)
    assert len(ds.train) == 30 and len(ds.val) == 10 and ds.num_classes == 10
    assert os.path.isdir(tmp_path)


def test_pipeline_for_replicas_trims_to_even_batches():
    train = data_lib.make_synthetic(135, seed=0)
    batches = [len(y) for _, y in data_lib.to_dataset(train, 32, shuffle=True, replicas=2)]
    assert sum(batches) == 134 and all(b % 2 == 0 for b in batches)
    with pytest.raises(ValueError, match="batch_size=33"):
        data_lib.to_dataset(train, 33, replicas=2)
