"""UCR/UEA time-series classification sets, read from .ts files with sktime (the ``rnnlab[ucr]``
extra): those sktime bundles in its wheel, or the user's own.

Series of unequal length (JapaneseVowels: 7 to 29 steps) are right-padded with zeros to the
longest, and every split carries its lengths: the backbone packs the batch and never reads the
padding, the head reads each series at its last valid step.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rnnlab.errors import ConfigError, first_line
from rnnlab.sequences import SequenceDataModule
from rnnlab.task import TaskSpec
from rnnlab_plugins.data.ucr_config import INSTALL, ts_files

log = logging.getLogger(__name__)


def bundled_dir() -> Path:
    """Where sktime keeps the sets it bundles: ``<dir>/<name>/<name>_TRAIN.ts``."""
    try:
        import sktime
    except ImportError:
        raise ConfigError("", f"the ucr data module needs sktime, which is not installed: {INSTALL}") from None
    return Path(sktime.__file__).parent / "datasets" / "data"


def read_ts(path: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """The series of a .ts file, each (C, T_i) float64 with trailing missing values cut (the UCR
    archive pads shorter series with them), and their labels as strings."""
    from sktime.datasets import load_from_tsfile

    if not _has_class_labels(path):
        raise ConfigError("path", f"{path.name} has no class labels (@classLabel true): not a classification set")
    try:
        frame, labels = load_from_tsfile(str(path), return_data_type="nested_univ")
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise ConfigError("path", f"cannot read {path.name} as a .ts file: {first_line(str(e))}") from None
    cells = frame.to_numpy()  # (N, C) of pandas Series
    series = []
    for i, row in enumerate(cells):
        steps = max(len(cell) for cell in row)
        s = np.full((len(row), steps), np.nan)  # (C, T_i); a channel shorter than the others ends in NaN
        for c, cell in enumerate(row):
            s[c, : len(cell)] = np.asarray(cell, dtype=np.float64)
        valid = ~np.isnan(s).any(axis=0)  # (T_i,)
        n = int(np.argmin(valid)) if not valid.all() else steps  # up to the first missing step
        if n == 0 or not np.isnan(s[:, n:]).all():
            raise ConfigError("path", f"{path.name}: series {i} has missing values ('?' or NaN) before its end")
        series.append(s[:, :n])
    return series, np.asarray(labels).astype(str)


def _has_class_labels(path: Path) -> bool:
    """Whether the header says ``@classLabel true`` (regression sets say ``@targetLabel``)."""
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            words = line.strip().lower().split()
            if words[:1] == ["@data"]:
                return False
            if words[:2] == ["@classlabel", "true"]:
                return True
    return False


def label_order(labels: np.ndarray) -> list[str]:
    """The distinct labels sorted, numerically when every label is a number ('2' before '10')."""
    distinct = sorted(set(labels.tolist()))
    try:
        return sorted(distinct, key=float)
    except ValueError:
        return distinct


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val), each sorted: ``fraction`` of each class (rounded) to validation, drawn
    with ``seed``; every class keeps at least one training series, validation gets at least one."""
    rng = np.random.default_rng(seed)
    val: list[int] = []
    for k in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == k))
        val.extend(members[: min(round(fraction * len(members)), len(members) - 1)].tolist())
    if not val:  # every class too small to round up to one: take one from the largest
        counts = np.bincount(y)
        val = [int(rng.choice(np.flatnonzero(y == int(np.argmax(counts)))))]
    val_idx = np.sort(np.asarray(val, dtype=np.int64))
    return np.setdiff1d(np.arange(len(y)), val_idx), val_idx


def content_hash(series: np.ndarray) -> str:
    """A hash of a series' values (C, T_i), to find the same series in two splits."""
    return hashlib.sha1(np.ascontiguousarray(series, dtype=np.float64).tobytes()).hexdigest()


