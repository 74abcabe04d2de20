"""Data modules: chronological splits, train-only scaling, persistence baseline, index-sliced batches."""

import numpy as np
import pytest
import torch

from rnnlab.data import TensorBatches
from rnnlab.errors import ConfigError
from rnnlab.registry import baselines, data_modules


def test_tensor_batches_cover_every_sample_once_and_reshuffle():
    x = torch.arange(10).float()
    loader = TensorBatches((x, x * 2), batch_size=4, shuffle=True, seed=1)
    assert len(loader) == 3
    first = torch.cat([b[0] for b in loader])
    second = torch.cat([b[0] for b in loader])
    assert sorted(first.tolist()) == sorted(second.tolist()) == list(range(10))
    assert not torch.equal(first, second)
    assert all(torch.equal(b[1], b[0] * 2) for b in loader)


def test_tensor_batches_shard_evenly_across_ranks():
    x = torch.arange(11).float()
    shards = [list(TensorBatches((x,), 2, shuffle=True, seed=3, rank=r, world_size=3)) for r in range(3)]
    assert len({len(s) for s in shards}) == 1  # every rank steps the same number of times
    seen = torch.cat([b[0] for s in shards for b in s]).tolist()
    assert len(seen) == len(set(seen)) == 9


def _series(module, **kwargs):
    dm = data_modules.create(module, **kwargs)
    dm.setup("fit")
    return dm


def test_splits_are_chronological_and_scaled_on_train_only(tmp_path):
    path = tmp_path / "ramp.csv"
    values = np.arange(1000, dtype=float)
    path.write_text("t,y\n" + "\n".join(f"{i},{v}" for i, v in enumerate(values)))
    dm = _series("csv", path=str(path), target="y", window=10, horizon=3, val_fraction=0.2, test_fraction=0.2)
    (_, ytr), (_, yva), (xte, yte) = (dm.splits[s] for s in ("train", "val", "test"))
    task = dm.task()
    assert (task.input_size, task.output_size, task.target) == (1, 3, "last")
    unscale = lambda t: t.double() * task.target_scale[0] + task.target_shift[0]  # noqa: E731
    # train targets end before val targets start, which end before test targets start
    assert unscale(ytr).max() < unscale(yva).min() and unscale(yva).max() < unscale(yte).min()
    assert unscale(yte).max().item() == pytest.approx(999)
    # the scaler saw the training part (values 0..599) alone
    assert task.target_shift[0] == pytest.approx(np.arange(600).mean())
    # targets follow their window: the next 3 values
    assert torch.allclose(
        unscale(xte[0, -1, 0]) + torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), unscale(yte[0]), atol=1e-4
    )
    # persistence on a ramp of slope 1 with horizon 3 is off by 1, 2, 3
    base = dm.score(baselines.create("persistence").predict(dm, "test"), "test")
    assert base["mae"] == pytest.approx(2.0, abs=1e-4)
    assert base["rmse"] == pytest.approx(np.sqrt((1 + 4 + 9) / 3), abs=1e-4)


def test_csv_uses_feature_columns_and_sorts_by_time(tmp_path):
    path = tmp_path / "multi.csv"
    rows = [f"{i},{np.sin(i / 5):.5f},{i % 7}" for i in range(300)]
    path.write_text("when,load,day\n" + "\n".join(reversed(rows)))
    dm = _series("csv", path=str(path), target="load", features=["day"], sort_by="when", window=12)
    assert dm.task().input_size == 2
    x, _ = dm.splits["train"]
    assert torch.allclose(
        x[0, :, 1] * dm._scale[1] + dm._mean[1],
        torch.tensor([i % 7 for i in range(12)], dtype=torch.float32),
        atol=1e-4,
    )


def test_csv_with_non_numeric_values_names_the_column(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("y\n1\n2\nabc\n" + "\n".join(["3"] * 100))
    with pytest.raises(ConfigError, match=r"data.target: column 'y' has 1 empty or non-numeric"):
        _series("csv", path=str(path), target="y", window=4)


def test_too_short_series_is_a_config_error():
    with pytest.raises(ConfigError, match="too short"):
        _series("sine", length=40, window=32)


def test_temperature_is_the_real_hourly_series():
    dm = _series("temperature", window=24)
    n = sum(len(t[0]) for t in dm.splits.values())
    assert n == 8759 - 24  # every hour of 2010 but the first window is a target once
    assert dm.task().units == "degF"
    persistence = dm.score(baselines.create("persistence").predict(dm, "test"), "test")
    assert 0.3 < persistence["rmse"] < 3.0  # hour-to-hour change in degrees F


def _csv(tmp_path, name, rows, header="t,y"):
    path = tmp_path / name
    path.write_text(header + "\n" + "".join(f"{r}\n" for r in rows))
    return path


def test_values_that_overflow_float32_metrics_are_an_error_before_training(tmp_path):
    path = _csv(tmp_path, "huge.csv", [f"{i},{1e300 * np.sin(i / 5)}" for i in range(300)])
    with pytest.raises(ConfigError, match=r"data: values up to 1e\+300 in 'y' overflow float32 metrics"):
        _series("csv", path=str(path), target="y", window=8)


def test_a_constant_target_is_an_error_and_constant_on_train_a_warning(tmp_path, caplog):
    path = _csv(tmp_path, "const.csv", [f"{i},3" for i in range(300)])
    with pytest.raises(ConfigError, match="data: the target 'y' is constant: nothing to forecast"):
        _series("csv", path=str(path), target="y", window=8)
    path = _csv(tmp_path, "late.csv", [f"{i},{3 if i < 250 else i}" for i in range(300)])
    _series("csv", path=str(path), target="y", window=8)
    assert "constant on the training split" in caplog.text


def test_duplicate_and_unsorted_timestamps_are_warned_about(tmp_path, caplog):
    rows = [f"2020-01-{(i % 28) + 1:02d},{np.sin(i / 5)}" for i in range(300)]
    path = _csv(tmp_path, "dates.csv", rows, header="date,y")
    _series("csv", path=str(path), target="y", window=8)
    assert "column 'date' holds dates out of order" in caplog.text and "data.sort_by=date" in caplog.text
    caplog.clear()
    dm = _series("csv", path=str(path), target="y", window=8, sort_by="date")
    assert "rows repeat a 'date' value" in caplog.text
    assert dm.describe()["n_train"] > 0


def test_sort_by_orders_dates_as_dates_not_text(tmp_path):
    rows = [f"2020-{m}-{d},{m * 100 + d}" for m in (10, 9, 1) for d in range(1, 29)]  # text order != date order
    path = _csv(tmp_path, "months.csv", rows, header="date,y")
    dm = _series("csv", path=str(path), target="y", window=4, sort_by="date", scaling="none")
    x, _ = dm.splits["train"]
    first = x[0, :, 0].tolist()
    assert first == [101.0, 102.0, 103.0, 104.0]  # January first, as dates sort
