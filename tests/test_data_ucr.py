"""ucr: UCR/UEA classification sets through sktime; variable lengths padded, packed, never read."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from rnnlab_plugins.data.ucr import UCRDataModule, bundled_dir, content_hash, label_order, stratified_split
from rnnlab_plugins.data.ucr_config import DATASETS, UCRConfig

from rnnlab.errors import ConfigError
from rnnlab.model import SequenceNet
from rnnlab.registry import backbones, data_modules
from rnnlab.testing import check_config_round_trip, check_data_module

pytestmark = pytest.mark.skipif(importlib.util.find_spec("sktime") is None, reason="needs the ucr extra (sktime)")

_CACHE: dict[tuple[str, float, int], UCRDataModule] = {}


def _ucr(dataset: str, val_fraction: float = 0.2, seed: int = 0) -> UCRDataModule:
    """The set up module (read once per test session: JapaneseVowels takes ~1 s to parse)."""
    key = (dataset, val_fraction, seed)
    if key not in _CACHE:
        dm = data_modules.create("ucr", dataset=dataset, val_fraction=val_fraction, seed=seed)
        dm.setup("fit")
        _CACHE[key] = dm
    return _CACHE[key]


def _valid(x: torch.Tensor, lengths: torch.Tensor | None) -> list[np.ndarray]:
    """Each series' valid steps (T_i, C) as numpy."""
    n = lengths.tolist() if lengths is not None else [x.shape[1]] * len(x)
    return [x[i, : n[i]].numpy() for i in range(len(x))]


def _write_ts(path, rows: list[str], *, dims: int = 2, equal: bool = False, labels: str = "a b") -> None:
    header = [
        "@problemName Toy",
        "@timeStamps false",
        "@missing true",
        f"@univariate {'true' if dims == 1 else 'false'}",
        f"@dimensions {dims}",
        f"@equalLength {'true' if equal else 'false'}",
        f"@classLabel true {labels}",
        "@data",
    ]
    path.write_text("\n".join(header + rows) + "\n")


# ----------------------------------------------------------------------------- the contract


def test_the_schema_round_trips():
    check_config_round_trip(UCRConfig)


def test_every_listed_set_is_bundled_with_sktime():
    for name in DATASETS:
        assert (bundled_dir() / name / f"{name}_TRAIN.ts").is_file(), name
        assert (bundled_dir() / name / f"{name}_TEST.ts").is_file(), name


def test_contract_on_gunpoint():
    dm = check_data_module(UCRConfig(dataset="GunPoint"))
    task = dm.task()
    assert (task.kind, task.input_size, task.output_size, task.classes) == ("classification", 1, 2, ("1", "2"))
    assert dm.describe() == {"n_train": 40, "n_val": 10, "n_test": 150, "steps": 150, "classes": 2, "channels": 1}
    assert len(dm.splits["train"]) == 2  # equal lengths: no lengths, the backbone's plain fused call


def test_contract_on_japanese_vowels_with_lengths():
    dm = check_data_module(UCRConfig(dataset="JapaneseVowels"))
    task = dm.task()
    assert (task.input_size, task.output_size, task.classes) == (12, 9, tuple("123456789"))
    assert dm.describe() == {
        "n_train": 216,
        "n_val": 54,
        "n_test": 370,
        "steps": 29,
        "classes": 9,
        "channels": 12,
        "min_steps": 7,
    }
    train_series, test_series = dm.published["train"][0], dm.published["test"][0]
    published = {
        "train": [train_series[i] for i in dm.train_index],
        "val": [train_series[i] for i in dm.val_index],
        "test": test_series,
    }
    for split in ("train", "val", "test"):
        x, _, lengths = dm.splits[split]
        assert lengths.dtype == torch.int64 and lengths.shape == (len(x),)
        assert lengths.tolist() == [s.shape[1] for s in published[split]]  # (C, T_i) each
        steps = torch.arange(x.shape[1])[None, :]  # (1, T)
        assert (x[steps >= lengths[:, None]] == 0).all()  # right-padded with zeros


