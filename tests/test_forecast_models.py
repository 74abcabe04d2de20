"""The forecasting options of the model (model.target, normalize, difference, linear_skip)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from rnnlab import forecast
from rnnlab.errors import ConfigError
from rnnlab.model import SequenceModel, SequenceNet
from rnnlab.registry import backbones
from rnnlab.series import SeriesDataModule
from rnnlab.task import TaskSpec


class Trend(SeriesDataModule):
    """A linear trend plus a sine plus noise: the test part lies above everything seen in training.
    With ``channels=2`` a second input column (a cosine of the same period) comes along."""

    def __init__(self, *, length: int = 400, horizon: int = 1, channels: int = 1, window: int = 12) -> None:
        super().__init__(
            window=window,
            horizon=horizon,
            stride=1,
            val_fraction=0.15,
            test_fraction=0.15,
            scaling="standard",
            season=0,
            batch_size=32,
            eval_batch_size=512,
        )
        self.length = length
        self.channels = channels

    def load(self) -> tuple[np.ndarray, list[str]]:
        rng = np.random.default_rng(0)
        t = np.arange(self.length, dtype=np.float64)
        y = 0.05 * t + np.sin(2 * np.pi * t / 12) + 0.05 * rng.standard_normal(self.length)
        columns = [y, np.cos(2 * np.pi * t / 12) + 0.1 * rng.standard_normal(self.length)]
        return np.stack(columns[: self.channels], axis=1), ["y", "cos"][: self.channels]


def _net(task: TaskSpec, window: int = 12, hidden: int = 8, **options) -> SequenceNet:
    torch.manual_seed(0)
    backbone = backbones.create("lstm", input_size=task.input_size, hidden_size=hidden)
    return SequenceNet(backbone, task, window=window, **options)


def _splits(dm: SeriesDataModule, split: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = dm.splits[split][:2]
    return x.double().numpy(), y.double().numpy()


# ----------------------------------------------------------------------------- the state dict


def test_options_off_keep_the_state_dict_keys_and_options_on_add_their_own():
    dm = Trend()
    task = dm.task()
    plain = _net(task)
    today = {f"backbone.{k}" for k in plain.backbone.state_dict()} | {
        "head.weight",
        "head.bias",
        "target_scale",
        "target_shift",
    }
    assert set(plain.state_dict()) == today  # old checkpoints still load

    full = _net(task, target="change", normalize="revin", difference=True, linear_skip=True)
    assert set(full.state_dict()) - today == {"revin_weight", "revin_bias", "skip.weight", "skip.bias"}
    full.init_linear_skip(*dm.splits["train"][:2], *dm.splits["val"][:2])
    again = _net(task, target="change", normalize="revin", difference=True, linear_skip=True)
    again.load_state_dict(full.state_dict())
    x = dm.splits["test"][0]
    assert torch.equal(again.eval()(x), full.eval()(x))


# ----------------------------------------------------------------------------- the linear skip


def _ridge_forecast(dm: SeriesDataModule, target: str, normalize: str) -> np.ndarray:
    """The linear AR fitted in numpy in the skip's space: test predictions in original units."""

    def space(split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        x, y = _splits(dm, split)
        mean, std = np.zeros((len(x), 1, x.shape[2])), np.ones((len(x), 1, x.shape[2]))
        if normalize == "revin":
            mean = x.mean(1, keepdims=True)
            std = np.sqrt(x.var(1, keepdims=True) + 1e-5)
        z = (x - mean) / std
        base = z[:, -1, :1] if target == "change" else np.zeros((len(x), 1))
        return z, (y - mean[:, :, 0]) / std[:, :, 0] - base, base, (mean[:, :, 0], std[:, :, 0])

    z_train, y_train, _, _ = space("train")
    z_val, y_val, _, _ = space("val")
    coef, _alpha = forecast.ridge(z_train, y_train, z_val, y_val)
    z_test, _, base, (mean, std) = space("test")
    scaled = (forecast.lag_matrix(z_test) @ coef + base) * std + mean
    return dm.unscale_target(scaled)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"target": "change"},
        {"normalize": "revin"},
        {"target": "change", "normalize": "revin", "difference": True, "head_hidden": 4},
    ],
    ids=["level", "change", "revin", "change-revin-difference"],
)
def test_the_untrained_linear_skip_net_is_the_ridge_fit(options):
    dm = Trend(horizon=3, channels=2)
    net = _net(dm.task(), linear_skip=True, **options)
    net.init_linear_skip(*dm.splits["train"][:2], *dm.splits["val"][:2])
    got = dm.predict_with(net, "test")
    want = _ridge_forecast(dm, options.get("target", "level"), options.get("normalize", "none"))
    scale = dm.task().target_scale[0]
    np.testing.assert_allclose(got / scale, want / scale, rtol=1e-5, atol=1e-5)
    if not options:  # the linear AR baseline itself
        from rnnlab_plugins.baselines.forecast import LinearAR

        baseline = LinearAR()
        baseline.fit(dm)
        np.testing.assert_allclose(got / scale, baseline.predict(dm, "test") / scale, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- RevIN


@pytest.mark.parametrize("difference", [False, True])
def test_revin_moves_the_forecast_with_the_window(difference):
    """A constant added to the whole window moves a level forecast by that constant."""
    task = TaskSpec(input_size=2, output_size=3, target_scale=(2.0,) * 3, target_shift=(10.0,) * 3, forecast=True)
    net = _net(task, normalize="revin", difference=difference, linear_skip=True).eval()
    with torch.no_grad():  # not the identity: the affine map must be undone too
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(5, 12, 2)
    shift = 3.0
    with torch.no_grad():
        moved = net(x + shift) - net(x)
    torch.testing.assert_close(moved, torch.full_like(moved, shift * 2.0), atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------- a trend


def _test_rmse(dm: SeriesDataModule, **options) -> float:
    """A tiny LSTM trained a few epochs with ``options``; its test RMSE in original units."""
    pl.seed_everything(0, verbose=False)
    net = _net(dm.task(), **options)
    if options.get("linear_skip"):
        net.init_linear_skip(*dm.splits["train"][:2], *dm.splits["val"][:2])
    model = SequenceModel(net, dm.task(), optimizer=lambda params: torch.optim.Adam(params, lr=0.02))
    trainer = pl.Trainer(
        max_epochs=8,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        gradient_clip_val=1.0,
        deterministic=True,
    )
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    trainer.fit(model, datamodule=dm)
    return dm.score(dm.predict_with(net, "test"))["rmse"]


@pytest.mark.parametrize(
    ("options", "beats_persistence"),
    [
        ({}, False),
        ({"target": "change", "difference": True}, True),
        ({"linear_skip": True}, True),
        ({"normalize": "revin"}, True),
    ],
    ids=["plain", "change-difference", "linear_skip", "revin"],
)
def test_a_trend_beyond_the_training_range(options, beats_persistence):
    """Test values lie above the training range: a plain LSTM cannot reach them (it ends far worse
    than persistence), a net that forecasts changes, adds a linear AR or normalizes each window can."""
    dm = Trend()
    dm.setup()
    assert dm.targets("test").min() > dm.history()[: dm.train_end(), 0].max()
    persistence = dm.score(dm.history()[dm.origins("test") - 1, :1])["rmse"]
    rmse = _test_rmse(dm, **options)
    if beats_persistence:
        assert rmse < 0.8 * persistence
    else:
        assert rmse > 2 * persistence


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"target": "change"}, "model.target"),
        ({"normalize": "revin"}, "model.normalize"),
        ({"target": "change", "difference": True}, "model.target"),
        ({"linear_skip": True}, "model.linear_skip"),
    ],
)
def test_forecasting_options_need_a_forecasting_task(options, key):
    task = TaskSpec(input_size=2, output_size=1)  # no forecast: column 0 need not be the target
    with pytest.raises(ConfigError, match="forecasting task") as err:
        _net(task, **options)
    assert err.value.key == key


