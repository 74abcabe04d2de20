"""Whole sequences as samples: the public base of every data module that is not a window of one series.

A task of this kind (adding problem, copy memory, digits as sequences, character text, UCR sets)
subclasses :class:`SequenceDataModule` and its schema :class:`rnnlab.schemas.SequenceConfig`::

    @dataclass
    class ParityConfig(SequenceConfig):
        name: str = "parity"
        kind: ClassVar[str] = "classification"
        impl: ClassVar[str] = "my_pkg.parity:ParityDataModule"

    class ParityDataModule(SequenceDataModule):
        kind = "classification"

        def load(self):
            return {"train": (x, y), "val": (x, y), "test": (x, y)}

        def task(self):
            return self.spec(input_size=1, output_size=2)

The base does the rest: the TaskSpec's metrics for its kind, the scores of any method's predictions
(the model's and every baseline plugin's, through one ``score``), the training split's class and
token counts the baselines fit on, and the targets the tests read.

**Splits.** ``load()`` returns ``{"train"|"val"|"test": (x, y) or (x, y, lengths)}``:

- ``x``: float features (N, T, C), or integer token ids (N, T) with ``tokens=True`` in the spec;
- ``y``: last-step targets (N, O) float or (N,) class ids; per-step targets (N, T, O) float or
  (N, T) class ids;
- ``lengths`` (N,) long, optional: valid steps of right-padded variable-length sequences. The
  backbone never reads the padding, per-step targets count at valid steps only.

Regression targets are in the data's original units unless the spec sets ``target_scale`` /
``target_shift`` (the net's outputs are unscaled by them, as for series).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rnnlab.data import InMemoryDataModule
from rnnlab.task import KIND_METRICS, KIND_PRIMARY, KINDS, TaskSpec

log = logging.getLogger(__name__)


class SequenceDataModule(InMemoryDataModule):
    """Subclasses set ``kind`` (one of :data:`rnnlab.task.KINDS` but ``forecast``) and implement
    ``load()`` and ``task()`` (build it with :meth:`spec`)."""

    kind = ""
    units = ""

    def load(self) -> dict[str, tuple[Tensor, ...]]:
        """The three splits, as the module docstring describes."""
        raise NotImplementedError

    @property
    def primary_metric(self) -> str:  # type: ignore[override]
        """The score that ranks the baselines and decides the verdict (``rnnlab.task.KIND_PRIMARY``)."""
        return KIND_PRIMARY[self.kind]

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        if self.kind not in KINDS or self.kind == "forecast":
            raise TypeError(f"{type(self).__name__}.kind must be one of {KINDS[1:]}, got {self.kind!r}")
        splits = self.load()
        for split in ("train", "val", "test"):
            if split not in splits or len(splits[split][0]) == 0:
                raise ValueError(f"{type(self).__name__}.load() gave no {split!r} samples")
        self.splits = dict(splits)
        log.info("%s: %s", type(self).__name__, self.describe())

    def spec(self, *, input_size: int, output_size: int, **kwargs: Any) -> TaskSpec:
        """The TaskSpec of this module's kind: its target layout, loss and metrics; ``kwargs`` adds
        ``tokens``, ``classes``, ``units``, ``target_scale`` / ``target_shift``, ``loss`` (mae)."""
        classes = self.kind in ("classification", "per_step_classification", "language_model")
        return TaskSpec(
            input_size=input_size,
            output_size=output_size,
            target="per_step" if self.kind.startswith("per_step") or self.kind == "language_model" else "last",
            loss=kwargs.pop("loss", "cross_entropy" if classes else "mse"),
            metrics=tuple(m for m in KIND_METRICS[self.kind] if m != "loss"),
            language_model=self.kind == "language_model",
            units=kwargs.pop("units", self.units),
            **kwargs,
        )

    # -- what baselines and scores read ---------------------------------------------------------

    def targets(self, split: str) -> np.ndarray:
        """The split's targets as numpy: class ids (int64) or values (float64, original units)."""
        if not self.splits:
            self.setup("fit")
        y = self.splits[split][1]
        return y.numpy().astype(np.int64 if not y.is_floating_point() else np.float64)

    def lengths(self, split: str) -> np.ndarray | None:
        """Valid steps per sequence (N,), or None when every sequence has every step."""
        if not self.splits:
            self.setup("fit")
        tensors = self.splits[split]
        return tensors[2].numpy() if len(tensors) > 2 else None

    def valid_mask(self, split: str) -> np.ndarray | None:
        """Per-step targets: a (N, T) bool mask of valid steps (None without lengths)."""
        lengths = self.lengths(split)
        if lengths is None or self.task().target != "per_step":
            return None
        steps = self.targets(split).shape[1]
        return np.arange(steps)[None, :] < lengths[:, None]

    def class_counts(self, split: str = "train", *, per_position: bool = False) -> np.ndarray:
        """How often each class (or token) is a target in ``split``, valid steps only: (K,), or
        (T, K) per position with ``per_position``. What the majority, memoryless and unigram
        baselines fit on (the training split)."""
        task = self.task()
        if not task.classification:
            raise ValueError(f"{type(self).__name__} is a {task.kind} task: it has no classes")
        y = self.targets(split)
        k = task.output_size
        mask = self.valid_mask(split)
        if per_position:
            if y.ndim != 2:
                raise ValueError("per-position counts need per-step targets")
            counts = np.zeros((y.shape[1], k))
            for t in range(y.shape[1]):
                col = y[:, t] if mask is None else y[mask[:, t], t]
                counts[t] = np.bincount(col, minlength=k)
            return counts
        flat = y.reshape(-1) if mask is None else y[mask]
        return np.bincount(flat, minlength=k).astype(np.float64)

    def score(self, predictions: Any, split: str = "test") -> dict[str, float]:
        """Scores of ``predictions`` on ``split`` for this module's kind (``rnnlab.task.KIND_SCORES``):
        regression values in original units, (N, O) or (N, T, O); classification logits or
        log-probabilities, (N, K) or (N, T, K) (normalized here with a log-softmax)."""
        pred = np.asarray(predictions, dtype=np.float64)
        target = self.targets(split)
        mask = self.valid_mask(split)
        if not self.task().classification:
            err = pred - target.reshape(pred.shape)
            if mask is not None:
                err = err[mask]
            mse = float(np.mean(err**2))
            return {"mse": mse, "mae": float(np.mean(np.abs(err))), "rmse": math.sqrt(mse)}
        return classification_scores(pred, target, mask, self.kind)

    def describe(self) -> dict[str, int]:
        info = super().describe()
        x = self.splits["train"][0] if self.splits else None
        if x is not None:
            info["steps"] = int(x.shape[1])
        return info


