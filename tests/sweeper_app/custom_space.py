"""hydra-optuna-sweeper's custom-search-space example, on the toy app's keys: ``y`` within
``max_y_difference_from_x`` of the sampled ``x``, and a new key ``+w`` (so its override adds it)."""

from __future__ import annotations

from typing import Any


def configure(cfg: Any, trial: Any) -> None:
    x_value = trial.params["x"]
    trial.suggest_float("y", x_value - cfg.max_y_difference_from_x, x_value + cfg.max_y_difference_from_x)
    trial.suggest_float("+w", 0.0, 1.0)  # +w: w is a new key
