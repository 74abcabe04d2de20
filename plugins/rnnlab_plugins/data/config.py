"""Data module schemas. Light: no torch, no pandas."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from omegaconf import MISSING

from rnnlab.errors import ConfigError
from rnnlab.schemas import SeriesConfig, check_choice, check_range


@dataclass
class TemperatureConfig(SeriesConfig):
    """Hourly air temperature in 2010 (8,759 points, degrees F) from the vega_datasets package."""

    name: str = "temperature"
    city: str = "sf"
    batch_size: int = 128  # 8,759 points: 128 trains as well as 64 in about half the time
    season: int = 24  # a day of hours
    impl: ClassVar[str] = "rnnlab_plugins.data.temperature:TemperatureDataModule"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self, "city", ("sf", "seattle"))


@dataclass
class ElectricityConfig(SeriesConfig):
    """Half-hourly electricity demand of England and Wales, summer 2000 (4,032 points, MW), from the
    pmdarima package (Taylor 2003)."""

    name: str = "electricity"
    # a week: linear AR's validation RMSE is 318 / 242 / 198 MW with windows 48 / 96 / 336; an LSTM
    # epoch takes 3.8x longer at 336 than at 96, and the default run still ends in about 2 minutes
    window: int = 336
    # a week of half-hours (R's forecast package keeps the series with seasonal periods 48 and 336):
    # the daily lag misses weekends, its seasonal naive has 3.1x persistence's test RMSE, the weekly 0.67x
    season: int = 336
    batch_size: int = 64
    impl: ClassVar[str] = "rnnlab_plugins.data.electricity:ElectricityDataModule"


WEATHER_COLUMNS = ("temp_max", "temp_min", "precipitation", "wind")


@dataclass
class WeatherConfig(SeriesConfig):
    """Seattle's daily weather 2012-2015 (1,461 days) from the vega_datasets package: a multivariate
    series, forecast a week ahead. The target is column ``target``; every ``features`` column is an
    input beside it."""

    name: str = "weather"
    target: str = "temp_max"
    features: list[str] = field(default_factory=lambda: list(WEATHER_COLUMNS))
    window: int = 28  # four weeks of days
    horizon: int = 7  # a week ahead
    season: int = 365  # a year of days: seasonal naive is the same day last year
    batch_size: int = 32
    impl: ClassVar[str] = "rnnlab_plugins.data.weather:WeatherDataModule"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self, "target", WEATHER_COLUMNS)
        for column in self.features:
            if column not in WEATHER_COLUMNS:
                raise ConfigError("features", f"no column {column!r} in Seattle's daily weather", WEATHER_COLUMNS)


@dataclass
class SineConfig(SeriesConfig):
    """A synthetic noisy sine wave (several periods mixed), generated from ``seed``."""

    name: str = "sine"
    window: int = 32  # a window of 32 holds most of a period of 50
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
    delimiter: str = ","  # one character, or by name: comma, semicolon, tab, pipe
    impl: ClassVar[str] = "rnnlab_plugins.data.csv:CSVDataModule"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.delimiter = _DELIMITER_NAMES.get(self.delimiter, self.delimiter)
        if len(self.delimiter) != 1:
            raise ConfigError("delimiter", f"must be one character, got {self.delimiter!r}", list(_DELIMITER_NAMES))
        header = read_header(Path(self.path).expanduser(), self.delimiter)
        for key, columns in (
            ("target", [self.target]),
            ("features", list(self.features)),
            ("sort_by", [self.sort_by] if self.sort_by else []),
        ):
            for column in columns:
                if column not in header:
                    raise ConfigError(key, f"no column {column!r} in {Path(self.path).name}{_hint(header)}", header)


_DELIMITER_NAMES = {"comma": ",", "semicolon": ";", "tab": "\t", "pipe": "|"}


def read_header(path: Path, delimiter: str = ",") -> list[str]:
    """The column names as pandas reads them (a UTF-8 byte-order mark is not part of the first name;
    names are stripped of surrounding quotes). Errors name ``path``; an empty file is one."""
    if not path.is_file():
        raise ConfigError("path", f"file not found: {str(path)!r}")
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f, delimiter=delimiter), None)
            has_rows = next(f, None) is not None
    except UnicodeDecodeError:
        raise ConfigError("path", f"{path.name} is not UTF-8 text; save it as UTF-8 CSV") from None
    if not header or not any(h.strip() for h in header):
        raise ConfigError("path", f"{path.name} is empty; it needs a header row and one row per time step")
    if not has_rows:
        raise ConfigError("path", f"{path.name} has a header but no data rows")
    return [h.strip() for h in header]


def _hint(header: list[str]) -> str:
    """Why a column is missing when the file uses another delimiter than ``data.delimiter``."""
    if len(header) == 1:
        for sep, name in ((";", "semicolon"), ("\t", "tab"), ("|", "pipe")):
            if sep in header[0]:
                return f" (the header looks {name}-separated: set data.delimiter={name})"
    return ""
