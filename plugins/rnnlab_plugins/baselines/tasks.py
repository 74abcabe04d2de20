"""Baselines of the sequence tasks (:class:`rnnlab.sequences.SequenceDataModule`): methods that
ignore the inputs, fitted on the training split's targets alone. A model that does not beat them
has learnt nothing from the sequence.

Class probabilities are smoothed with half a count per class (Jeffreys), so a class never seen in
training costs a finite cross-entropy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rnnlab.baseline import Baseline

SMOOTHING = 0.5  # pseudo-count per class


def _log_prior(counts: np.ndarray) -> np.ndarray:
    """Smoothed log-probabilities from class counts (..., K)."""
    smoothed = counts + SMOOTHING
    return np.log(smoothed / smoothed.sum(-1, keepdims=True))


def _broadcast(row: np.ndarray, dm: Any, split: str) -> np.ndarray:
    """``row`` (K,) or (T, K) for every sample of ``split``: (N, K) or (N, T, K)."""
    y = dm.targets(split)
    shape = (*y.shape, row.shape[-1])
    return np.broadcast_to(row, shape)


class Mean(Baseline):
    """The training targets' mean; for per-step targets, the mean at each position (over the
    sequences valid there; the overall mean at positions no training sequence reaches)."""

    kinds = ("regression", "per_step_regression")

    def __init__(self) -> None:
        self.mean: np.ndarray | None = None  # (O,)
        self.by_position: np.ndarray | None = None  # (T, O), per-step targets only

    def fit(self, dm: Any) -> None:
        y = dm.targets("train")  # (N, O) or (N, T, O)
        mask = dm.valid_mask("train")
        if y.ndim == 2:
            self.mean = y.mean(0)
            return
        valid = np.ones(y.shape[:2], dtype=bool) if mask is None else mask  # (N, T)
        self.mean = y[valid].mean(0)
        counts = valid.sum(0)[:, None]  # (T, 1)
        sums = (y * valid[..., None]).sum(0)  # (T, O)
        self.by_position = np.where(counts > 0, sums / np.maximum(counts, 1), self.mean)

    def predict(self, dm: Any, split: str = "test") -> np.ndarray:
        assert self.mean is not None, "fit() first"
        shape = dm.targets(split).shape
        if self.by_position is None:
            return np.broadcast_to(self.mean, shape).copy()
        rows = np.broadcast_to(self.mean, (shape[1], shape[2])).copy()  # (T, O) of this split
        steps = min(shape[1], len(self.by_position))
        rows[:steps] = self.by_position[:steps]
        return np.broadcast_to(rows, shape).copy()

    def describe(self) -> str:
        value = ", ".join(f"{v:.4g}" for v in np.atleast_1d(self.mean)) if self.mean is not None else "?"
        if self.by_position is not None:
            return f"mean (the training targets' mean at each step, overall {value}, whatever the input)"
        return f"mean (the training targets' mean, {value}, whatever the input)"


class Majority(Baseline):
    kinds = ("classification", "per_step_classification")

    def __init__(self) -> None:
        self.log_prior: np.ndarray | None = None
        self.top = ""
        self.share = 0.0

    def fit(self, dm: Any) -> None:
        counts = dm.class_counts("train")
        self.log_prior = _log_prior(counts)
        classes = dm.task().classes
        i = int(counts.argmax())
        self.top = f"{classes[i] if classes else i!s}"
        self.share = counts[i] / counts.sum()

    def predict(self, dm: Any, split: str = "test") -> np.ndarray:
        assert self.log_prior is not None, "fit() first"
        return _broadcast(self.log_prior, dm, split)

    def describe(self) -> str:
        return f"majority (the training class frequencies; class {self.top!r} is {self.share:.1%} of training targets)"


class Memoryless(Baseline):
    kinds = ("per_step_classification",)

    def __init__(self) -> None:
        self.log_prior: np.ndarray | None = None
        self.reference: float | None = None

    def why_not(self, dm: Any) -> str | None:
        if dm.lengths("train") is not None:
            return "the sequences have different lengths: positions do not line up"
        return None

    def fit(self, dm: Any) -> None:
        self.log_prior = _log_prior(dm.class_counts("train", per_position=True))  # (T, K)
        loss = getattr(dm, "memoryless_loss", None)
        self.reference = float(loss()) if callable(loss) else None

    def predict(self, dm: Any, split: str = "test") -> np.ndarray:
        assert self.log_prior is not None, "fit() first"
        return _broadcast(self.log_prior, dm, split)

    def describe(self) -> str:
        exact = f"; exact: {self.reference:.4f} nats" if self.reference is not None else ""
        return f"memoryless (each position's training class frequencies, ignoring the inputs{exact})"


class Unigram(Baseline):
    kinds = ("language_model",)

    def __init__(self) -> None:
        self.log_prior: np.ndarray | None = None

    def fit(self, dm: Any) -> None:
        self.log_prior = _log_prior(dm.class_counts("train"))

    def predict(self, dm: Any, split: str = "test") -> np.ndarray:
        assert self.log_prior is not None, "fit() first"
        return _broadcast(self.log_prior, dm, split)

    def describe(self) -> str:
        return "unigram (the training text's token frequencies, whatever came before)"