def classification_scores(
    logits: np.ndarray, target: np.ndarray, mask: np.ndarray | None, kind: str
) -> dict[str, float]:
    """Cross-entropy (nats), accuracy and, per kind, macro F1 (sequence classification) or bits per
    token and perplexity (language models) of ``logits`` (..., K) against class ids ``target`` (...),
    at ``mask``'s steps. Accuracy and F1 from torchmetrics."""
    from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

    k = logits.shape[-1]
    z = torch.from_numpy(np.ascontiguousarray(logits).reshape(-1, k))
    y = torch.from_numpy(np.asarray(target).reshape(-1)).long()
    if mask is not None:
        keep = torch.from_numpy(mask.reshape(-1))
        z, y = z[keep], y[keep]
    logp = torch.log_softmax(z, dim=-1)
    nll = float(-logp.gather(1, y[:, None]).mean())
    scores = {
        "loss": nll,
        "accuracy": float(multiclass_accuracy(logp, y, num_classes=k, average="micro")),
    }
    if kind == "classification":
        scores["f1"] = float(multiclass_f1_score(logp, y, num_classes=k, average="macro"))
    if kind == "language_model":
        scores["bpc"] = nll / math.log(2)
        scores["perplexity"] = math.exp(min(nll, 700.0))
    return scores
