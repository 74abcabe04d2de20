"""Half-hourly electricity demand of England and Wales, Monday 5 June to Sunday 27 August 2000
(4,032 points, megawatts; Taylor 2003), from the data the pmdarima package ships: no network needed.

``import pmdarima`` takes about 3 s (it imports scikit-learn and statsmodels), and pmdarima keeps this
series as a literal list in the source of ``pmdarima/datasets/taylor.py`` (there is no data file).
So the loader finds that file without executing the package and reads the list with
:func:`ast.literal_eval`: the same values as ``pmdarima.datasets.load_taylor()``, in milliseconds.
"""

from __future__ import annotations

import ast
import importlib.util
from functools import cache
from pathlib import Path

import numpy as np

from rnnlab.errors import ConfigError
from rnnlab.series import SeriesDataModule

N_POINTS = 4032  # 12 weeks of 48 half-hours


@cache
def taylor_values() -> tuple[float, ...]:
    """The 4,032 values of ``pmdarima.datasets.load_taylor()``, read from pmdarima's source."""
    spec = importlib.util.find_spec("pmdarima")  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("data", "data=electricity needs the pmdarima package: pip install pmdarima")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "taylor.py"
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError("data", f"cannot read the electricity series from pmdarima ({path}): {e}") from None
    for node in ast.walk(tree):
        # rslt = np.array([22262, 21756, ...]).astype(dtype)
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.List):
            values = ast.literal_eval(node.args[0])
            if len(values) == N_POINTS:
                return tuple(float(v) for v in values)
    raise ConfigError("data", f"no series of {N_POINTS} values in {path}; is this pmdarima >= 2.0?")


class ElectricityDataModule(SeriesDataModule):
    units = "MW"

    def load(self) -> tuple[np.ndarray, list[str]]:
        return np.asarray(taylor_values(), dtype=np.float64), ["demand"]
