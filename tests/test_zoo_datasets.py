"""Dataset readers and load_data, on the real data in PRUNETUNE_DATASETS (and digits, always there)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from prunetune.errors import PrunetuneError
from prunetune.zoo.datasets import (
    DataSplits,
    list_datasets,
    load_data,
    read_cifar10,
    read_creditcard,
    read_digits,
    read_fashion_mnist,
    read_idx,
    read_mnist,
)

IDX_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
CIFAR_FIRST_LABELS = [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
CIFAR_RECORD = 3073


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist_dir(datasets_root: Path) -> Path:
    return datasets_root / "mnist"


@pytest.fixture(scope="module")
def mnist(mnist_dir: Path):
    return read_mnist(mnist_dir)


@pytest.fixture(scope="module")
def cifar_file(datasets_root: Path) -> Path:
    return datasets_root / "cifar10-first4000" / "data_batch_1_first4000.bin"


@pytest.fixture(scope="module")
def creditcard_frame(datasets_root: Path) -> pd.DataFrame:
    return read_creditcard(datasets_root / "creditcard")


@pytest.fixture(scope="module")
def small_creditcard(creditcard_frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All 492 frauds and 2,508 normal rows of the real file, as a gzip CSV (fast to split)."""
    frauds = creditcard_frame[creditcard_frame["Class"] == 1]
    normal = creditcard_frame[creditcard_frame["Class"] == 0].sample(n=2508, random_state=0)
    path = tmp_path_factory.mktemp("creditcard") / "creditcard.csv.gz"
    pd.concat([normal, frauds]).sort_index().to_csv(path, index=False)
    return path


def _link_mnist(mnist_dir: Path, folder: Path, skip: tuple[str, ...] = ()) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in IDX_NAMES:
        if name not in skip:
            (folder / f"{name}.gz").symlink_to(mnist_dir / f"{name}.gz")
    return folder


def _raw(mnist_dir: Path, name: str) -> bytes:
    return gzip.decompress((mnist_dir / f"{name}.gz").read_bytes())


def _images_as_bytes(x: torch.Tensor) -> list[bytes]:
    """Rows of unnormalised [0, 1] images back as the original uint8 bytes."""
    pixels = (x.reshape(len(x), -1) * 255).round().to(torch.uint8).numpy()
    return [row.tobytes() for row in pixels]


# --- MNIST / IDX ----------------------------------------------------------------------------


def test_read_mnist_has_the_standard_sizes_and_class_counts(mnist) -> None:
    train_x, train_y, test_x, test_y = mnist
    assert train_x.shape == (60000, 28, 28) and train_x.dtype == np.uint8
    assert test_x.shape == (10000, 28, 28) and test_x.dtype == np.uint8
    assert train_y.dtype == np.int64 and test_y.dtype == np.int64
    assert np.bincount(train_y).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(test_y).tolist() == MNIST_TEST_COUNTS
    assert train_x.max() == 255 and train_x.min() == 0


def test_raw_idx_layout_reads_the_same_as_gzip(mnist, mnist_dir: Path, tmp_path: Path) -> None:
    for name in IDX_NAMES:
        (tmp_path / name).write_bytes(_raw(mnist_dir, name))
    raw = read_mnist(tmp_path)
    for got, expected in zip(raw, mnist):
        np.testing.assert_array_equal(got, expected)


def test_mnist_path_may_be_one_of_its_files_or_a_parent_folder(mnist_dir: Path, datasets_root: Path) -> None:
    from_file = load_data(f"mnist:{mnist_dir / 'train-labels-idx1-ubyte.gz'}", limit=500)
    from_parent = read_mnist(datasets_root)
    assert len(from_file.test) == 10000
    assert len(from_parent.train_y) == 60000


def test_fashion_mnist_uses_the_same_file_names(mnist_dir: Path, tmp_path: Path) -> None:
    _link_mnist(mnist_dir, tmp_path / "FashionMNIST" / "raw")
    arrays = read_fashion_mnist(tmp_path)
    assert len(arrays.train_x) == 60000
    splits = load_data(f"fashion-mnist:{tmp_path}", limit=1000)
    assert splits.name == "fashion-mnist" and "Fashion-MNIST" in splits.description


