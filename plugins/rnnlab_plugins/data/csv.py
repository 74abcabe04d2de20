"""The user's own CSV file: forecast ``target`` from its own past and the ``features`` columns."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from rnnlab.errors import ConfigError
from rnnlab.series import SeriesDataModule

log = logging.getLogger(__name__)


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

    def _warn_if_unsorted(self, frame: pd.DataFrame) -> None:
        """Rows are time steps in file order; a date column that goes backwards says they are not."""
        for column in frame.columns:
            if pd.api.types.is_numeric_dtype(frame[column]):
                continue
            as_time = pd.to_datetime(frame[column], errors="coerce", format="mixed")
            if as_time.notna().all() and not as_time.is_monotonic_increasing:
                log.warning(
                    "%s: column %r holds dates out of order; rows are read in file order (set data.sort_by=%s)",
                    self.path,
                    column,
                    column,
                )
                return

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
            order = frame[self.sort_by]
            as_time = pd.to_datetime(order, errors="coerce", format="mixed")
            key = as_time if as_time.notna().all() else order  # dates sort as dates, not as text
            duplicates = int(key.duplicated().sum())
            if duplicates:
                log.warning(
                    "%s: %d rows repeat a %r value; their order is the file's (check for duplicated rows)",
                    self.path,
                    duplicates,
                    self.sort_by,
                )
            frame = frame.iloc[key.argsort(kind="stable").to_numpy()]
        else:
            self._warn_if_unsorted(frame)
        values = frame[columns].apply(pd.to_numeric, errors="coerce")
        bad = values.columns[values.isna().any()].tolist()
        if bad:
            rows = int(values[bad[0]].isna().sum())
            raise ConfigError(
                f"data.{'target' if bad[0] == self.target else 'features'}",
                f"column {bad[0]!r} has {rows} empty or non-numeric values",
            )
        return values.to_numpy(dtype=np.float64), columns
