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


@dataclass
class MeanConfig(BaselineConfig):
    """The training targets' mean, whatever the input: the adding problem's 0.167 (predicting 1.0)."""

    name: str = "mean"
    impl: ClassVar[str] = "rnnlab_plugins.baselines.tasks:Mean"


@dataclass
class MajorityConfig(BaselineConfig):
    """The training split's class frequencies, whatever the input: the majority class's accuracy,
    the class prior's cross-entropy."""

    name: str = "majority"
    impl: ClassVar[str] = "rnnlab_plugins.baselines.tasks:Majority"


@dataclass
class MemorylessConfig(BaselineConfig):
    """Per-step classification: each position's class frequencies in training, ignoring the inputs
    (the copy task's memoryless baseline, 10 ln 8 / (T + 20))."""

    name: str = "memoryless"
    impl: ClassVar[str] = "rnnlab_plugins.baselines.tasks:Memoryless"


@dataclass
class UnigramConfig(BaselineConfig):
    """Language models: every next token drawn from the training text's token frequencies."""

    name: str = "unigram"
    impl: ClassVar[str] = "rnnlab_plugins.baselines.tasks:Unigram"
