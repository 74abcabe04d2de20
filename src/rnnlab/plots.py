"""Forecast plots of a run on a series: the test split's actual values beside the model's and the best
baseline's forecasts, and the error by horizon step for the model and every baseline.

Importing this module is light: matplotlib is imported by :func:`forecast_plots` only. The figures are
drawn on matplotlib's Agg canvas directly (no pyplot), so nothing changes the process's backend and no
figure outlives the call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

# at most this many test origins in forecast.png (the last ones): more lines would not read
MAX_POINTS = 1000
MODEL = "model"
MARKERS = ("o", "s", "^", "v", "D", "P", "X", "<", ">")


def forecast_plots(
    out_dir: Path,
    dm: Any,
    model_pred: np.ndarray,
    baseline_preds: dict[str, np.ndarray],
    best: str | None,
    title: str = "",
) -> list[Path]:
    """Write ``forecast.png`` and ``error_by_step.png`` under ``out_dir``; return their paths.

    ``dm``: the run's :class:`rnnlab.series.SeriesDataModule`. ``model_pred`` and each of
    ``baseline_preds``: (N, horizon) in original units, aligned with ``dm.targets("test")`` and
    ``dm.origins("test")``. ``best``: the best baseline's name (drawn in forecast.png), or None.
    ``title``: a prefix for both titles (the run's name, say)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = np.asarray(dm.targets("test"), dtype=np.float64)
    origins = np.asarray(dm.origins("test"))
    horizon = targets.shape[1]
    preds = {MODEL: _shaped(model_pred, targets, MODEL)}
    preds.update({name: _shaped(p, targets, name) for name, p in baseline_preds.items()})
    scores = {name: dm.score(p, "test") for name, p in preds.items()}
    units = getattr(dm, "units", "") or ""
    unit_suffix = f" ({units})" if units else ""
    prefix = f"{title}: " if title else ""
    best = best if best in preds and best != MODEL else None

    # 1. the one-step-ahead forecast at each of the last test origins
    fig = Figure(figsize=(12, 4.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    shown = slice(max(0, len(origins) - MAX_POINTS), None)
    x = origins[shown]
    ax.plot(x, targets[shown, 0], color="black", linewidth=1.0, label="actual")
    # the legend: the RMSE of what is drawn (step 1); the title: over every step, as in the results
    step1 = "RMSE" if horizon == 1 else "step-1 RMSE"
    ax.plot(x, preds[MODEL][shown, 0], color="C0", linewidth=0.8, label=f"model ({step1} {_fmt_step1(scores[MODEL])})")
    if best is not None:
        ax.plot(
            x,
            preds[best][shown, 0],
            color="C1",
            linewidth=0.8,
            linestyle="--",
            label=f"{best}, best baseline ({step1} {_fmt_step1(scores[best])})",
        )
    ahead = "one step ahead" if horizon == 1 else f"step 1 of {horizon} ahead"
    steps = "" if horizon == 1 else f" over {horizon} steps"
    unit_word = f" {units}" if units else ""
    rmse_line = f"test RMSE{steps}: model {_fmt(scores[MODEL])}{unit_word}"
    if best is not None:
        rmse_line += f", {best} (best baseline) {_fmt(scores[best])}{unit_word}"
    last = f"last {len(x)} of {len(origins)}" if len(x) < len(origins) else f"all {len(x)}"
    ax.set_title(f"{prefix}test forecasts {ahead} ({last} origins)\n{rmse_line}", fontsize=10)
    ax.set_xlabel("time step (row of the series)")
    ax.set_ylabel(f"{_target_name(dm)}{unit_suffix}")
    ax.grid(True, linewidth=0.3, alpha=0.5)
    ax.legend(loc="best", fontsize=8, frameon=False)
    fig.tight_layout()
    forecast_path = out_dir / "forecast.png"
    fig.savefig(forecast_path)

    # 2. RMSE by horizon step, the model and every baseline
    fig = Figure(figsize=(7, 4.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    names = [MODEL, *sorted(baseline_preds, key=lambda n: _sort_key(scores[n]["rmse"]))]
    labels = {n: f"{n} (best baseline)" if n == best else n for n in names}
    if horizon == 1:
        # one value each: horizontal bars, lowest at the top, the model highlighted
        order = sorted(names, key=lambda n: _sort_key(scores[n]["rmse"]), reverse=True)
        values = [scores[n]["rmse"] for n in order]
        colors = ["C0" if n == MODEL else ("C1" if n == best else "0.6") for n in order]
        bars = ax.barh([labels[n] for n in order], np.nan_to_num(values, nan=0.0), color=colors, height=0.6)
        ax.bar_label(bars, labels=[_fmt(v) for v in values], padding=3, fontsize=8)
        ax.set_xlabel(f"test RMSE, one step ahead{unit_suffix}")
        ax.margins(x=0.15)
        ax.grid(True, axis="x", linewidth=0.3, alpha=0.5)
    else:
        k = np.arange(1, horizon + 1)
        for i, n in enumerate(names):
            values = [scores[n][f"rmse_step{j}"] for j in k]
            color = "C0" if n == MODEL else ("C1" if n == best else f"C{2 + i % 8}")
            ax.plot(
                k,
                values,
                marker=MARKERS[i % len(MARKERS)],  # baselines that coincide still show apart
                markersize=4,
                linewidth=2.0 if n == MODEL else 1.0,
                color=color,
                label=labels[n],
            )
        ax.set_xlabel("forecast step ahead")
        ax.set_ylabel(f"test RMSE{unit_suffix}")
        ax.set_xticks(k if horizon <= 24 else np.unique(np.linspace(1, horizon, 12).round().astype(int)))
        ax.grid(True, linewidth=0.3, alpha=0.5)
        ax.legend(loc="best", fontsize=8, frameon=False)
    ax.set_title(f"{prefix}test RMSE by forecast step", fontsize=10)
    fig.tight_layout()
    error_path = out_dir / "error_by_step.png"
    fig.savefig(error_path)
    return [forecast_path, error_path]


def _shaped(pred: np.ndarray, targets: np.ndarray, name: str) -> np.ndarray:
    out = np.asarray(pred, dtype=np.float64)
    if out.size != targets.size:
        raise ValueError(f"{name}: predictions {out.shape} do not match the test targets {targets.shape}")
    return out.reshape(targets.shape)


def _fmt(value: Any) -> str:
    """An RMSE (or a score dict's) to 3 significant digits."""
    v = value["rmse"] if isinstance(value, dict) else value
    return f"{v:.3g}" if np.isfinite(v) else "n/a"


def _fmt_step1(scores: dict[str, float]) -> str:
    return _fmt(scores.get("rmse_step1", scores["rmse"]))


def _sort_key(value: float) -> float:
    return value if np.isfinite(value) else float("inf")


def _target_name(dm: Any) -> str:
    columns = getattr(dm, "columns", None)
    return str(columns[0]) if columns else "target"
