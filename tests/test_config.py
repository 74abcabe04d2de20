"""Every shipped YAML composes and validates; every class of bad input gets a one-line error."""

import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from rnnlab.composition import compose, list_groups
from rnnlab.errors import ConfigError
from rnnlab.validation import validate

GROUPS = list_groups()
SHIPPED = [(g, o) for g, opts in GROUPS.items() for o in opts if g not in ("regularizer", "sweep")]


def _compose(overrides):
    cfg = compose(overrides)
    validate(cfg)
    return cfg


@pytest.mark.parametrize(("group", "option"), SHIPPED, ids=[f"{g}={o}" for g, o in SHIPPED])
def test_every_shipped_yaml_composes_and_validates(group, option, tmp_path):
    extra = [f"data.path={tmp_path}/s.csv", "data.target=y"] if (group, option) == ("data", "csv") else []
    if extra:
        (tmp_path / "s.csv").write_text("y\n" + "\n".join(str(i) for i in range(200)))
    cfg = _compose([f"{group}={option}", *extra])
    if group in ("backbone", "data"):
        assert cfg[group].name == option


@pytest.mark.parametrize("option", GROUPS["regularizer"])
def test_every_regularizer_composes(option):
    cfg = _compose([f"regularizer=[{option}]"])
    assert cfg.regularizer[option].name == option


def test_every_shipped_config_builds_its_model(tmp_path, monkeypatch):
    """Build (not train) the model each backbone / regularizer / optimizer / scheduler YAML names."""
    monkeypatch.chdir(tmp_path)
    for overrides in (
        *[[f"backbone={b}"] for b in GROUPS["backbone"]],
        [f"regularizer=[{','.join(GROUPS['regularizer'])}]"],
        *[[f"optimizer={o}"] for o in GROUPS["optimizer"]],
        *[[f"scheduler={s}"] for s in GROUPS["scheduler"]],
    ):
        _builds(_compose(["data=sine", "data.length=300", *overrides]))


# each preset as its YAML says, on its own data, shrunk where the data would be slow to build
# (chars: 220k characters leave chars_tbptt's 5 % validation split one sequence of 10,001)
SHRINK = {"adding": ["data.n_train=64"], "copy": ["data.n_train=64"], "chars": ["data.max_chars=220000"]}