def test_missing_mnist_folder_names_the_folder_and_the_files(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(PrunetuneError, match="not exist") as info:
        read_mnist(missing)
    message = str(info.value)
    assert str(missing) in message
    assert all(f"{name}[.gz]" in message for name in IDX_NAMES)


def test_empty_mnist_folder_names_the_folder_and_the_files(tmp_path: Path) -> None:
    with pytest.raises(PrunetuneError, match="MNIST files not found") as info:
        load_data(f"mnist:{tmp_path}")
    assert str(tmp_path) in str(info.value) and "train-images-idx3-ubyte[.gz]" in str(info.value)


def test_missing_mnist_file_is_named(mnist_dir: Path, tmp_path: Path) -> None:
    _link_mnist(mnist_dir, tmp_path, skip=("t10k-labels-idx1-ubyte",))
    with pytest.raises(PrunetuneError, match=r"missing t10k-labels-idx1-ubyte\[\.gz\]") as info:
        read_mnist(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_truncated_idx_file_is_named(mnist_dir: Path, tmp_path: Path) -> None:
    _link_mnist(mnist_dir, tmp_path, skip=("t10k-labels-idx1-ubyte",))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_raw(mnist_dir, "t10k-labels-idx1-ubyte")[:5000])
    with pytest.raises(PrunetuneError, match=r"t10k-labels-idx1-ubyte.*truncated"):
        read_mnist(tmp_path)


def test_truncated_gzip_is_named(mnist_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes((mnist_dir / path.name).read_bytes()[:2000])
    with pytest.raises(PrunetuneError, match="t10k-labels-idx1-ubyte.gz"):
        read_idx(path)


def test_wrong_magic_is_named(mnist_dir: Path, tmp_path: Path) -> None:
    _link_mnist(mnist_dir, tmp_path, skip=("train-labels-idx1-ubyte",))
    # An image file where the labels belong: a valid IDX file with the wrong magic number.
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_raw(mnist_dir, "t10k-images-idx3-ubyte"))
    with pytest.raises(PrunetuneError, match=r"train-labels-idx1-ubyte: wrong magic number 0x00000803"):
        read_mnist(tmp_path)


def test_file_that_is_not_idx_is_named(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(PrunetuneError, match=r"train-images-idx3-ubyte: bad magic number"):
        read_idx(path)


def test_idx_with_trailing_bytes_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "labels"
    path.write_bytes((0x801).to_bytes(4, "big") + (3).to_bytes(4, "big") + bytes([1, 2, 3, 4]))
    with pytest.raises(PrunetuneError, match="1 bytes more"):
        read_idx(path)
    path.write_bytes((0x801).to_bytes(4, "big") + (3).to_bytes(4, "big") + bytes([1, 2, 3]))
    assert read_idx(path, expected_magic=0x801).tolist() == [1, 2, 3]


# --- CIFAR-10 -------------------------------------------------------------------------------


def test_read_cifar10_partial_file(cifar_file: Path) -> None:
    train_x, train_y, test_x, test_y = read_cifar10(cifar_file)
    assert train_x.shape == (4000, 3, 32, 32) and train_x.dtype == np.uint8
    assert train_y[:10].tolist() == CIFAR_FIRST_LABELS
    assert len(test_x) == 0 and len(test_y) == 0
    # The first record's red plane is the first 1,024 pixel bytes of the file.
    first = np.fromfile(cifar_file, dtype=np.uint8, count=CIFAR_RECORD)
    np.testing.assert_array_equal(train_x[0, 0].ravel(), first[1:1025])
    # A folder of loose record files reads the same.
    np.testing.assert_array_equal(read_cifar10(cifar_file.parent).train_y, train_y)


def _fake_cifar_folder(cifar_file: Path, parent: Path) -> tuple[Path, np.ndarray]:
    records = np.fromfile(cifar_file, dtype=np.uint8).reshape(-1, CIFAR_RECORD)
    folder = parent / "cifar-10-batches-bin"
    folder.mkdir()
    for i in range(5):
        records[i * 600 : (i + 1) * 600].tofile(folder / f"data_batch_{i + 1}.bin")
    records[3000:].tofile(folder / "test_batch.bin")
    return folder, records


def test_read_cifar10_full_folder_layout(cifar_file: Path, tmp_path: Path) -> None:
    folder, records = _fake_cifar_folder(cifar_file, tmp_path)
    from_parent = read_cifar10(tmp_path)
    from_folder = read_cifar10(folder)
    assert from_parent.train_x.shape == (3000, 3, 32, 32) and from_parent.test_x.shape == (1000, 3, 32, 32)
    np.testing.assert_array_equal(from_parent.train_y, records[:3000, 0])
    np.testing.assert_array_equal(from_parent.test_y, records[3000:, 0])
    np.testing.assert_array_equal(from_folder.test_x, from_parent.test_x)
    splits = load_data(f"cifar10:{tmp_path}")
    assert len(splits.test) == 1000 and len(splits.train) + len(splits.val) == 3000
    assert "standard test split" in splits.description


def test_cifar10_partial_file_carves_a_fixed_test_split(cifar_file: Path) -> None:
    a = load_data(f"cifar10:{cifar_file}", seed=0)
    b = load_data(f"cifar10:{cifar_file}", seed=1)
    assert a.input_shape == (3, 32, 32) and a.num_classes == 10 and len(a.mean) == 3
    assert len(a.train) + len(a.val) + len(a.test) == 4000
    assert len(a.test) == 800
    assert "no standard test split" in a.description
    assert torch.equal(a.test.tensors[1], b.test.tensors[1])  # test does not move with seed
    assert not torch.equal(a.val.tensors[1], b.val.tensors[1])


def test_cifar10_size_not_multiple_of_record_is_named(tmp_path: Path) -> None:
    path = tmp_path / "broken.bin"
    path.write_bytes(bytes(2 * CIFAR_RECORD + 5))
    with pytest.raises(PrunetuneError, match=r"broken\.bin.*not a positive multiple of 3073"):
        read_cifar10(path)


def test_cifar10_bad_label_byte_is_named(tmp_path: Path) -> None:
    path = tmp_path / "junk.bin"
    path.write_bytes(bytes([0]) + bytes(3072) + bytes([200]) + bytes(3072))
    with pytest.raises(PrunetuneError, match=r"junk\.bin: record 1 has label byte 200"):
        load_data(f"cifar10:{path}")


def test_cifar10_incomplete_official_folder_names_missing_files(cifar_file: Path, tmp_path: Path) -> None:
    folder, _ = _fake_cifar_folder(cifar_file, tmp_path)
    (folder / "test_batch.bin").unlink()
    with pytest.raises(PrunetuneError, match="missing test_batch.bin") as info:
        read_cifar10(tmp_path)
    assert str(folder) in str(info.value)


def test_cifar10_missing_files_name_the_folder(tmp_path: Path) -> None:
    with pytest.raises(PrunetuneError, match="CIFAR-10 files not found") as info:
        read_cifar10(tmp_path)
    assert str(tmp_path) in str(info.value) and "data_batch_1.bin" in str(info.value)
    with pytest.raises(PrunetuneError, match="not exist"):
        load_data(f"cifar10:{tmp_path / 'absent'}")


# --- credit card ----------------------------------------------------------------------------


def test_read_creditcard_real_file(creditcard_frame: pd.DataFrame) -> None:
    assert len(creditcard_frame) == 284807
    assert int(creditcard_frame["Class"].sum()) == 492
    assert list(creditcard_frame.columns) == ["Time", *(f"V{i}" for i in range(1, 29)), "Amount", "Class"]


def test_creditcard_splits_are_stratified_and_standardised(small_creditcard: Path) -> None:
    splits = load_data(f"creditcard:{small_creditcard}", seed=3)
    assert splits.input_shape == (30,) and splits.num_classes == 2
    labels = [split.tensors[1] for split in (splits.train, splits.val, splits.test)]
    assert sum(len(y) for y in labels) == 3000
    assert sum(int(y.sum()) for y in labels) == 492
    frauds = [int(y.sum()) for y in labels]
    assert all(count > 0 for count in frauds)
    assert frauds[2] == round(492 * 0.2) and frauds[1] == round(394 * 0.1)
    x = splits.train.tensors[0]
    assert x.dtype == torch.float32
    torch.testing.assert_close(x.mean(0), torch.zeros(30), atol=1e-4, rtol=0)
    torch.testing.assert_close(x.std(0, unbiased=False), torch.ones(30), atol=1e-4, rtol=0)


def test_creditcard_train_normal_only_changes_train_only(small_creditcard: Path) -> None:
    both = load_data(f"creditcard:{small_creditcard}", seed=1)
    normal = load_data(f"creditcard:{small_creditcard}", seed=1, train_normal_only=True)
    assert int(normal.train.tensors[1].sum()) == 0
    assert len(normal.train) == int((both.train.tensors[1] == 0).sum())
    assert torch.equal(normal.val.tensors[1], both.val.tensors[1])
    assert torch.equal(normal.test.tensors[1], both.test.tensors[1])
    assert int(normal.val.tensors[1].sum()) > 0 and int(normal.test.tensors[1].sum()) > 0
    assert "normal" in normal.description


def test_creditcard_csv_without_class_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "creditcard.csv"
    columns = ["Time", *(f"V{i}" for i in range(1, 29)), "Amount"]
    pd.DataFrame(np.zeros((3, len(columns))), columns=columns).to_csv(path, index=False)
    with pytest.raises(PrunetuneError, match=r"creditcard\.csv: missing column\(s\) Class"):
        load_data(f"creditcard:{tmp_path}")


def test_creditcard_missing_file_names_folder_and_files(tmp_path: Path) -> None:
    with pytest.raises(PrunetuneError, match="Credit-card files not found") as info:
        read_creditcard(tmp_path)
    assert str(tmp_path) in str(info.value) and "creditcard.csv.xz" in str(info.value)


# --- load_data: splits, seeds, normalisation ------------------------------------------------


def test_val_is_carved_from_train_without_overlap(mnist, mnist_dir: Path) -> None:
    train_x, train_y, test_x, _ = mnist
    splits = load_data(f"mnist:{mnist_dir}", limit=6000, seed=0, normalize=False)
    assert splits.mean == (0.0,) and splits.std == (1.0,)
    assert len(splits.train) + len(splits.val) == 6000 and len(splits.test) == 10000
    original = {row.tobytes(): int(label) for row, label in zip(train_x.reshape(60000, -1), train_y)}
    test_rows = {row.tobytes() for row in test_x.reshape(10000, -1)}
    train_rows = _images_as_bytes(splits.train.tensors[0])
    val_rows = _images_as_bytes(splits.val.tensors[0])
    assert not set(train_rows) & set(val_rows)
    assert not set(val_rows) & test_rows
    # Every val image is a training image, with its own label.
    assert [original[row] for row in val_rows] == splits.val.tensors[1].tolist()


def test_splits_are_seeded_and_stratified(mnist_dir: Path) -> None:
    a = load_data(f"mnist:{mnist_dir}", limit=3000, seed=7, val_fraction=0.2)
    b = load_data(f"mnist:{mnist_dir}", limit=3000, seed=7, val_fraction=0.2)
    c = load_data(f"mnist:{mnist_dir}", limit=3000, seed=8, val_fraction=0.2)
    assert torch.equal(a.train.tensors[0], b.train.tensors[0]) and torch.equal(a.val.tensors[1], b.val.tensors[1])
    assert not torch.equal(a.val.tensors[0], c.val.tensors[0])
    assert len(a.val) == 600 and len(a.train) == 2400
    pool = np.bincount(np.concatenate([a.train.tensors[1].numpy(), a.val.tensors[1].numpy()]), minlength=10)
    val = np.bincount(a.val.tensors[1].numpy(), minlength=10)
    assert np.all(np.abs(val - pool * 0.2) <= 1)
    # The limited pool keeps MNIST's class balance too.
    assert np.all(np.abs(pool - np.array(MNIST_TRAIN_COUNTS) * 3000 / 60000) <= 1)


def test_normalisation_uses_train_statistics(mnist_dir: Path) -> None:
    splits = load_data(f"mnist:{mnist_dir}")
    x = splits.train.tensors[0]
    assert x.shape == (54000, 1, 28, 28) and x.dtype == torch.float32
    assert abs(x.mean().item()) < 1e-4 and abs(x.std().item() - 1) < 1e-4
    assert splits.mean[0] == pytest.approx(0.1307, abs=2e-3) and splits.std[0] == pytest.approx(0.3081, abs=2e-3)
    # The test split gets the train statistics, not its own: close to, but not exactly, zero mean.
    test_mean = splits.test.tensors[0].mean().item()
    assert 1e-4 < abs(test_mean) < 0.05
    assert "standardised per channel" in splits.description


def test_digits_needs_no_root() -> None:
    images, labels = read_digits()
    assert images.shape == (1797, 8, 8) and images.max() == 16 and np.bincount(labels).size == 10
    splits = load_data("digits", seed=0)
    assert isinstance(splits, DataSplits)
    assert splits.input_shape == (1, 8, 8) and splits.num_classes == 10
    assert len(splits.train) + len(splits.val) + len(splits.test) == 1797
    assert splits.train.tensors[1].dtype == torch.int64
    assert set(splits.test.tensors[1].tolist()) == set(range(10))


def test_loaders_shuffle_reproducibly() -> None:
    splits = load_data("digits")
    first = [next(iter(splits.loaders(64, seed=s).train))[1] for s in (0, 0, 1)]
    assert torch.equal(first[0], first[1]) and not torch.equal(first[0], first[2])
    loaders = splits.loaders(64, seed=0, shuffle_train=False)
    assert torch.equal(next(iter(loaders.train))[1], splits.train.tensors[1][:64])
    assert torch.equal(next(iter(loaders.test))[1], splits.test.tensors[1][:64])


def test_list_datasets() -> None:
    assert list_datasets() == ["digits", "mnist", "fashion-mnist", "cifar10", "creditcard", "imagefolder"]


# --- load_data: bad arguments ---------------------------------------------------------------


def test_unknown_dataset_lists_the_known_ones() -> None:
    with pytest.raises(PrunetuneError, match="Unknown dataset 'imagenet'") as info:
        load_data("imagenet:/data")
    assert "mnist:PATH" in str(info.value) and "digits" in str(info.value)


def test_spec_without_path_shows_the_expected_form() -> None:
    with pytest.raises(PrunetuneError, match=r"'mnist:PATH'"):
        load_data("mnist")
    with pytest.raises(PrunetuneError, match=r"'creditcard:PATH'"):
        load_data("creditcard:  ")
    with pytest.raises(PrunetuneError, match="takes no PATH"):
        load_data("digits:/data")


def test_argument_errors_name_argument_and_value() -> None:
    with pytest.raises(PrunetuneError) as info:
        load_data("digits", val_fraction=1.5)
    assert str(info.value) == "The 'val_fraction' argument of load_data must be in (0, 1). Got 1.5 instead."
    with pytest.raises(PrunetuneError, match="'limit' argument of load_data must be a positive integer"):
        load_data("digits", limit=0)
    with pytest.raises(PrunetuneError, match="'seed' argument"):
        load_data("digits", seed=-1)
    with pytest.raises(PrunetuneError, match="'test_fraction' option of load_data must be in"):
        load_data("digits", test_fraction=0)
    with pytest.raises(PrunetuneError, match="Unknown option 'train_normal_only'.*'digits'"):
        load_data("digits", train_normal_only=True)
    with pytest.raises(PrunetuneError, match="Too few training records"):
        load_data("digits", limit=1)


def test_home_is_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(PrunetuneError) as info:
        load_data("mnist:~/mnist")
    assert str(tmp_path / "mnist") in str(info.value)


@pytest.mark.slow
def test_creditcard_real_file_end_to_end(datasets_root: Path) -> None:
    splits = load_data(f"creditcard:{datasets_root / 'creditcard'}")
    labels = [split.tensors[1] for split in (splits.train, splits.val, splits.test)]
    assert sum(len(y) for y in labels) == 284807 and sum(int(y.sum()) for y in labels) == 492
    assert "creditcard.csv.xz" in splits.description


def test_a_split_seed_keeps_the_bases_split_whatever_the_experiments_seed() -> None:
    from prunetune.errors import PrunetuneError
    from prunetune.zoo.datasets.section import checkpoint_source, open_data

    def val_inputs(splits):
        return next(iter(splits.loaders(512, seed=0).val))[0]

    base = open_data({"spec": "digits"}, seed=0)
    kept = open_data({"spec": "digits", "split_seed": 0}, seed=2)
    moved = open_data({"spec": "digits"}, seed=2)
    assert torch.equal(val_inputs(base), val_inputs(kept))
    assert not torch.equal(val_inputs(base), val_inputs(moved))
    assert checkpoint_source({"spec": "digits", "split_seed": 0}, seed=2)[1]["seed"] == 0
    with pytest.raises(PrunetuneError, match="data.split_seed"):
        open_data({"spec": "digits", "split_seed": "zero"}, seed=0)
