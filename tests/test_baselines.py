"""Each forecasting baseline on a synthetic series whose best forecast is known, and the scores
(MASE, sMAPE) against values worked out by hand. Fast: numpy only, no training."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from rnnlab_plugins.baselines.forecast import LinearAR

from rnnlab import forecast
from rnnlab.baseline import Baseline, best, evaluate
from rnnlab.registry import baselines
from rnnlab.series import SeriesDataModule

NAMES = ("persistence", "seasonal_naive", "drift", "linear_ar")

# SeriesConfig's fields, which a SeriesDataModule takes as keywords (no defaults of its own)
OPTIONS: dict[str, Any] = {
    "window": 8,
    "horizon": 1,
    "stride": 1,
    "val_fraction": 0.15,
    "test_fraction": 0.3,
    "scaling": "standard",
    "season": 0,
    "batch_size": 64,
    "eval_batch_size": 512,
}


class ArrayDataModule(SeriesDataModule):
    """The series it is given."""

    units = "u"

    def __init__(self, values: np.ndarray, **options: Any) -> None:
        super().__init__(**{**OPTIONS, **options})
        self.values = np.asarray(values, dtype=np.float64)

    def load(self) -> tuple[np.ndarray, list[str]]:
        return self.values, ["y"]


def fitted(name: str, dm: SeriesDataModule, **kwargs: Any) -> Baseline:
    baseline = baselines.create(name, **kwargs)
    assert baseline.why_not(dm) is None
    baseline.fit(dm)
    return baseline


# -- AR(2): the linear autoregression reaches the noise --------------------------------------------

PHI = (-0.5, 0.3)  # stationary: phi1 + phi2 < 1, phi2 - phi1 < 1, |phi2| < 1
SIGMA = 0.5
LEVEL = 10.0


def ar2(n: int = 4000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    burn = 200
    noise = SIGMA * rng.standard_normal(n + burn)
    y = np.zeros(n + burn)
    for t in range(2, n + burn):
        y[t] = PHI[0] * y[t - 1] + PHI[1] * y[t - 2] + noise[t]
    return LEVEL + y[burn:]


@pytest.fixture(scope="module")
def ar_series() -> np.ndarray:
    return ar2()


def test_linear_ar_reaches_the_noise_on_an_ar2_process(ar_series: np.ndarray) -> None:
    dm = ArrayDataModule(ar_series)
    linear = dm.score(fitted("linear_ar", dm).predict(dm))
    persistence = dm.score(fitted("persistence", dm).predict(dm))
    # the oracle: the true coefficients, on the same test windows; its RMSE is the noise's there
    y, t = dm.history()[:, 0], dm.origins("test")
    oracle_pred = LEVEL + PHI[0] * (y[t - 1] - LEVEL) + PHI[1] * (y[t - 2] - LEVEL)
    oracle = dm.score(oracle_pred[:, None])
    assert oracle["rmse"] == pytest.approx(SIGMA, rel=0.05)
    assert linear["rmse"] == pytest.approx(oracle["rmse"], rel=0.02)
    assert linear["rmse"] == pytest.approx(SIGMA, rel=0.05)
    assert linear["rmse"] < 0.5 * persistence["rmse"]  # persistence: about 2.8 sigma on this process


def test_linear_ar_multi_step_errors_follow_the_ar2_theory(ar_series: np.ndarray) -> None:
    dm = ArrayDataModule(ar_series, horizon=3)
    result = dm.score(fitted("linear_ar", dm).predict(dm))
    persistence = dm.score(fitted("persistence", dm).predict(dm))
    assert {f"{m}_step{k}" for m in ("mae", "rmse") for k in (1, 2, 3)} <= result.keys()
    # The optimal k-step error: sigma * sqrt(psi_0^2 + ... + psi_{k-1}^2), psi the MA(inf) weights
    psi1 = PHI[0]  # -0.5
    psi2 = PHI[0] ** 2 + PHI[1]  # 0.55
    optimal = (SIGMA, SIGMA * np.sqrt(1 + psi1**2), SIGMA * np.sqrt(1 + psi1**2 + psi2**2))
    steps = [result[f"rmse_step{k}"] for k in (1, 2, 3)]
    for got, want in zip(steps, optimal, strict=True):
        assert got == pytest.approx(want, rel=0.06)
    assert steps[0] < steps[1] < steps[2]
    for k in (1, 2, 3):
        assert result[f"rmse_step{k}"] < persistence[f"rmse_step{k}"]


# -- seasonal naive on a pure season -----------------------------------------------------------

PATTERN = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0])  # period 7, no noise


@pytest.mark.parametrize("horizon", [1, 3, 10])  # 10: more than one season ahead
def test_seasonal_naive_is_exact_on_a_pure_season(horizon: int) -> None:
    dm = ArrayDataModule(np.tile(PATTERN, 40), season=7, window=10, horizon=horizon)
    baseline = fitted("seasonal_naive", dm)
    pred = baseline.predict(dm)
    np.testing.assert_array_equal(pred, dm.targets("test"))
    assert dm.score(pred)["rmse"] == 0.0
    assert "7" in baseline.describe()
    # a wrong season: the constructor's season= (baseline.seasonal_naive.season) overrides the data's
    wrong = fitted("seasonal_naive", dm, season=5)
    assert dm.score(wrong.predict(dm))["rmse"] > 0.5
    assert "5" in wrong.describe()


def test_seasonal_naive_needs_a_season() -> None:
    no_season = ArrayDataModule(np.tile(PATTERN, 40), season=0, window=10)
    reason = baselines.create("seasonal_naive").why_not(no_season)
    assert reason and "season" in reason
    # the baseline's own season applies where the data has none
    own = fitted("seasonal_naive", no_season, season=7)
    assert dm_rmse(no_season, own) == 0.0
    # a season longer than the training part
    too_long = baselines.create("seasonal_naive", season=500).why_not(no_season)
    assert too_long and "longer" in too_long
    # not a series at all
    assert baselines.create("seasonal_naive").why_not(object())


def dm_rmse(dm: SeriesDataModule, baseline: Baseline) -> float:
    return dm.score(baseline.predict(dm))["rmse"]


def test_seasonal_naive_predict_without_fit_never_reads_the_targets(ar_series: np.ndarray) -> None:
    """Without fit(), the lag must still be the season (was 0: the prediction was the target itself)."""
    dm = ArrayDataModule(ar_series, season=7)
    unfitted = baselines.create("seasonal_naive")
    np.testing.assert_array_equal(unfitted.predict(dm), fitted("seasonal_naive", dm).predict(dm))
    assert dm_rmse(dm, unfitted) > SIGMA
    with pytest.raises(ValueError, match="season"):
        baselines.create("seasonal_naive").predict(ArrayDataModule(ar_series, season=0))


# -- drift and persistence on a ramp -----------------------------------------------------------

A, B = 5.0, 0.5  # y = A + B t, exact in binary floating point


@pytest.mark.parametrize("horizon", [1, 4])
def test_drift_is_exact_on_a_ramp_and_persistence_lags_by_b_per_step(horizon: int) -> None:
    dm = ArrayDataModule(A + B * np.arange(200.0), horizon=horizon)
    drift = fitted("drift", dm).predict(dm)
    np.testing.assert_allclose(drift, dm.targets("test"), rtol=0, atol=1e-12)
    assert dm.score(drift)["rmse"] == pytest.approx(0.0, abs=1e-12)
    persistence = dm.score(fitted("persistence", dm).predict(dm))
    # the last value is B * k below the target k steps ahead, at every origin
    if horizon == 1:
        assert persistence["mae"] == persistence["rmse"] == pytest.approx(B, rel=1e-12)
    else:
        for k in range(1, horizon + 1):
            assert persistence[f"mae_step{k}"] == pytest.approx(B * k, rel=1e-12)
            assert persistence[f"rmse_step{k}"] == pytest.approx(B * k, rel=1e-12)
        # overall: the mean of B * k over k = 1..4 is 1.25; the RMSE sqrt(mean (B k)^2) = sqrt(1.875)
        assert persistence["mae"] == pytest.approx(B * (1 + 2 + 3 + 4) / 4, rel=1e-12)
        assert persistence["rmse"] == pytest.approx(np.sqrt(B**2 * (1 + 4 + 9 + 16) / 4), rel=1e-12)


# -- MASE and sMAPE worked out by hand ---------------------------------------------------------

# 30 points; val_fraction = test_fraction = 0.2: rows 0-17 train, 18-23 val, 24-29 test.
TRAIN = [10, 12, 11, 15, 14, 14, 18, 17, 20, 19, 22, 21, 25, 24, 23, 27, 26, 28]
VAL = [29, 31, 30, 33, 32, 35]
TEST = [34, 37, 36, 38, 40, 39]
ERRORS = [1, -2, 0, 3, -1, 1]  # the "model's" forecast minus the target, one per test row


def hand_dm(season: int) -> ArrayDataModule:
    values = np.array(TRAIN + VAL + TEST, dtype=np.float64)
    return ArrayDataModule(values, window=2, horizon=1, val_fraction=0.2, test_fraction=0.2, season=season)


def test_mase_against_a_hand_computed_scale() -> None:
    dm = hand_dm(season=0)
    dm.setup("fit")  # train_end() is 0 before setup (it does not set the module up, unlike history())
    assert dm.train_end() == 18
    np.testing.assert_array_equal(dm.origins("test"), np.arange(24, 30))
    np.testing.assert_array_equal(dm.targets("test")[:, 0], TEST)
    pred = dm.targets("test") + np.array(ERRORS, dtype=np.float64)[:, None]
    # model MAE: (1 + 2 + 0 + 3 + 1 + 1) / 6 = 8 / 6
    model_mae = 8 / 6
    # no season: the naive forecast's in-sample MAE on the 18 training rows, 17 lag-1 differences:
    #   |12-10| |11-12| |15-11| |14-15| |14-14| |18-14| |17-18| |20-17| |19-20|
    #   = 2 + 1 + 4 + 1 + 0 + 4 + 1 + 3 + 1 = 17
    #   |22-19| |21-22| |25-21| |24-25| |23-24| |27-23| |26-27| |28-26|
    #   = 3 + 1 + 4 + 1 + 1 + 4 + 1 + 2 = 17;  (17 + 17) / 17 = 2
    assert dm.mase_scale() == pytest.approx(2.0)
    result = dm.score(pred)
    assert result["mae"] == pytest.approx(model_mae)
    assert result["mase"] == pytest.approx(model_mae / 2.0)  # 2/3

    # season 4: 14 lag-4 differences on the training rows:
    #   14-10 14-12 18-11 17-15 20-14 19-14 22-18 21-17 25-20 24-19 23-22 27-21 26-25 28-24
    #   = 4 + 2 + 7 + 2 + 6 + 5 + 4 + 4 + 5 + 5 + 1 + 6 + 1 + 4 = 56;  56 / 14 = 4
    seasonal = hand_dm(season=4)
    assert seasonal.mase_scale() == pytest.approx(4.0)
    assert seasonal.score(pred)["mase"] == pytest.approx(model_mae / 4.0)  # 1/3


def test_smape_against_hand_computed_values() -> None:
    dm = hand_dm(season=0)
    pred = dm.targets("test") + np.array(ERRORS, dtype=np.float64)[:, None]
    # 2|e| / (|y| + |y_hat|) per row: targets 34 37 36 38 40 39, forecasts 35 35 36 41 39 40
    terms = [2 * 1 / 69, 2 * 2 / 72, 0 / 72, 2 * 3 / 79, 2 * 1 / 79, 2 * 1 / 79]
    assert dm.score(pred)["smape"] == pytest.approx(100 * sum(terms) / 6)
    # directly: 20/210, 40/380, an exact 50, and 0 for 0 (counted as no error, not 0/0)
    y = np.array([[100.0], [200.0], [50.0], [0.0]])
    y_hat = np.array([[110.0], [180.0], [50.0], [0.0]])
    smape = forecast.scores(y_hat, y, scale=1.0)["smape"]
    assert smape == pytest.approx(100 * (20 / 210 + 40 / 380 + 0 + 0) / 4)  # 5.012...
    # the bound: opposite signs give 200
    assert forecast.scores(np.array([[-1.0]]), np.array([[1.0]]), scale=1.0)["smape"] == pytest.approx(200.0)


# -- every baseline: the same test windows, nothing read from the test split or the future -------


def seasonal_ar(n: int = 1200, seed: int = 1) -> np.ndarray:
    t = np.arange(n, dtype=np.float64)
    return ar2(n, seed) + 2 * np.sin(2 * np.pi * t / 7)


@pytest.mark.parametrize("horizon", [1, 3])
def test_every_baseline_predicts_the_test_windows(horizon: int) -> None:
    dm = ArrayDataModule(seasonal_ar(), season=7, horizon=horizon)
    assert set(NAMES) <= set(baselines.names())
    for name in NAMES:
        baseline = fitted(name, dm)
        pred = baseline.predict(dm)
        assert pred.shape == dm.targets("test").shape, name
        assert np.isfinite(pred).all(), name
        assert baseline.describe(), name
        assert pred.shape == (len(dm.origins("test")), horizon)


def test_linear_ar_does_not_fit_on_the_test_split() -> None:
    values = seasonal_ar()
    dm = ArrayDataModule(values, season=7, horizon=3)
    dm.setup("fit")
    first_test_row = int(dm.origins("test")[0])
    assert first_test_row >= dm.train_end()
    changed = values.copy()
    changed[first_test_row:] += 50 * np.random.default_rng(7).standard_normal(len(values) - first_test_row)
    a = fitted("linear_ar", dm)
    b = fitted("linear_ar", ArrayDataModule(changed, season=7, horizon=3))
    assert isinstance(a, LinearAR) and isinstance(b, LinearAR)
    np.testing.assert_array_equal(a.coef, b.coef)
    assert a.alpha == b.alpha


@pytest.mark.parametrize("horizon", [1, 3])
def test_predictions_at_an_origin_read_only_earlier_rows(horizon: int) -> None:
    values = seasonal_ar()
    dm = ArrayDataModule(values, season=7, horizon=horizon)
    origins = dm.origins("test")
    i = len(origins) // 2
    t = int(origins[i])
    changed = values.copy()
    changed[t:] += 50 * np.random.default_rng(3).standard_normal(len(values) - t)
    other = ArrayDataModule(changed, season=7, horizon=horizon)
    for name in NAMES:
        before = fitted(name, dm).predict(dm)
        after = fitted(name, other).predict(other)
        # every origin up to t reads rows before t only: identical; a later one sees the change
        np.testing.assert_array_equal(before[: i + 1], after[: i + 1], err_msg=name)
        assert not np.array_equal(before[i + 1 :], after[i + 1 :]), name


# -- evaluate and best -------------------------------------------------------------------------


def test_evaluate_skips_what_does_not_apply_and_best_picks_the_lowest() -> None:
    dm = ArrayDataModule(A + B * np.arange(200.0), horizon=2, season=0)
    results = evaluate({name: baselines.create(name) for name in NAMES}, dm)
    assert set(results) == {"persistence", "drift", "linear_ar"}  # no season: seasonal naive skipped
    assert results["drift"]["rmse"] == pytest.approx(0.0, abs=1e-12)
    assert results["persistence"]["rmse"] == pytest.approx(np.sqrt(B**2 * (1 + 4) / 2))
    assert best(results, "rmse") == "drift"
    assert best(results, "rmse_step2") == "drift"
    # NaN and missing metrics are passed over; nothing finite: None
    assert best({"a": {"rmse": float("nan")}, "b": {"rmse": 2.0}, "c": {}, "d": {"rmse": 3.0}}, "rmse") == "b"
    assert best({"a": {"rmse": float("nan")}}, "rmse") is None
    assert best({}, "rmse") is None


def test_evaluate_on_a_data_module_not_yet_set_up() -> None:
    """evaluate() before anyone called setup(): every baseline still applies and fits (linear AR read
    empty splits, seasonal naive compared its season with a training part of 0 rows)."""
    values = seasonal_ar()
    results = evaluate({name: baselines.create(name) for name in NAMES}, ArrayDataModule(values, season=7))
    assert set(results) == set(NAMES)
    ready = ArrayDataModule(values, season=7)
    ready.setup("fit")
    assert results == evaluate({name: baselines.create(name) for name in NAMES}, ready)
    assert best(results, "rmse") == "linear_ar"