@pytest.mark.parametrize("experiment", GROUPS["experiment"])
def test_every_experiment_preset_builds_its_model_on_its_own_data(experiment, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = _compose([f"experiment={experiment}"])
    _builds(_compose([f"experiment={experiment}", *SHRINK.get(cfg.data.name, [])]))


def _builds(cfg):
    """The model of ``cfg`` maps a training batch to predictions the task scores, with an optimizer."""
    import torch

    from rnnlab.train import build

    dm, model = build(cfg)
    x, y = dm.splits["train"][0][:4], dm.splits["train"][1][:4]
    out = model(x)
    task = dm.task()
    assert out.shape == ((*y.shape, task.output_size) if task.classification else y.shape)
    opt = model.configure_optimizers()
    assert isinstance(opt if isinstance(opt, torch.optim.Optimizer) else opt["optimizer"], torch.optim.Optimizer)


def test_seed_lstm_experiment_is_the_articles_model():
    cfg = _compose(["experiment=seed_lstm"])
    assert (cfg.backbone.name, cfg.backbone.hidden_size, cfg.backbone.num_layers) == ("lstm", 50, 3)
    assert cfg.backbone.dropout == 0.2 and cfg.regularizer.dropout.p == 0.2
    assert cfg.optimizer._target_ == "torch.optim.Adam" and cfg.data.horizon == 1


def test_missing_csv_column_lists_the_columns(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("date,load,temp\n2020-01-01,1,2\n")
    with pytest.raises(ConfigError) as err:
        _compose(["data=csv", f"data.path={path}", "data.target=lod"])
    assert str(err.value) == "data.target: no column 'lod' in s.csv; valid choices: date, load, temp"


def test_csv_with_a_byte_order_mark_and_another_delimiter_reads_as_pandas_does(tmp_path):
    from rnnlab.registry import data_modules

    path = tmp_path / "excel.csv"
    rows = "".join(f"2020-01-{i % 28 + 1:02d};{i};{2 * i}\n" for i in range(200))
    path.write_bytes(("\ufeffdate;load;temp\n" + rows).encode("utf-8"))
    cfg = _compose(["data=csv", f"data.path={path}", "data.target=date", "data.delimiter=semicolon"])
    assert cfg.data.target == "date"
    plugins = validate(
        compose(
            [
                "data=csv",
                f"data.path={path}",
                "data.target=load",
                "data.features=[temp]",
                "data.delimiter=semicolon",
                "data.window=8",
            ]
        )
    )
    dm = data_modules.build(plugins.data)
    dm.setup("fit")
    assert dm.task().input_size == 2


def test_lightning_accepts_exactly_the_trainer_choices_we_check():
    import typing

    from lightning_fabric.connector import _PRECISION_INPUT_STR, _PRECISION_INPUT_STR_ALIAS
    from pytorch_lightning.accelerators import AcceleratorRegistry
    from pytorch_lightning.strategies import StrategyRegistry

    from rnnlab import schemas

    precisions = set(typing.get_args(_PRECISION_INPUT_STR)) | set(typing.get_args(_PRECISION_INPUT_STR_ALIAS))
    assert set(schemas.PRECISIONS) == precisions
    assert set(schemas.ACCELERATORS) == {"auto", "gpu", *AcceleratorRegistry.available_accelerators()}
    assert set(schemas.STRATEGIES) == {"auto", *StrategyRegistry.available_strategies()}


def test_config_dir_and_searchpath_add_presets_as_in_any_hydra_app(tmp_path):
    """``--config-dir`` and ``hydra.searchpath`` are checked and run as Hydra would run them."""
    from conftest import run_cli

    (tmp_path / "mine" / "experiment").mkdir(parents=True)
    (tmp_path / "mine" / "experiment" / "tiny.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /data: sine\nbackbone:\n  hidden_size: 3\n"
    )
    for args in (
        ["--config-dir", str(tmp_path / "mine"), "experiment=tiny", "--cfg", "job"],
        [f"hydra.searchpath=[file://{tmp_path / 'mine'}]", "experiment=tiny", "--cfg", "job"],
    ):
        res = run_cli(args, tmp_path)
        assert res.returncode == 0, res.stderr
        cfg = OmegaConf.create(res.stdout)
        assert cfg.data.name == "sine" and cfg.backbone.hidden_size == 3


def test_help_and_cfg_job_never_import_torch_lightning_or_mlflow():
    code = (
        "import sys, contextlib, io\n"
        "from rnnlab.cli import main\n"
        "for argv in (['--help'], ['--cfg', 'job', 'backbone=gru'], ['plugins']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "        try:\n"
        "            main(argv)\n"
        "        except SystemExit as e:\n"
        "            assert e.code in (0, None), e.code\n"
        "    assert out.getvalue().strip(), argv\n"
        "heavy = [m for m in ('torch', 'pytorch_lightning', 'mlflow', 'optuna') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


def test_help_lists_every_group_and_option(tmp_path):
    from conftest import run_cli

    res = run_cli(["--help"], tmp_path)
    assert res.returncode == 0
    for group, options in GROUPS.items():
        line = next(line for line in res.stdout.splitlines() if line.strip().startswith(group + " "))
        for option in options:
            assert option in line


def test_cfg_job_prints_the_composed_config(tmp_path):
    from conftest import run_cli

    res = run_cli(["--cfg", "job", "backbone=gru", "backbone.hidden_size=7"], tmp_path)
    assert res.returncode == 0, res.stderr
    cfg = OmegaConf.create(res.stdout)
    assert cfg.backbone.name == "gru" and cfg.backbone.hidden_size == 7


def test_the_01_import_path_still_works():
    from rnnlab import composition, config, validation

    assert config.compose is composition.compose and config.validate is validation.validate


def test_flags_may_follow_overrides_and_info_takes_its_topic(tmp_path):
    from conftest import run_cli

    res = run_cli(["backbone=gru", "--cfg", "job"], tmp_path)
    assert res.returncode == 0 and OmegaConf.create(res.stdout).backbone.name == "gru", res.stderr
    res = run_cli(["--info", "searchpath"], tmp_path)
    assert res.returncode == 0 and "pkg://rnnlab.conf" in res.stdout, res.stderr