def test_labels_map_to_sorted_class_ids():
    dm = _ucr("BasicMotions")
    assert dm.task().classes == ("badminton", "running", "standing", "walking")
    labels = dm.published["train"][1]
    y_train, y_val = dm.splits["train"][1], dm.splits["val"][1]
    assert [dm.task().classes[k] for k in y_train] == labels[dm.train_index].tolist()
    assert [dm.task().classes[k] for k in y_val] == labels[dm.val_index].tolist()
    test_labels = dm.published["test"][1]
    assert [dm.task().classes[k] for k in dm.splits["test"][1]] == test_labels.tolist()
    # numeric labels sort as numbers (PLAID's 0..10), others as strings
    assert label_order(np.array(["10", "2", "0", "1"])) == ["0", "1", "2", "10"]
    assert label_order(np.array(["b", "10", "a"])) == ["10", "a", "b"]


# ----------------------------------------------------------------------------- variable lengths


@pytest.mark.parametrize(
    ("backbone", "options"),
    [("rnn", {}), ("lstm", {}), ("gru", {}), ("lstm", {"bidirectional": True, "num_layers": 2})],
    ids=["rnn", "lstm", "gru", "bilstm2"],
)
def test_a_padded_batch_gives_what_each_sequence_gives_alone(backbone, options):
    dm = _ucr("JapaneseVowels")
    x, _, lengths = dm.splits["test"]
    # the shortest and the longest series and a few between: a batch with a lot of padding
    order = torch.argsort(lengths)
    pick = torch.cat([order[:3], order[len(order) // 2 : len(order) // 2 + 3], order[-3:]])
    xb, lb = x[pick], lengths[pick]
    assert int(lb.min()) < int(lb.max()) == x.shape[1]
    torch.manual_seed(0)
    net = SequenceNet(backbones.create(backbone, input_size=12, hidden_size=16, **options), dm.task()).eval()
    with torch.no_grad():
        batched = net(xb, lb)  # (B, K)
        alone = torch.cat([net(xb[i : i + 1, : int(lb[i])]) for i in range(len(xb))])  # each unpadded
        garbage = xb.clone()
        steps = torch.arange(x.shape[1])[None, :]
        pad = steps >= lb[:, None]  # (B, T)
        garbage[pad] = torch.randn(int(pad.sum()), 12) * 1e3
        garbage[pad.nonzero()[0, 0], pad.nonzero()[0, 1]] = float("nan")
        filled = net(garbage, lb)
    assert batched.shape == (len(pick), 9)
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=0)
    torch.testing.assert_close(filled, batched, atol=0, rtol=0)


# ----------------------------------------------------------------------------- splits and scaling


@pytest.mark.parametrize("dataset", ["GunPoint", "JapaneseVowels"])
def test_the_scaler_is_fitted_on_the_training_split_only(dataset):
    dm = _ucr(dataset)
    published = dm.published["train"][0]
    fit = np.concatenate([published[i] for i in dm.train_index], axis=1)  # (C, valid steps)
    np.testing.assert_allclose(dm.mean, fit.mean(axis=1))
    np.testing.assert_allclose(dm.std, fit.std(axis=1))
    # the training split's valid values are standardized; padding (zeros) took no part in the fit
    train = np.concatenate(_valid(dm.splits["train"][0], dm.lengths("train")))  # (valid steps, C)
    np.testing.assert_allclose(train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(train.std(axis=0), 1, atol=1e-4)
    # ...and with no validation series: with them the statistics differ (GunPoint's series are each
    # z-normalized, so every split has mean 0 and std 1 and tells nothing; the toy set below does)
    if dataset == "JapaneseVowels":
        with_val = np.concatenate([published[i] for i in np.sort([*dm.train_index, *dm.val_index])], axis=1)
        assert np.abs(dm.mean - with_val.mean(axis=1)).max() > 1e-3
    # the test split is the published one, scaled with the training statistics
    first = dm.published["test"][0][0]  # (C, T_0)
    n = first.shape[1]
    np.testing.assert_allclose(dm.splits["test"][0][0, :n].numpy(), ((first.T - dm.mean) / dm.std), atol=1e-5)


def test_test_values_do_not_move_the_scaler(tmp_path):
    _write_ts(tmp_path / "Toy_TRAIN.ts", ["1,2,3:4,5,6:a", "3,2:6,6:b", "2,2,2:5,5,4:a", "1,3:4,4:b"])
    means = []
    for scale in (1, 1000):
        _write_ts(tmp_path / "Toy_TEST.ts", [f"{scale},{2 * scale}:{scale},0:a", f"{-scale}:7:b"])
        dm = data_modules.create("ucr", path=str(tmp_path / "Toy_TRAIN.ts"), val_fraction=0.5)
        dm.setup("fit")
        means.append((dm.mean.copy(), dm.std.copy(), dm.splits["train"][0].clone()))
    (m1, s1, x1), (m2, s2, x2) = means
    assert np.array_equal(m1, m2) and np.array_equal(s1, s2) and torch.equal(x1, x2)
    assert float(dm.splits["test"][0].abs().max()) > 100  # the test values, scaled by training statistics


@pytest.mark.parametrize("dataset", ["GunPoint", "JapaneseVowels"])
def test_no_series_is_in_two_splits(dataset):
    dm = _ucr(dataset)
    n_published = len(dm.published["train"][0])
    # train and val: a partition of the published training split, by index
    assert not set(dm.train_index) & set(dm.val_index)
    assert sorted([*dm.train_index, *dm.val_index]) == list(range(n_published))  # none dropped here
    # by content: no series (its valid values) in two splits; the published sets repeat none either
    hashes = {s: {content_hash(v) for v in _valid(dm.splits[s][0], dm.lengths(s))} for s in ("train", "val", "test")}
    assert len(hashes["train"]) == len(dm.train_index) and len(hashes["test"]) == len(dm.published["test"][0])
    assert not hashes["train"] & hashes["val"] and not hashes["train"] & hashes["test"]
    assert not hashes["val"] & hashes["test"]
    published_test = {content_hash(s) for s in dm.published["test"][0]}
    assert not {content_hash(s) for s in dm.published["train"][0]} & published_test


def test_validation_is_stratified_and_drawn_by_seed():
    dm = _ucr("JapaneseVowels")
    y = dm.targets("train").tolist() + dm.targets("val").tolist()
    val = np.bincount(dm.targets("val"), minlength=9)
    whole = np.bincount(y, minlength=9)
    np.testing.assert_array_equal(val, np.round(whole * 0.2))  # 0.2 of each class (30 each: 6)
    other = _ucr("JapaneseVowels", seed=1)
    assert not np.array_equal(other.val_index, dm.val_index)
    assert np.array_equal(_ucr("JapaneseVowels", val_fraction=0.2, seed=0).val_index, dm.val_index)
    # tiny classes keep a training series; validation always gets one
    train, val_idx = stratified_split(np.array([0, 1, 1, 2]), 0.1, 0)
    assert len(val_idx) == 1 and set(np.array([0, 1, 1, 2])[train]) >= {0, 2}


def test_training_series_that_repeat_a_test_series_are_dropped(tmp_path):
    train = ["1,2,3:1,1,1:a", "4,5:2,2:b", "7,8,9:3,3,3:a", "1,2,3:1,1,1:a", "5,5,6:0,1,0:b", "6,6,6,6:1,2,3,4:b"]
    _write_ts(tmp_path / "Toy_TRAIN.ts", train)
    _write_ts(tmp_path / "Toy_TEST.ts", ["7,8,9:3,3,3:a", "4,4:2,2:b"])
    dm = data_modules.create("ucr", path=str(tmp_path / "Toy_TRAIN.ts"), val_fraction=0.3)
    dm.setup("fit")
    # series 2 is a test series, series 3 repeats series 0
    assert dm.dropped.tolist() == [2, 3]
    assert sorted([*dm.train_index, *dm.val_index]) == [0, 1, 4, 5]


# ----------------------------------------------------------------------------- the user's own files


def test_a_ts_file_pair_with_unequal_lengths_and_missing_tails(tmp_path):
    _write_ts(tmp_path / "Toy_TRAIN.ts", ["1,2,3:4,5,6:b", "1,2,?:3,4,?:a", "0,0,1,1:1,1,0,0:b", "2,3:3,2:a"])
    _write_ts(tmp_path / "Toy_TEST.ts", ["5,6,7,8,9:1,1,1,1,1:a", "9:9:c"])
    dm = check_data_module(UCRConfig(path=str(tmp_path / "Toy_TRAIN.ts"), val_fraction=0.5, batch_size=2))
    assert dm.task().classes == ("a", "b", "c") and dm.task().input_size == 2
    published = dm.published["train"][0]
    assert [s.shape for s in published] == [(2, 3), (2, 2), (2, 4), (2, 2)]  # trailing '?' cut
    assert dm.lengths("test").tolist() == [5, 1] and dm.splits["test"][0].shape == (2, 5, 2)
    # the folder layouts: <path>/<dataset>_TRAIN.ts and <path>/<dataset>/<dataset>_TRAIN.ts
    (tmp_path / "archive" / "Toy").mkdir(parents=True)
    for name in ("Toy_TRAIN.ts", "Toy_TEST.ts"):
        (tmp_path / "archive" / "Toy" / name).write_text((tmp_path / name).read_text())
    for folder in (tmp_path, tmp_path / "archive"):
        other = data_modules.create("ucr", path=str(folder), dataset="Toy", val_fraction=0.5)
        other.setup("fit")
        assert torch.equal(other.splits["test"][0], dm.splits["test"][0])


_REGRESSION = "@problemName R\n@timeStamps false\n@targetLabel true\n@data\n1,2:0.5\n"
BAD_FILES = {  # files to write (rows of a univariate .ts, or raw text), the path to give, the error
    "missing": ({}, "Toy_TRAIN.ts", r"^path: not found"),
    "no-test-file": ({"Toy_TRAIN.ts": ["1,2:a"]}, "Toy_TRAIN.ts", r"^path: Toy_TRAIN.ts has no Toy_TEST.ts beside"),
    "not-a-train-file": ({"x.ts": ["1,2:a"]}, "x.ts", r"^path: expected a <name>_TRAIN.ts file"),
    "no-set-in-folder": ({"Toy_TRAIN.ts": ["1:a"]}, ".", r"^path: no GunPoint_TRAIN.ts in .* \(set data.dataset\)"),
    "interior-missing": (
        {"Toy_TRAIN.ts": ["1,?,3:a", "1,2:b"], "Toy_TEST.ts": ["1:a"]},
        "Toy_TRAIN.ts",
        r"^path: Toy_TRAIN.ts: series 0 has missing values",
    ),
    "malformed": (
        {"Toy_TRAIN.ts": ["1,2:a:b"], "Toy_TEST.ts": ["1:a"]},
        "Toy_TRAIN.ts",
        r"^path: cannot read Toy_TRAIN.ts as a .ts file",
    ),
    "regression": (
        {"Toy_TRAIN.ts": _REGRESSION, "Toy_TEST.ts": _REGRESSION},
        "Toy_TRAIN.ts",
        r"^path: Toy_TRAIN.ts has no class labels",
    ),
    "one-series": ({"Toy_TRAIN.ts": ["1:a"], "Toy_TEST.ts": ["1:a"]}, "Toy_TRAIN.ts", r"0 distinct training series"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_are_one_line_config_errors(tmp_path, case):
    files, path, message = BAD_FILES[case]
    for name, content in files.items():
        if isinstance(content, str):
            (tmp_path / name).write_text(content)
        else:
            _write_ts(tmp_path / name, content, dims=1)
    with pytest.raises(ConfigError, match=message) as err:
        dm = data_modules.create("ucr", path=str(tmp_path / path))
        dm.setup("fit")
    assert "\n" not in str(err.value)


# ----------------------------------------------------------------------------- bad input


def test_an_unknown_dataset_names_the_key_and_the_choices():
    with pytest.raises(ConfigError) as err:
        UCRConfig(dataset="GunPont")
    assert err.value.key == "dataset" and err.value.choices == sorted(DATASETS)
    assert str(err.value).startswith("dataset: invalid value 'GunPont'; valid choices: ACSF1, ArrowHead")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"val_fraction": 0.0}, r"^val_fraction: must be > 0"),
        ({"val_fraction": 1.0}, r"^val_fraction: must be < 1"),
        ({"seed": -1}, r"^seed: must be >= 0"),
        ({"batch_size": 0}, r"^batch_size: must be >= 1"),
    ],
)
def test_bad_values_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        UCRConfig(**kwargs)


def test_without_the_extra_the_error_says_how_to_install_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sktime" else real(name, *a))
    with pytest.raises(ConfigError) as err:
        UCRConfig()
    assert str(err.value) == "the ucr data module needs sktime, which is not installed: pip install 'rnnlab[ucr]'"
    assert str(err.value.with_prefix("data")).startswith("data: the ucr data module needs sktime")


def test_bad_input_on_the_command_line_is_one_line(workdir):
    from conftest import run_cli

    res = run_cli(["data=ucr", "data.dataset=GunPont"], workdir)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2 and len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert "data.dataset: invalid value 'GunPont'" in lines[0] and "GunPoint" in lines[0]
    assert not (workdir / "mlflow.db").exists()


# ----------------------------------------------------------------------------- a real run


@pytest.mark.slow  # 20-35 s on 2 shared cores, most of it importing Lightning and creating the store
def test_a_tiny_cli_run_logs_test_accuracy_to_mlflow(workdir):
    from conftest import run_cli
    from mlflow.tracking import MlflowClient

    args = [
        "data=ucr",
        "data.dataset=GunPoint",
        "backbone=lstm",
        "backbone.hidden_size=8",
        "trainer.max_epochs=2",
        "trainer.accelerator=cpu",
        "trainer.devices=1",
        "logger.log_model=false",
    ]
    res = run_cli(args, workdir, env={"OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("rnnlab").experiment_id])
    assert run.info.status == "FINISHED"
    assert 0.0 <= run.data.metrics["test/accuracy"] <= 1.0
    assert "baseline/majority/test/accuracy" in run.data.metrics
    assert run.data.params.get("data.dataset") == "GunPoint"


@pytest.mark.slow
def test_every_bundled_set_loads_with_disjoint_splits():
    """Every listed set, read offline; the published splits of PLAID repeat 5 training series in the
    test split (exact values), which the module drops from training."""
    repeats = {}
    for name in DATASETS:
        dm = _ucr(name)
        train = {content_hash(v) for v in _valid(dm.splits["train"][0], dm.lengths("train"))}
        test = {content_hash(v) for v in _valid(dm.splits["test"][0], dm.lengths("test"))}
        assert not train & test, name
        published_test = {content_hash(s) for s in dm.published["test"][0]}
        repeats[name] = sum(content_hash(s) in published_test for s in dm.published["train"][0])
        assert len(dm.dropped) >= repeats[name]
    assert {k: v for k, v in repeats.items() if v} == {"PLAID": 5}
