"""Synthetic long-memory tasks: the adding problem and copy memory (rnnlab_plugins.data.synthetic)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from rnnlab_plugins.data.synthetic_config import AddingConfig, CopyConfig

from rnnlab.errors import ConfigError
from rnnlab.testing import check_data_module

SMALL = {"n_train": 300, "n_val": 60, "n_test": 50}


def _setup(config):
    from rnnlab.testing import build

    dm = build("data", config, shuffle_seed=0)
    dm.setup("fit")
    return dm


def _rows(x: torch.Tensor) -> set[bytes]:
    """Each sample as bytes, to find it in another split."""
    return {row.tobytes() for row in x.reshape(len(x), -1).numpy()}


# ----------------------------------------------------------------------------- the contract


@pytest.mark.parametrize(
    "config",
    [
        AddingConfig(length=12, **SMALL),
        AddingConfig(length=12, target="running", **SMALL),
        CopyConfig(delay=7, **SMALL),
    ],
    ids=["adding", "adding-running", "copy"],
)
def test_contract(config):
    check_data_module(config)


def test_adding_running_target_is_the_per_step_sum_of_the_marked_values_so_far():
    last, running = _setup(AddingConfig(length=12, **SMALL)), _setup(AddingConfig(length=12, target="running", **SMALL))
    assert (last.task().kind, running.task().kind) == ("regression", "per_step_regression")
    x, y = running.splits["train"][:2]
    assert torch.equal(x, last.splits["train"][0]) and y.shape == (300, 12, 1)
    marked = x[..., 0] * x[..., 1]  # (N, T)
    first = x[..., 1].argmax(1)  # the first marker's step
    for i in range(5):
        expected = torch.tensor([marked[i, : t + 1].sum() for t in range(12)])
        torch.testing.assert_close(y[i, :, 0], expected)
        assert torch.all(y[i, : first[i], 0] == 0)
    torch.testing.assert_close(y[:, -1], last.splits["train"][1])  # the last step is the last-step target
    assert AddingConfig(target="running").metrics() == ("loss", "mse", "mae", "rmse")


def test_the_mean_baseline_of_a_running_target_is_the_mean_at_each_step():
    from rnnlab.baseline import evaluate
    from rnnlab.registry import baselines

    dm = _setup(AddingConfig(length=12, target="running", n_train=4000, n_val=10, n_test=2000))
    mean = baselines.create("mean")
    mean.fit(dm)
    pred = mean.predict(dm, "test")  # (N, T, 1)
    train = dm.targets("train")
    np.testing.assert_allclose(pred[0, :, 0], train[:, :, 0].mean(0))
    assert "at each step" in mean.describe()
    # the running sum grows along the sequence: one overall mean would be far worse
    overall = float(((dm.targets("test") - train.mean()) ** 2).mean())
    assert evaluate({"mean": mean}, dm)["mean"]["mse"] < 0.8 * overall  # 0.128 against 0.207


# ----------------------------------------------------------------------------- adding problem


def test_adding_layout_and_targets():
    length = 15  # odd: the second half is steps 7..14
    dm = _setup(AddingConfig(length=length, **SMALL))
    task = dm.task()
    assert (task.kind, task.input_size, task.output_size, task.loss) == ("regression", 2, 1, "mse")
    assert task.target_scale is None and task.target_shift is None  # unscaled, unitless
    assert set(task.metrics) == {"mse", "mae", "rmse"}
    for split, n in (("train", 300), ("val", 60), ("test", 50)):
        x, y = dm.splits[split]
        assert x.shape == (n, length, 2) and x.dtype == torch.float32
        assert y.shape == (n, 1) and y.dtype == torch.float32
        values, markers = x[..., 0], x[..., 1]
        assert values.min() >= 0 and values.max() < 1
        assert set(markers.unique().tolist()) == {0.0, 1.0}
        assert (markers[:, : length // 2].sum(1) == 1).all() and (markers[:, length // 2 :].sum(1) == 1).all()
        assert torch.allclose((values * markers).sum(1, keepdim=True), y, atol=1e-6)
    # markers spread over each half, not one fixed position
    first = dm.splits["train"][0][..., 1].argmax(1)
    assert len(first.unique()) == length // 2


def test_adding_predicting_one_scores_a_sixth():
    """The constant 1.0 is the classic baseline: MSE = Var(u1 + u2) = 1/6."""
    dm = _setup(AddingConfig(length=20, n_train=10, n_val=10, n_test=20000))
    scores = dm.score(np.ones((20000, 1)), "test")
    assert scores["mse"] == pytest.approx(1 / 6, abs=0.005)
    assert scores["rmse"] == pytest.approx(math.sqrt(scores["mse"]))


def test_adding_seed_reproduces_and_splits_are_disjoint():
    a = _setup(AddingConfig(length=10, seed=3, **SMALL))
    again = _setup(AddingConfig(length=10, seed=3, **SMALL))
    other = _setup(AddingConfig(length=10, seed=4, **SMALL))
    bigger = _setup(AddingConfig(length=10, seed=3, n_train=600, n_val=60, n_test=50))
    for split in ("train", "val", "test"):
        assert all(torch.equal(p, q) for p, q in zip(a.splits[split], again.splits[split], strict=True))
        assert not torch.equal(a.splits[split][0], other.splits[split][0])
    # each split has its own stream: more training data leaves val and test as they were
    assert torch.equal(a.splits["test"][0], bigger.splits["test"][0])
    assert torch.equal(a.splits["train"][0], bigger.splits["train"][0][:300])
    rows = {split: _rows(a.splits[split][0]) for split in ("train", "val", "test")}
    assert not rows["train"] & rows["val"] and not rows["train"] & rows["test"] and not rows["val"] & rows["test"]
    assert len(rows["train"]) == 300  # and no repeats inside a split


# ----------------------------------------------------------------------------- copy memory


def test_copy_layout_and_targets():
    delay, symbols, alphabet = 9, 4, 5
    dm = _setup(CopyConfig(delay=delay, symbols=symbols, alphabet=alphabet, **SMALL))
    task = dm.task()
    assert task.kind == "per_step_classification" and task.tokens and task.target == "per_step"
    assert (task.input_size, task.output_size) == (alphabet + 2, alphabet + 1)
    assert task.classes == ("blank", "1", "2", "3", "4", "5")
    steps = delay + 2 * symbols
    for split, n in (("train", 300), ("val", 60), ("test", 50)):
        x, y = dm.splits[split]
        assert x.shape == y.shape == (n, steps) and x.dtype == y.dtype == torch.int64
        heads = x[:, :symbols]
        assert heads.min() >= 1 and heads.max() <= alphabet
        assert (x[:, symbols : symbols + delay - 1] == 0).all()  # delay - 1 blanks
        assert (x[:, symbols + delay - 1] == alphabet + 1).all()  # the delimiter
        assert (x[:, -symbols:] == 0).all()
        assert (y[:, :-symbols] == 0).all() and torch.equal(y[:, -symbols:], heads)
    assert set(dm.splits["train"][0][:, :symbols].unique().tolist()) == set(range(1, alphabet + 1))


def test_copy_memoryless_loss():
    """Arjovsky et al. 2016: 10 ln 8 / (T + 20), 0.173 at T = 100; and it is what the memoryless
    strategy (blank until the last 10 steps, then a uniform guess) scores on the data."""
    assert CopyConfig(delay=100).kwargs()["delay"] == 100
    dm = _setup(CopyConfig(delay=100, n_train=50, n_val=50, n_test=200))
    assert dm.memoryless_loss() == pytest.approx(10 * math.log(8) / 120)
    assert round(dm.memoryless_loss(), 3) == 0.173
    at_50 = _setup(CopyConfig(delay=50, n_train=50, n_val=50, n_test=50))
    assert at_50.memoryless_loss() == pytest.approx(0.297, abs=5e-4)
    logits = np.full((200, 120, 9), -1e9)
    logits[:, :110, 0] = 0.0  # blank for sure
    logits[:, 110:, 1:] = 0.0  # each symbol 1/8
    assert dm.score(logits, "test")["loss"] == pytest.approx(dm.memoryless_loss(), rel=1e-9)


def test_copy_seed_reproduces_and_splits_are_disjoint():
    # 3**7 = 2187 strings for 400 samples: a random draw would repeat strings across splits
    small = {"delay": 5, "alphabet": 3, "symbols": 7, "n_train": 300, "n_val": 50, "n_test": 50}
    a, again = _setup(CopyConfig(seed=1, **small)), _setup(CopyConfig(seed=1, **small))
    other = _setup(CopyConfig(seed=2, **small))
    for split in ("train", "val", "test"):
        assert all(torch.equal(p, q) for p, q in zip(a.splits[split], again.splits[split], strict=True))
        assert not torch.equal(a.splits[split][0], other.splits[split][0])
    rows = {split: _rows(a.splits[split][0]) for split in ("train", "val", "test")}
    assert not rows["train"] & rows["val"] and not rows["train"] & rows["test"] and not rows["val"] & rows["test"]
    # without the rule the same streams would have overlapped: the test split came out as drawn
    from rnnlab_plugins.data.synthetic import _streams, copy_samples

    streams = _streams(1)
    test, _ = copy_samples(streams["test"], 50, 5, 3, 7)
    val, _ = copy_samples(streams["val"], 50, 5, 3, 7)
    train, _ = copy_samples(streams["train"], 300, 5, 3, 7)
    assert np.array_equal(test, a.splits["test"][0].numpy())
    raw = {s: {r.tobytes() for r in arr} for s, arr in (("train", train), ("val", val), ("test", test))}
    assert raw["train"] & (raw["val"] | raw["test"])


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("config", "kwargs", "start"),
    [
        (AddingConfig, {"length": 1}, "length: must be >= 2, got 1"),
        (AddingConfig, {"n_val": 0}, "n_val: must be >= 1"),
        (AddingConfig, {"target": "sum"}, "target: invalid value 'sum'; valid choices: last, running"),
        (CopyConfig, {"alphabet": 1}, "alphabet: must be >= 2, got 1"),
        (CopyConfig, {"delay": 0}, "delay: must be >= 1"),
        (CopyConfig, {"symbols": 3, "alphabet": 4}, "symbols: 4**3 = 64 symbol strings are too few"),
    ],
)
def test_bad_values_name_the_key(config, kwargs, start):
    with pytest.raises(ConfigError) as info:
        config(**kwargs)
    assert str(info.value).startswith(start) and "\n" not in str(info.value)


def test_bad_value_on_the_command_line(workdir):
    from conftest import run_cli

    res = run_cli(["data=copy", "data.alphabet=1"], workdir)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode != 0 and lines == ["rnnlab: error: data.alphabet: must be >= 2, got 1"], res.stderr
    assert sorted(p.name for p in workdir.iterdir()) == []  # nothing ran


# ----------------------------------------------------------------------------- real runs


@pytest.mark.parametrize(
    ("args", "metric"),
    [
        # the last-step target is the running one's last step: its run is in the slow selection
        pytest.param(["data=adding", "data.length=10"], "test/mse", marks=pytest.mark.slow),
        (["data=adding", "data.length=10", "data.target=running"], "test/mse"),
        (["data=copy", "data.delay=10"], "test/accuracy"),
    ],
    ids=["adding", "adding-running", "copy"],
)
def test_a_real_run_logs_the_tasks_metric(args, metric, workdir):
    from conftest import run_cli
    from mlflow.tracking import MlflowClient

    tiny = ["data.n_train=256", "data.n_val=64", "data.n_test=64", "backbone.hidden_size=8", "trainer.max_epochs=2"]
    res = run_cli([*args, *tiny, "trainer.accelerator=cpu", "trainer.devices=1", "logger.log_model=false"], workdir)
    assert res.returncode == 0, res.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("rnnlab").experiment_id])
    assert run.info.status == "FINISHED"
    value = run.data.metrics[metric]
    assert math.isfinite(value) and (0 <= value <= 1 if metric == "test/accuracy" else value > 0)
    assert len(client.get_metric_history(run.info.run_id, metric.replace("test/", "val/"))) == 2  # one per epoch


# ----------------------------------------------------------------------------- presets


@pytest.mark.parametrize(
    ("preset", "data", "key", "value"),
    [("adding_t100", "adding", "length", 100), ("copy_t50", "copy", "delay", 50)],
)
def test_preset_composes_to_its_task(preset, data, key, value):
    from omegaconf import OmegaConf

    from rnnlab.composition import compose

    cfg = compose([f"experiment={preset}"])
    assert cfg.data.name == data and cfg.data[key] == value and cfg.backbone.name == "lstm"
    assert cfg.trainer.max_time == 10
    OmegaConf.to_object(cfg)  # every value passes its schema's checks
    gru = compose([f"experiment={preset}", "backbone=gru"])
    assert gru.backbone.name == "gru" and gru.backbone.hidden_size == cfg.backbone.hidden_size
