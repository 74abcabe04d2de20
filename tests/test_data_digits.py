"""digits: images as sequences (rows, pixels, permuted pixels), the MNIST subset, Fashion-MNIST IDX files."""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from rnnlab_plugins.data.digits import FASHION_CLASSES, DigitsDataModule, read_idx
from rnnlab_plugins.data.digits_config import FASHION_PATH, DigitsConfig

from rnnlab.errors import ConfigError
from rnnlab.registry import data_modules
from rnnlab.testing import check_config_round_trip, check_data_module

ORDERS = ("rows", "pixels", "permuted")


def _digits(**kwargs):
    dm = data_modules.create("digits", **kwargs)
    dm.setup("fit")
    return dm


def _hashes(x: torch.Tensor) -> set[str]:
    return {hashlib.sha1(row.numpy().tobytes()).hexdigest() for row in x}


# ----------------------------------------------------------------------------- the contract


def test_the_schema_round_trips():
    check_config_round_trip(DigitsConfig)


@pytest.mark.parametrize("order", ORDERS)
def test_contract_on_sklearn_digits(order):
    dm = check_data_module(DigitsConfig(dataset="sklearn", order=order))
    steps, inputs = (8, 8) if order == "rows" else (64, 1)
    assert dm.splits["train"][0].shape[1:] == (steps, inputs)
    assert dm.task().kind == "classification" and dm.task().classes == tuple("0123456789")


@pytest.mark.parametrize("order", ORDERS)
def test_contract_on_the_mnist_subset(order):
    dm = check_data_module(DigitsConfig(order=order, batch_size=32))
    steps, inputs = (28, 28) if order == "rows" else (784, 1)
    assert dm.task().input_size == inputs and dm.describe()["steps"] == steps
    assert dm.describe() | {"steps": 0} == {"n_train": 3500, "n_val": 500, "n_test": 1000, "steps": 0}


# ----------------------------------------------------------------------------- splits


def test_mnist_subset_splits_are_disjoint_stratified_and_hold_no_duplicates():
    dm = _digits(dataset="mnist")
    indices = dm.indices
    assert sum(len(i) for i in indices.values()) == 5000
    assert len(np.unique(np.concatenate(list(indices.values())))) == 5000  # by index: each image once
    raw = dm.images()
    hashes = {s: {hashlib.sha1(im.tobytes()).hexdigest() for im in raw[s][0]} for s in raw}
    # the subset has no two identical images (measured: 5,000 distinct), so hashes count images
    assert [len(h) for h in hashes.values()] == [3500, 500, 1000]
    assert not (hashes["train"] & hashes["val"] or hashes["train"] & hashes["test"] or hashes["val"] & hashes["test"])
    # and the scaled sequences the net reads are as distinct as the images
    assert sum(len(_hashes(dm.splits[s][0])) for s in raw) == 5000
    for split, share in (("train", 0.7), ("val", 0.1), ("test", 0.2)):
        counts = np.bincount(dm.splits[split][1].numpy(), minlength=10)
        assert (counts == round(500 * share)).all(), (split, counts)  # 500 images a digit


def test_duplicate_images_stay_in_one_split(monkeypatch):
    """sklearn's digits hold no duplicates; add some (copies of one image, with its label) and they
    all land in the split of the original."""
    from rnnlab_plugins.data import digits

    images, labels = digits._sklearn_digits()
    copies = np.arange(0, 400, 7)
    images = np.concatenate([images, images[copies], images[copies]])
    labels = np.concatenate([labels, labels[copies], labels[copies]])
    monkeypatch.setattr(digits, "_sklearn_digits", lambda: (images, labels))
    dm = _digits(dataset="sklearn")
    split_of = np.empty(len(images), dtype=object)
    for split, idx in dm.indices.items():
        split_of[idx] = split
    n = 1797
    for k, original in enumerate(copies):
        assert split_of[original] == split_of[n + k] == split_of[n + len(copies) + k]
    assert {split_of[c] for c in copies} >= {"train", "test"}  # the copies are not all put in one split


def test_the_same_seed_gives_the_same_data_and_another_seed_another_split():
    a, b = _digits(dataset="sklearn", seed=3), _digits(dataset="sklearn", seed=3)
    for split in ("train", "val", "test"):
        assert all(torch.equal(u, v) for u, v in zip(a.splits[split], b.splits[split], strict=True))
    c = _digits(dataset="sklearn", seed=4)
    assert not np.array_equal(a.indices["test"], c.indices["test"])


def test_fractions_set_the_split_sizes():
    dm = _digits(dataset="sklearn", val_fraction=0.25, test_fraction=0.25)
    sizes = {s: len(i) for s, i in dm.indices.items()}
    assert sum(sizes.values()) == 1797
    assert abs(sizes["val"] - 1797 / 4) <= 10 and abs(sizes["test"] - 1797 / 4) <= 10


# ----------------------------------------------------------------------------- orders and scaling


