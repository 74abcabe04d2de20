"""Schemas: the one home of each plugin's defaults. Light: listing plugins never imports torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from rnnlab.errors import ConfigError
from rnnlab.schemas import PluginConfig, SeriesConfig, check_choice, check_range

WEATHER_FEATURES = ("precipitation", "temp_min", "wind")


@dataclass
class IndRNNConfig(PluginConfig):
    """IndRNN (Li et al. 2018): h_t = act(W x_t + u * h_{t-1} + b), one recurrent weight per unit."""

    name: str = "indrnn"
    hidden_size: int = 64
    num_layers: int = 2
    nonlinearity: str = "relu"
    # |u| <= recurrent_max, applied in every forward pass; None: unconstrained. The paper bounds |u|
    # so that u^T neither explodes nor vanishes over T steps (|u| <= 2^(1/T) for relu).
    recurrent_max: float | None = None
    dropout: float = 0.0  # between stacked layers
    impl: ClassVar[str] = "rnnlab_indrnn.indrnn:IndRNNBackbone"

    def __post_init__(self) -> None:
        check_range(self, "hidden_size", ge=1)
        check_range(self, "num_layers", ge=1)
        check_choice(self, "nonlinearity", ("relu", "tanh"))
        check_range(self, "recurrent_max", gt=0)
        check_range(self, "dropout", ge=0, lt=1)


@dataclass
class SeattleWeatherConfig(SeriesConfig):
    """Daily maximum temperature in Seattle 2012-2015 (1,461 days, degC) from vega_datasets."""

    name: str = "seattle_weather"
    window: int = 28  # four weeks of days
    batch_size: int = 32  # about 1,000 training windows
    features: list[str] = field(default_factory=list)  # extra input columns: precipitation, temp_min, wind
    impl: ClassVar[str] = "rnnlab_indrnn.seattle_weather:SeattleWeatherDataModule"

    def __post_init__(self) -> None:
        super().__post_init__()
        for column in self.features:
            if column not in WEATHER_FEATURES:
                raise ConfigError("features", f"unknown column {column!r}", WEATHER_FEATURES)
