"""The user's own CSV file: forecast ``target`` from its own past and the ``features`` columns."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from rnnlab.errors import ConfigError
from rnnlab.series import SeriesDataModule


class CSVDataModule(SeriesDataModule):
    def __init__(
        self,
        *,
        path: str,
        target: str,
        features: list[str],
        sort_by: str | None,
        delimiter: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.path = path
        self.target = target
        self.features = [c for c in features if c != target]
        self.sort_by = sort_by
        self.delimiter = delimiter

    def load(self) -> tuple[np.ndarray, list[str]]:
        try:
            # utf-8-sig: a byte-order mark is not part of the first column's name
            frame = pd.read_csv(self.path, sep=self.delimiter, encoding="utf-8-sig")
        except FileNotFoundError:
            raise ConfigError("data.path", f"file not found: {self.path!r}") from None
        except (pd.errors.ParserError, UnicodeDecodeError) as e:
            raise ConfigError("data.path", f"cannot parse {self.path!r} as CSV: {e}") from None
        frame.columns = [str(c).strip() for c in frame.columns]  # as the schema's header check reads them
        columns = [self.target, *self.features]
        missing = [c for c in columns + ([self.sort_by] if self.sort_by else []) if c not in frame.columns]
        if missing:
            raise ConfigError("data.target", f"no column {missing[0]!r} in {self.path}", list(frame.columns))
        if self.sort_by:
            frame = frame.sort_values(self.sort_by, kind="stable")
        values = frame[columns].apply(pd.to_numeric, errors="coerce")
        bad = values.columns[values.isna().any()].tolist()
        if bad:
            rows = int(values[bad[0]].isna().sum())
            raise ConfigError(
                f"data.{'target' if bad[0] == self.target else 'features'}",
                f"column {bad[0]!r} has {rows} empty or non-numeric values",
            )
        return values.to_numpy(dtype=np.float64), columns