def test_orders_read_the_same_pixels():
    rows, pixels, permuted = (_digits(dataset="sklearn", order=o, seed=1) for o in ORDERS)
    perm = permuted.permutation
    assert rows.permutation is None and pixels.permutation is None
    assert sorted(perm.tolist()) == list(range(64)) and not np.array_equal(perm, np.arange(64))
    for split in ("train", "val", "test"):
        x_rows, x_pix, x_perm = rows.splits[split][0], pixels.splits[split][0], permuted.splits[split][0]
        assert torch.equal(x_rows.reshape(len(x_rows), 64, 1), x_pix)  # row by row = pixel by pixel, in blocks
        assert torch.equal(x_pix[:, torch.from_numpy(perm)], x_perm)  # one permutation, every image and split
    again = _digits(dataset="sklearn", order="permuted", seed=1)
    assert np.array_equal(again.permutation, perm)
    other = _digits(dataset="sklearn", order="permuted", seed=2)
    assert not np.array_equal(other.permutation, perm)


def test_scaling_uses_the_training_split_only(monkeypatch):
    dm = _digits(dataset="sklearn")
    train_pixels = dm.images()["train"][0].astype(np.float64)
    assert dm.pixel_mean == pytest.approx(train_pixels.mean()) and dm.pixel_std == pytest.approx(train_pixels.std())
    x = dm.splits["train"][0]
    assert float(x.mean()) == pytest.approx(0.0, abs=1e-5) and float(x.std()) == pytest.approx(1.0, abs=1e-3)

    class Brighter(DigitsDataModule):  # the same splits, with every val and test pixel at its maximum
        def images(self):
            raw = super().images()
            return {s: (im if s == "train" else np.full_like(im, 16), y) for s, (im, y) in raw.items()}

    monkeypatch.setattr(data_modules, "impl", lambda name: Brighter)
    bright = _digits(dataset="sklearn")
    assert (bright.pixel_mean, bright.pixel_std) == (dm.pixel_mean, dm.pixel_std)
    assert torch.equal(bright.splits["train"][0], dm.splits["train"][0])
    assert not torch.equal(bright.splits["test"][0], dm.splits["test"][0])


# ----------------------------------------------------------------------------- IDX files, Fashion-MNIST


def _write_idx(path: Path, array: np.ndarray, *, magic: bytes | None = None) -> Path:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}
    header = magic or bytes([0, 0, codes[array.dtype], array.ndim])
    body = header + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path.write_bytes(gzip.compress(body) if path.suffix == ".gz" else body)
    return path


def _fashion_dir(tmp_path: Path, n_train: int = 200, n_test: int = 50, gz: bool = True) -> Path:
    """A small real Fashion-MNIST-format set: distinct random 28x28 images, 10 balanced labels."""
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte{suffix}", images)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte{suffix}", (np.arange(n) % 10).astype(np.uint8))
    return tmp_path


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_reads_what_was_written(tmp_path, suffix):
    images = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    assert np.array_equal(read_idx(_write_idx(tmp_path / f"img{suffix}", images)), images)
    wide = np.array([[1, -2], [70000, 3]], dtype=">i4")
    assert np.array_equal(read_idx(_write_idx(tmp_path / f"int{suffix}", wide)), wide)


def test_read_idx_refuses_other_files(tmp_path):
    images = np.zeros((2, 3, 3), dtype=np.uint8)
    bad_magic = _write_idx(tmp_path / "a", images, magic=b"\x08\x03\x00\x00")
    with pytest.raises(ConfigError, match=r"data.path: .* is not an IDX file: magic number 0x08030000"):
        read_idx(bad_magic)
    short = tmp_path / "b"
    short.write_bytes(_write_idx(tmp_path / "c", images).read_bytes()[:-1])
    with pytest.raises(ConfigError, match=r"holds 17 bytes of data, but its header \(2, 3, 3\) needs 18"):
        read_idx(short)
    not_gzip = tmp_path / "d.gz"
    not_gzip.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x00")
    with pytest.raises(ConfigError, match=r"cannot read .*d\.gz"):
        read_idx(not_gzip)


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_reads_idx_files_with_the_published_split(tmp_path, gz):
    path = _fashion_dir(tmp_path, gz=gz)
    dm = check_data_module(DigitsConfig(dataset="fashion", path=str(path), order="pixels", val_fraction=0.1))
    assert dm.task().classes == FASHION_CLASSES and dm.task().classes[0] == "T-shirt/top"
    assert {s: len(i) for s, i in dm.indices.items()} == {"train": 180, "val": 20, "test": 50}
    assert np.array_equal(dm.indices["test"], np.arange(50))  # the published test split, whole and in order
    assert not set(dm.indices["train"]) & set(dm.indices["val"])
    test_images = read_idx(path / f"t10k-images-idx3-ubyte{'.gz' if gz else ''}")
    expected = (test_images.astype(np.float32) - dm.pixel_mean) / dm.pixel_std
    assert torch.allclose(dm.splits["test"][0], torch.from_numpy(expected.reshape(50, 784, 1)))


