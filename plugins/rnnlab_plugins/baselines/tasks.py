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
    kinds = ("regression", "per_step_regression")

    def __init__(self) -> None:
        self.mean: np.ndarray | None = None

    def fit(self, dm: Any) -> None:
        y = dm.targets("train")
        mask = dm.valid_mask("train")
        self.mean = (y[mask] if mask is not None else y.reshape(-1, y.shape[-1])).mean(0)

    def predict(self, dm: Any, split: str = "test") -> np.ndarray:
        assert self.mean is not None, "fit() first"
        return np.broadcast_to(self.mean, dm.targets(split).shape).copy()

    def describe(self) -> str:
        value = ", ".join(f"{v:.4g}" for v in np.atleast_1d(self.mean)) if self.mean is not None else "?"
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
