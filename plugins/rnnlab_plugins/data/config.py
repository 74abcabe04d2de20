"""Data module schemas. Light: no torch, no pandas."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from omegaconf import MISSING

from rnnlab.errors import ConfigError
from rnnlab.schemas import PluginConfig, check_choice, check_range


@dataclass
class SeriesConfig(PluginConfig):
    """Sliding windows over a series: ``window`` steps in, the next ``horizon`` target values out.

    The series is split chronologically (train | val | test); the scaler is fitted on train only.
    """

    window: int = 48
    horizon: int = 1
    stride: int = 1
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    scaling: str = "standard"
    batch_size: int = 64
    eval_batch_size: int = 512

    def __post_init__(self) -> None:
        check_range(self, "window", ge=1)
        check_range(self, "horizon", ge=1)
        check_range(self, "stride", ge=1)
        check_range(self, "val_fraction", gt=0, lt=1)
        check_range(self, "test_fraction", gt=0, lt=1)
        if self.val_fraction + self.test_fraction >= 1:
            raise ConfigError(
                "test_fraction",
                f"val_fraction + test_fraction must be < 1, got {self.val_fraction} + {self.test_fraction}",
            )
        check_choice(self, "scaling", ("standard", "minmax", "none"))
        check_range(self, "batch_size", ge=1)
        check_range(self, "eval_batch_size", ge=1)


@dataclass
class TemperatureConfig(SeriesConfig):
    """Hourly air temperature in 2010 (8,759 points, degrees F) from the vega_datasets package."""

    name: str = "temperature"
    city: str = "sf"
    impl: ClassVar[str] = "rnnlab_plugins.data.temperature:TemperatureDataModule"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self, "city", ("sf", "seattle"))


@dataclass
class SineConfig(SeriesConfig):
    """A synthetic noisy sine wave (several periods mixed), generated from ``seed``."""

    name: str = "sine"
    length: int = 4000
    period: float = 50.0
    noise: float = 0.1
    seed: int = 0
    impl: ClassVar[str] = "rnnlab_plugins.data.sine:SineDataModule"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self, "length", ge=10)
        check_range(self, "period", gt=0)
        check_range(self, "noise", ge=0)


@dataclass
class CSVConfig(SeriesConfig):
    """The user's own CSV file: forecast column ``target`` from it and the ``features`` columns."""

    name: str = "csv"
    path: str = MISSING
    target: str = MISSING
    features: list[str] = field(default_factory=list)
    sort_by: str | None = None  # a date/time column to order rows by; dropped from the inputs
    impl: ClassVar[str] = "rnnlab_plugins.data.csv:CSVDataModule"

    def __post_init__(self) -> None:
        super().__post_init__()
        path = Path(self.path).expanduser()
        if not path.is_file():
            raise ConfigError("path", f"file not found: {str(path)!r}")
        with path.open(newline="") as f:
            header = next(csv.reader(f), [])
        for key, columns in (
            ("target", [self.target]),
            ("features", list(self.features)),
            ("sort_by", [self.sort_by] if self.sort_by else []),
        ):
            for column in columns:
                if column not in header:
                    raise ConfigError(key, f"no column {column!r} in {path.name}", header)