def test_fashion_training_images_that_repeat_a_test_image_are_dropped(tmp_path):
    path = _fashion_dir(tmp_path, gz=False)
    train = read_idx(path / "train-images-idx3-ubyte").copy()
    test = read_idx(path / "t10k-images-idx3-ubyte")
    train[[5, 17]] = test[[0, 3]]
    _write_idx(path / "train-images-idx3-ubyte", train)
    dm = _digits(dataset="fashion", path=str(path))
    kept = np.concatenate([dm.indices["train"], dm.indices["val"]])
    assert len(kept) == 198 and 5 not in kept and 17 not in kept
    assert not _hashes(dm.splits["test"][0]) & (_hashes(dm.splits["train"][0]) | _hashes(dm.splits["val"][0]))


def test_fashion_without_its_files_names_the_path_and_how_to_get_them(tmp_path):
    with pytest.raises(ConfigError, match=r"^path: Fashion-MNIST directory not found: .*apt install dataset-fashion"):
        DigitsConfig(dataset="fashion", path=str(tmp_path / "nowhere"))
    path = _fashion_dir(tmp_path)
    (path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(ConfigError, match=r"^path: no t10k-labels-idx1-ubyte or t10k-labels-idx1-ubyte.gz in "):
        DigitsConfig(dataset="fashion", path=str(path))


def test_fashion_with_mismatched_files_is_a_config_error(tmp_path):
    path = _fashion_dir(tmp_path, gz=False)
    _write_idx(path / "t10k-labels-idx1-ubyte", np.zeros(49, dtype=np.uint8))
    with pytest.raises(ConfigError, match=r"data.path: 50 images in t10k-images-idx3-ubyte but 49 labels"):
        _digits(dataset="fashion", path=str(path))


# Debian's dataset-fashion-mnist, or the same four files elsewhere (the package's .deb, unpacked)
REAL_FASHION = os.environ.get("RNNLAB_FASHION_MNIST", FASHION_PATH)


@pytest.mark.slow
@pytest.mark.skipif(not Path(REAL_FASHION).is_dir(), reason=f"Fashion-MNIST not installed in {REAL_FASHION}")
def test_real_fashion_mnist():
    dm = _digits(dataset="fashion", path=REAL_FASHION, order="rows")
    assert dm.describe() == {"n_train": 54000, "n_val": 6000, "n_test": 10000, "steps": 28}
    # Zalando's published pixel statistics of the training images: mean 72.94, std 90.02
    assert dm.pixel_mean == pytest.approx(72.94, abs=0.1) and dm.pixel_std == pytest.approx(90.02, abs=0.1)
    assert (np.bincount(dm.splits["test"][1].numpy()) == 1000).all()
    assert (np.bincount(dm.splits["val"][1].numpy()) == 600).all()


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"order": "bad"}, "order: invalid value 'bad'; valid choices: permuted, pixels, rows"),
        ({"dataset": "emnist"}, "dataset: invalid value 'emnist'; valid choices: fashion, mnist, sklearn"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "test_fraction: val_fraction + test_fraction must be < 1"),
        ({"val_fraction": 0.0}, "val_fraction: must be > 0, got 0.0"),
        ({"seed": -1}, "seed: must be >= 0, got -1"),
    ],
)
def test_bad_values_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError) as info:
        DigitsConfig(**kwargs)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_bad_input_on_the_command_line_is_one_line(workdir):
    from conftest import run_cli

    for args, line in (
        (["data=digits", "data.order=bad"], "rnnlab: error: data.order: invalid value 'bad'; valid choices:"),
        (["data=digits", "data.dataset=fashion", f"data.path={workdir}/none"], "rnnlab: error: data.path: Fashion"),
    ):
        res = run_cli(args, workdir)
        lines = [x for x in res.stderr.splitlines() if x.strip()]
        assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith(line), res.stderr
    assert not (workdir / "mlflow.db").exists()


# ----------------------------------------------------------------------------- a real run


def test_a_tiny_cli_run_logs_test_accuracy_to_mlflow(workdir):
    from conftest import run_cli
    from mlflow.tracking import MlflowClient

    args = [
        "data=digits",
        "data.order=rows",
        "backbone=lstm",
        "backbone.hidden_size=16",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=20",
        "trainer.limit_val_batches=1",
        "trainer.accelerator=cpu",
        "trainer.devices=1",
        "optimizer.lr=0.01",
        "logger.log_model=false",
    ]
    res = run_cli(args, workdir, env={"OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("rnnlab").experiment_id])
    metrics = run.data.metrics
    assert run.info.status == "FINISHED"
    # 20 steps of 64 images already beat chance (0.1) on 1,000 test images
    assert 0.15 < metrics["test/accuracy"] <= 1.0 and 0 < metrics["test/f1"] <= 1.0
    assert run.data.params["data.order"] == "rows" and run.data.params["data.n_test"] == "1000"
