"""Synthetic long-memory tasks: the adding problem and copy memory, generated from a seed.

Each split has its own random stream (``numpy.random.SeedSequence(seed).spawn(3)``: train, val,
test), so the same seed gives the same data on every machine, and growing ``n_train`` leaves the
validation and test sets as they were.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rnnlab.sequences import SequenceDataModule
from rnnlab.task import TaskSpec

_SPLITS = ("train", "val", "test")


def _streams(seed: int) -> dict[str, np.random.Generator]:
    """One independent generator per split, from one seed."""
    children = np.random.SeedSequence(seed).spawn(len(_SPLITS))
    return {split: np.random.default_rng(child) for split, child in zip(_SPLITS, children, strict=True)}


# ----------------------------------------------------------------------------- adding problem


def adding_samples(rng: np.random.Generator, n: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` adding-problem sequences of ``length`` steps: inputs (n, T, 2) float32, targets (n, 1).

    Channel 0 holds values uniform in [0, 1), channel 1 a marker with exactly two ones: one at a
    uniform position of the first half (steps 0 .. T//2 - 1), one of the second (T//2 .. T - 1), as
    in Arjovsky et al. 2016 and Le et al. 2015; the target is the sum of the two marked values.
    """
    # one row of uniforms per sample (T values, then the two marker draws): n samples are the
    # first n of any larger set from the same stream
    u = rng.random((n, length + 2), dtype=np.float32)  # (N, T + 2), in [0, 1) as float32 too
    values = u[:, :length]  # (N, T)
    half = length // 2
    marks = u[:, length:].astype(np.float64)  # (N, 2): a float32 product could round up to the bound
    first = (marks[:, 0] * half).astype(np.int64)  # (N,) in [0, T//2)
    second = half + (marks[:, 1] * (length - half)).astype(np.int64)  # (N,) in [T//2, T)
    rows = np.arange(n)
    markers = np.zeros((n, length), dtype=np.float32)  # (N, T)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = np.stack([values, markers], axis=-1)  # (N, T, 2)
    y = (values[rows, first] + values[rows, second])[:, None]  # (N, 1), from the float32 inputs
    return x, y


def running_sums(x: np.ndarray) -> np.ndarray:
    """The adding problem's per-step targets (N, T, 1): at each step the sum of the values marked so
    far. The last step's is the last-step target (up to float32 rounding of the sum)."""
    return np.cumsum(x[..., 0] * x[..., 1], axis=1, dtype=np.float32)[..., None]


class AddingDataModule(SequenceDataModule):
    """The adding problem (Hochreiter & Schmidhuber 1997): last-step regression of the sum of the
    two marked values. Predicting 1.0 always scores MSE 1/6 = 0.167 (the variance of the sum of two
    uniforms); the targets are unscaled and unitless."""

    kind = "regression"

    def __init__(
        self, *, length: int, target: str, n_train: int, n_val: int, n_test: int, seed: int, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.length = length
        self.target = target
        if target == "running":  # per-step targets: the running sum of the marked values
            self.kind = "per_step_regression"
        self.sizes = {"train": n_train, "val": n_val, "test": n_test}
        self.seed = seed

    def load(self) -> dict[str, tuple[Tensor, ...]]:
        streams = _streams(self.seed)
        splits: dict[str, tuple[Tensor, ...]] = {}
        for split in _SPLITS:
            x, y = adding_samples(streams[split], self.sizes[split], self.length)
            if self.target == "running":
                y = running_sums(x)
            splits[split] = (torch.from_numpy(x), torch.from_numpy(y))
        return splits

    def task(self) -> TaskSpec:
        return self.spec(input_size=2, output_size=1)


# ----------------------------------------------------------------------------- copy memory


def copy_samples(
    rng: np.random.Generator, n: int, delay: int, alphabet: int, symbols: int, exclude: set[bytes] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` copy-memory sequences: token ids (n, delay + 2 * symbols) in and class ids out.

    Inputs: ``symbols`` symbols drawn from 1..alphabet, ``delay - 1`` blanks (0), the delimiter
    (alphabet + 1), ``symbols`` blanks. Targets: blank everywhere but the last ``symbols`` steps,
    which repeat the first ``symbols`` inputs (Arjovsky et al. 2016). Symbol strings in ``exclude``
    (as ``bytes`` of their int64 row) are drawn again, so a split can be kept apart from others.
    """
    heads = rng.integers(1, alphabet + 1, (n, symbols), dtype=np.int64)  # (N, S)
    if exclude:
        for i in range(n):
            while heads[i].tobytes() in exclude:
                heads[i] = rng.integers(1, alphabet + 1, symbols, dtype=np.int64)
    steps = delay + 2 * symbols
    x = np.zeros((n, steps), dtype=np.int64)  # (N, T + 2S)
    x[:, :symbols] = heads
    x[:, symbols + delay - 1] = alphabet + 1  # the delimiter: "now repeat them"
    y = np.zeros((n, steps), dtype=np.int64)  # (N, T + 2S)
    y[:, -symbols:] = heads
    return x, y


class CopyDataModule(SequenceDataModule):
    """Copy memory (Arjovsky et al. 2016): remember ``symbols`` symbols over ``delay`` steps and
    repeat them after the delimiter; per-step classification over blank + ``alphabet`` symbols.

    The validation and test sets hold no symbol string of the training set, nor the test set any of
    the validation set's: a model scores on strings it has not seen.
    """

    kind = "per_step_classification"

    def __init__(
        self,
        *,
        delay: int,
        alphabet: int,
        symbols: int,
        n_train: int,
        n_val: int,
        n_test: int,
        seed: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.delay = delay
        self.alphabet = alphabet
        self.symbols = symbols
        self.sizes = {"train": n_train, "val": n_val, "test": n_test}
        self.seed = seed

    def load(self) -> dict[str, tuple[Tensor, ...]]:
        streams = _streams(self.seed)
        held_out: set[bytes] = set()
        splits: dict[str, tuple[Tensor, ...]] = {}
        # test first, then val without test's strings, then train without either
        for split in reversed(_SPLITS):
            x, y = copy_samples(streams[split], self.sizes[split], self.delay, self.alphabet, self.symbols, held_out)
            held_out.update(row.tobytes() for row in x[:, : self.symbols])
            splits[split] = (torch.from_numpy(x), torch.from_numpy(y))
        return {split: splits[split] for split in _SPLITS}

    def task(self) -> TaskSpec:
        return self.spec(
            input_size=self.alphabet + 2,  # blank, the symbols, the delimiter
            output_size=self.alphabet + 1,  # blank, the symbols
            tokens=True,
            classes=("blank", *(str(s) for s in range(1, self.alphabet + 1))),
        )

    def memoryless_loss(self) -> float:
        """Cross-entropy (nats per step) of the best model without memory: blank for sure until the
        last ``symbols`` steps, then each symbol with probability 1/alphabet; symbols * ln(alphabet)
        / (delay + 2 * symbols), 10 ln 8 / 120 = 0.173 at delay 100 (Arjovsky et al. 2016)."""
        return self.symbols * math.log(self.alphabet) / (self.delay + 2 * self.symbols)
