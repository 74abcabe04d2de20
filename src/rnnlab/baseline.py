"""The interface every baseline plugin implements: a reference method scored beside the model.

A baseline is fitted on the training (and, to choose its settings, validation) split of the run's
data module and predicts the test split's targets in the data's original units; the data module
scores its predictions with the same code as the model's (``dm.score``), on the same test windows.
Every results table, MLflow run (``baseline/<name>/test/<metric>``) and sweep summary shows it.

**Constructor contract.** Built as ``Impl(**schema.kwargs())`` from a schema subclassing
:class:`rnnlab.schemas.BaselineConfig`, registered under the entry-point group ``rnnlab.baselines``::

    [project.entry-points."rnnlab.baselines"]
    mean = "my_pkg.baselines:MeanConfig"

A baseline says whether it applies to a run's data (``why_not``) instead of failing: the default
list names every built-in baseline, and each task kind keeps those that fit it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


class Baseline:
    """``why_not(dm)`` -> None or the reason it does not apply; ``fit(dm)``; ``predict(dm, split)``."""

    #: Shown in the results table, e.g. "seasonal naive (same step 48 earlier)"; ``describe`` may refine it.
    label = ""
    #: The task kinds it serves (``rnnlab.task.KINDS``); () for every kind. A baseline of another
    #: kind is left out silently (the default list names every built-in baseline of every kind);
    #: ``why_not`` explains the cases within its kinds where it still cannot apply.
    kinds: tuple[str, ...] = ()

    def serves(self, kind: str) -> bool:
        """Whether this baseline is one for tasks of ``kind`` at all."""
        return not self.kinds or kind in self.kinds

    def why_not(self, dm: Any) -> str | None:
        """None when the baseline applies to ``dm``; otherwise a short reason (logged, not raised)."""
        return None

    def fit(self, dm: Any) -> None:
        """Learn from the training split (and choose settings on the validation split). Never the test split."""

    def predict(self, dm: Any, split: str = "test") -> np.ndarray:
        """Predictions for ``split``'s targets as ``dm.score`` takes them: regression values in
        original units, shaped like ``dm.targets(split)``; log-probabilities (..., K) for classes."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line for the results table: what the baseline is, with the settings it chose."""
        return self.label or type(self).__name__


@dataclass
class Outcome:
    """What :func:`run` gives: each applicable baseline's predictions, scores and description, and
    why each other one of the task's kind does not apply."""

    predictions: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)
    not_applicable: dict[str, str] = field(default_factory=dict)


def run(baselines: dict[str, Baseline], dm: Any, split: str = "test") -> Outcome:
    """Fit each baseline that serves ``dm``'s task kind and applies to it, and score its predictions
    of ``split`` with ``dm.score``. Baselines of another kind are left out silently; one that does
    not apply is recorded with its reason; one that fails is an error, like the model."""
    out = Outcome()
    kind = dm.task().kind if baselines else ""
    for name, baseline in baselines.items():
        if not baseline.serves(kind):
            continue
        reason = baseline.why_not(dm)
        if reason is not None:
            out.not_applicable[name] = reason
            continue
        baseline.fit(dm)
        out.predictions[name] = baseline.predict(dm, split)
        out.scores[name] = dm.score(out.predictions[name], split)
        out.descriptions[name] = baseline.describe()
    return out


def evaluate(baselines: dict[str, Baseline], dm: Any, split: str = "test") -> dict[str, dict[str, float]]:
    """{name: {metric: value}} of :func:`run`; the baselines that do not apply are logged."""
    import logging

    out = run(baselines, dm, split)
    for name, reason in out.not_applicable.items():
        logging.getLogger(__name__).info("baseline %s does not apply: %s", name, reason)
    return out.scores


def best(results: dict[str, dict[str, float]], metric: str) -> str | None:
    """The name of the baseline with the best finite ``metric`` (the highest accuracy, the lowest
    error; ``rnnlab.task.higher_is_better``), or None."""
    from rnnlab.task import higher_is_better

    finite = {n: r[metric] for n, r in results.items() if metric in r and np.isfinite(r[metric])}
    if not finite:
        return None
    pick = max if higher_is_better(metric) else min
    return pick(finite, key=finite.__getitem__)


def verdict(model: float, results: dict[str, dict[str, float]], metric: str, label: str = "the model") -> str:
    """One line: which baseline is best on ``metric`` and by what ratio ``model`` beats or trails
    it, e.g. "best baseline: linear_ar (rmse 1.2); the model's rmse 1.02 is 1.18x lower: it wins".
    An error is compared by ratio; an accuracy (higher is better) by its error rate, 1 - accuracy."""
    from rnnlab.task import higher_is_better

    name = best(results, metric)
    if name is None:
        return f"no baseline applies to this task's {metric}"
    base = results[name][metric]
    if not np.isfinite(model):
        return f"best baseline: {name} ({metric} {base:.4g}); {label} has no finite {metric}"
    if model == base:
        return f"best baseline: {name} ({metric} {base:.4g}); {label} ties it"
    higher = higher_is_better(metric)
    wins = model > base if higher else model < base
    # an accuracy is compared by its error rate (1 - accuracy): "2x lower" means half the errors
    ours, theirs = (1 - model, 1 - base) if higher else (model, base)
    small, large = (ours, theirs) if wins else (theirs, ours)
    ratio = large / small if small > 0 else float("inf")
    outcome = f"{ratio:.2f}x {'lower: it wins' if wins else 'higher: it loses'}"
    compared = f" (error rate {outcome})" if higher else f" is {outcome}"
    return f"best baseline: {name} ({metric} {base:.4g}); {label}'s {metric} {model:.4g}{compared}"
