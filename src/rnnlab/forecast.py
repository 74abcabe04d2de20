"""Forecast scores and the closed-form linear autoregression, shared by the model and every baseline.

One function scores every forecast (:func:`scores`), so the model and each baseline are judged on
the same test windows by the same code, in the series' original units. No torch here.
"""

from __future__ import annotations

import numpy as np

# Ridge penalties tried by the linear autoregression, chosen on the validation windows.
RIDGE_ALPHAS: tuple[float, ...] = (0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)


def mase_scale(train_target: np.ndarray, season: int) -> float:
    """The in-sample mean absolute error of the seasonal naive forecast (lag ``season``, or 1 for a
    series without a season) on the training part: MASE's denominator, as in the M4 competition."""
    m = season if 0 < season < len(train_target) else 1
    diffs = np.abs(train_target[m:] - train_target[:-m])
    scale = float(diffs.mean()) if len(diffs) else 0.0
    return scale if scale > 0 else float("nan")


def scores(pred: np.ndarray, target: np.ndarray, scale: float) -> dict[str, float]:
    """``mae``, ``rmse``, ``mase`` (MAE / ``scale``, when ``scale`` > 0) and ``smape`` (percent,
    0-200) over every window and step; with more than one step also ``mae_step<k>`` and
    ``rmse_step<k>`` for k = 1..horizon.

    ``pred`` and ``target``: (N, horizon) in original units."""
    pred = np.asarray(pred, dtype=np.float64).reshape(len(target), -1)
    target = np.asarray(target, dtype=np.float64).reshape(len(target), -1)
    if pred.shape != target.shape:
        raise ValueError(f"predictions {pred.shape} and targets {target.shape} differ in shape")
    err = pred - target
    denominator = np.abs(pred) + np.abs(target)
    ratio = np.divide(2 * np.abs(err), denominator, out=np.zeros_like(err), where=denominator > 0)
    mae = float(np.abs(err).mean())
    out = {
        "mae": mae,
        "rmse": float(np.sqrt((err**2).mean())),
        "smape": float(100 * ratio.mean()),
    }
    if scale > 0:  # not on a training part that never changes (NaN): MASE is undefined there
        out["mase"] = mae / scale
    if err.shape[1] > 1:
        for k in range(err.shape[1]):
            out[f"mae_step{k + 1}"] = float(np.abs(err[:, k]).mean())
            out[f"rmse_step{k + 1}"] = float(np.sqrt((err[:, k] ** 2).mean()))
    return out


def lag_matrix(x: np.ndarray) -> np.ndarray:
    """Windows (N, W, C) as rows of lags with a constant: (N, W * C + 1)."""
    flat = x.reshape(len(x), -1)
    return np.concatenate([flat, np.ones((len(x), 1))], axis=1)


def ridge(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    alphas: tuple[float, ...] = RIDGE_ALPHAS,
) -> tuple[np.ndarray, float]:
    """Closed-form ridge regression of ``y`` (N, H) on the lags of ``x`` (N, W, C), fitted on the
    training windows for each ``alpha`` and kept for the lowest validation MSE.

    Returns the coefficients (W * C + 1, H), the last row the intercept (not penalized), and the
    chosen alpha. Inputs should be on a common scale (the data module's scaled windows)."""
    a = lag_matrix(np.asarray(x_train, dtype=np.float64))
    b = np.asarray(y_train, dtype=np.float64).reshape(len(a), -1)
    av = lag_matrix(np.asarray(x_val, dtype=np.float64))
    bv = np.asarray(y_val, dtype=np.float64).reshape(len(av), -1)
    gram = a.T @ a
    rhs = a.T @ b
    penalty = np.eye(len(gram))
    penalty[-1, -1] = 0.0  # the intercept is not shrunk
    best: tuple[float, np.ndarray, float] | None = None
    for alpha in alphas:
        # lstsq, not solve: alpha 0 on collinear lags (a constant column) must still give an answer
        coef = np.linalg.lstsq(gram + alpha * len(a) * penalty, rhs, rcond=None)[0]
        mse = float(((av @ coef - bv) ** 2).mean())
        if np.isfinite(mse) and (best is None or mse < best[0]):
            best = (mse, coef, alpha)
    if best is None:
        raise ValueError("the linear autoregression has no finite fit on these windows")
    return best[1], best[2]