class UCRDataModule(SequenceDataModule):
    kind = "classification"

    def __init__(
        self, *, dataset: str, path: str | None, val_fraction: float, seed: int, **kwargs: Any
    ) -> None:  # no defaults: they live in the schema (rnnlab_plugins.data.ucr_config)
        super().__init__(**kwargs)
        self.dataset = dataset
        self.path = path
        self.val_fraction = val_fraction
        self.seed = seed
        # Set by load(): class names, the scaler (C,), which published training series went to
        # train and val and which were dropped, and the published series themselves (unscaled).
        self.classes: tuple[str, ...] = ()
        self.mean = np.zeros(0)
        self.std = np.ones(0)
        self.train_index = np.zeros(0, dtype=np.int64)
        self.val_index = np.zeros(0, dtype=np.int64)
        self.dropped = np.zeros(0, dtype=np.int64)
        self.published: dict[str, tuple[list[np.ndarray], np.ndarray]] = {}

    def files(self) -> tuple[Path, Path]:
        """The (train, test) .ts files read: the user's (``path``) or the ones sktime bundles."""
        if self.path is not None:
            return ts_files(self.path, self.dataset)
        folder = bundled_dir() / self.dataset
        files = folder / f"{self.dataset}_TRAIN.ts", folder / f"{self.dataset}_TEST.ts"
        if not all(f.is_file() for f in files):
            from importlib.metadata import version

            bundled = [d.name for d in bundled_dir().iterdir() if (d / f"{d.name}_TRAIN.ts").is_file()]
            raise ConfigError("dataset", f"sktime {version('sktime')} does not bundle {self.dataset!r}", bundled)
        return files

    def load(self) -> dict[str, tuple[Tensor, ...]]:
        train_file, test_file = self.files()
        self.published = {"train": read_ts(train_file), "test": read_ts(test_file)}
        (train_x, train_labels), (test_x, test_labels) = self.published["train"], self.published["test"]
        channels = {s.shape[0] for s in train_x + test_x}
        if len(channels) != 1:
            raise ConfigError("path", f"{train_file.name}: series have different channel counts {sorted(channels)}")
        self.classes = tuple(label_order(np.concatenate([train_labels, test_labels])))
        ids = {label: k for k, label in enumerate(self.classes)}
        train_y = np.array([ids[label] for label in train_labels], dtype=np.int64)
        test_y = np.array([ids[label] for label in test_labels], dtype=np.int64)
        kept = self._distinct_training(train_x, test_x, train_file.name.removesuffix("_TRAIN.ts"))
        train_pos, val_pos = stratified_split(train_y[kept], self.val_fraction, self.seed)
        self.train_index, self.val_index = kept[train_pos], kept[val_pos]

        fit = [train_x[i] for i in self.train_index]
        values = np.concatenate(fit, axis=1)  # (C, sum of T_i): the training split's valid steps only
        self.mean = values.mean(axis=1)
        std = values.std(axis=1)
        self.std = np.where(std > 0, std, 1.0)  # a constant channel stays constant (0)

        steps = max(s.shape[1] for s in train_x + test_x)
        variable = any(s.shape[1] != steps for s in train_x + test_x)
        parts = {
            "train": ([train_x[i] for i in self.train_index], train_y[self.train_index]),
            "val": ([train_x[i] for i in self.val_index], train_y[self.val_index]),
            "test": (test_x, test_y),
        }
        return {split: self._tensors(xs, y, steps, variable) for split, (xs, y) in parts.items()}

    def _distinct_training(self, train_x: list[np.ndarray], test_x: list[np.ndarray], name: str) -> np.ndarray:
        """The published training series that repeat no test series and no earlier training series:
        a repeat would put one sample in two splits (PLAID's training split repeats 5 test series).
        The others go to ``self.dropped``; the test split stays as published."""
        test_hashes = {content_hash(s) for s in test_x}
        seen: set[str] = set()
        keep = []
        for i, s in enumerate(train_x):
            h = content_hash(s)
            if h not in test_hashes and h not in seen:
                keep.append(i)
            seen.add(h)
        kept = np.asarray(keep, dtype=np.int64)
        self.dropped = np.setdiff1d(np.arange(len(train_x)), kept)
        if len(self.dropped):
            log.warning(
                "ucr %s: %d training series repeat another series; dropped from training", name, len(self.dropped)
            )
        if len(kept) < 2:
            raise ConfigError("path", f"{name}_TRAIN.ts: {len(kept)} distinct training series; need 2 (train and val)")
        return kept

    def _tensors(self, series: list[np.ndarray], y: np.ndarray, steps: int, variable: bool) -> tuple[Tensor, ...]:
        """Standardized series right-padded with zeros to ``steps``: (x (N, T, C), y (N,)), and
        lengths (N,) when any series of the set is shorter than the longest."""
        x = np.zeros((len(series), steps, len(self.mean)), dtype=np.float32)  # (N, T, C)
        lengths = np.array([s.shape[1] for s in series], dtype=np.int64)
        for i, s in enumerate(series):
            x[i, : s.shape[1]] = ((s - self.mean[:, None]) / self.std[:, None]).T  # (T_i, C)
        tensors = (torch.from_numpy(x), torch.from_numpy(y))
        return (*tensors, torch.from_numpy(lengths)) if variable else tensors

    def task(self) -> TaskSpec:
        if not self.splits:
            self.setup("fit")
        return self.spec(input_size=len(self.mean), output_size=len(self.classes), classes=self.classes)

    def describe(self) -> dict[str, int]:
        info = super().describe()
        info["classes"] = len(self.classes)
        info["channels"] = len(self.mean)
        lengths = [tensors[2] for tensors in self.splits.values() if len(tensors) > 2]
        if lengths:
            info["min_steps"] = min(int(t.min()) for t in lengths)
        return info