def test_difference_with_a_level_target_is_refused(small_cfg):
    from rnnlab.validation import validate

    with pytest.raises(ConfigError, match="level is lost") as err:
        validate(small_cfg("model.difference=true", "model.target=level"))
    assert err.value.key == "model.difference"
    validate(small_cfg("model.difference=true"))  # target auto: change on a forecasting task
    validate(small_cfg("model.difference=true", "model.target=change"))
    validate(small_cfg("model.difference=true", "model.normalize=revin"))
    with pytest.raises(ConfigError) as err:
        validate(small_cfg("model.target=levels"))
    assert err.value.key == "model.target"
    with pytest.raises(ConfigError) as err:  # SequenceNet itself, for Python users
        _net(Trend().task(), difference=True)
    assert err.value.key == "model.difference"


# ----------------------------------------------------------------------------- the best checkpoint


def test_a_fit_that_only_gets_worse_tests_the_linear_ar(small_cfg, workdir):
    """The untrained state (the linear AR) is a candidate for the best checkpoint: a learning rate
    that ruins every epoch leaves it best on validation, and the test scores it. last.ckpt still
    holds the last epoch (for resume=)."""
    from rnnlab.train import train

    metrics = train(
        small_cfg(
            "model.linear_skip=true",
            "model.target=level",  # the same regression as the linear_ar baseline: of the level
            "model.difference=false",
            "optimizer.lr=3.0",
            "trainer.max_epochs=2",
            "trainer.early_stopping.enabled=false",
            "baseline=[persistence,linear_ar]",
        )
    )
    assert metrics["epochs"] == 2
    assert metrics["test/rmse"] == pytest.approx(metrics["baseline/linear_ar/test/rmse"], rel=1e-4)
    assert metrics["test/mae"] == pytest.approx(metrics["baseline/linear_ar/test/mae"], rel=1e-4)
    checkpoints = workdir / "out" / "checkpoints"
    best = torch.load(checkpoints / "best.ckpt", weights_only=False)
    last = torch.load(checkpoints / "last.ckpt", weights_only=False)
    assert best["global_step"] == 0 and last["epoch"] == 1 and last["global_step"] > 0


@pytest.mark.slow  # two runs: about 10 s
def test_a_linear_skip_run_resumes(small_cfg, workdir):
    from rnnlab.train import train

    options = ("model.linear_skip=true", "model.target=change", "model.normalize=revin")
    train(small_cfg(*options, "trainer.max_epochs=1", f"output_dir={workdir}/first"))
    last = workdir / "first" / "checkpoints" / "last.ckpt"
    metrics = train(small_cfg(*options, "trainer.max_epochs=2", f"resume={last}", f"output_dir={workdir}/second"))
    assert metrics["epochs"] == 2 and np.isfinite(metrics["test/rmse"])


def test_auto_options_are_the_forecasting_defaults_on_a_forecast_and_off_otherwise():
    from rnnlab.schemas import ModelConfig

    on = ModelConfig().resolved(forecast=True)
    assert (on.target, on.difference, on.linear_skip) == ("change", True, True)
    off = ModelConfig().resolved(forecast=False)
    assert (off.target, off.difference, off.linear_skip) == ("level", False, False)
    chosen = ModelConfig(target="level", difference=False, linear_skip=False).resolved(forecast=True)
    assert (chosen.target, chosen.difference, chosen.linear_skip) == ("level", False, False)
