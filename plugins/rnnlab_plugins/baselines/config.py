"""Baseline schemas. Light: no torch, no numpy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rnnlab.schemas import BaselineConfig, check_range


@dataclass
class PersistenceConfig(BaselineConfig):
    """Naive persistence: every future step equals the last observed value."""

    name: str = "persistence"
    impl: ClassVar[str] = "rnnlab_plugins.baselines.forecast:Persistence"


@dataclass
class SeasonalNaiveConfig(BaselineConfig):
    """Seasonal naive: the value one season earlier (same hour yesterday for hourly data)."""

    name: str = "seasonal_naive"
    season: int = 0  # 0: the data module's season (data.season)
    impl: ClassVar[str] = "rnnlab_plugins.baselines.forecast:SeasonalNaive"

    def __post_init__(self) -> None:
        check_range(self, "season", ge=0)


@dataclass
class DriftConfig(BaselineConfig):
    """Drift: the last value plus the average change per step over the history seen so far."""

    name: str = "drift"
    impl: ClassVar[str] = "rnnlab_plugins.baselines.forecast:Drift"


@dataclass
class LinearARConfig(BaselineConfig):
    """A linear autoregression on the model's own windows: ridge regression in closed form, fitted on
    the training windows, its penalty chosen on the validation windows."""

    name: str = "linear_ar"
    impl: ClassVar[str] = "rnnlab_plugins.baselines.forecast:LinearAR"
