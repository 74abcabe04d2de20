"""Every shipped YAML composes and validates; every class of bad input gets a one-line error."""

import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from rnnlab.config import compose, explain, list_groups, validate
from rnnlab.errors import ConfigError

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
    import torch

    from rnnlab.train import build

    monkeypatch.chdir(tmp_path)
    for overrides in (
        *[[f"backbone={b}"] for b in GROUPS["backbone"]],
        [f"regularizer=[{','.join(GROUPS['regularizer'])}]"],
        *[[f"optimizer={o}"] for o in GROUPS["optimizer"]],
        *[[f"scheduler={s}"] for s in GROUPS["scheduler"]],
        *[[f"experiment={e}"] for e in GROUPS["experiment"]],
    ):
        cfg = _compose(["data=sine", "data.length=300", *overrides])
        dm, model = build(cfg)
        x, y = dm.splits["train"][0][:4], dm.splits["train"][1][:4]
        assert model(x).shape == y.shape
        opt = model.configure_optimizers()
        assert isinstance(opt if isinstance(opt, torch.optim.Optimizer) else opt["optimizer"], torch.optim.Optimizer)


def test_seed_lstm_experiment_is_the_articles_model():
    cfg = _compose(["experiment=seed_lstm"])
    assert (cfg.backbone.name, cfg.backbone.hidden_size, cfg.backbone.num_layers) == ("lstm", 50, 3)
    assert cfg.backbone.dropout == 0.2 and cfg.regularizer.dropout.p == 0.2
    assert cfg.optimizer._target_ == "torch.optim.Adam" and cfg.data.horizon == 1


BAD = [
    (["backbone=lstn"], "backbone: unknown backbone 'lstn'; valid choices: gru, lstm, rnn"),
    (["backbone.hidden_size=-3"], "backbone.hidden_size: must be >= 1, got -3"),
    (["backbone.hidden_size=abc"], "backbone.hidden_size: Value 'abc' of type 'str' could not be converted"),
    (["backbone.hiden_size=3"], "backbone.hiden_size: unknown key; valid keys: bidirectional, dropout"),
    (["foo=1"], "foo: unknown key; valid keys: backbone, data"),
    (["trainer.max_epochs=0"], "trainer.max_epochs: must be >= 1, got 0"),
    (
        ["trainer.gradient_clip_algorithm=max"],
        "trainer.gradient_clip_algorithm: invalid value 'max'; valid choices: norm, value",
    ),
    (["optimizer=sgd", "optimizer.momentum=1.5"], "optimizer.momentum: must be < 1, got 1.5"),
    (["regularizer=[dropou]"], "regularizer: unknown regularizer 'dropou'; valid choices: ar_tar, dropout"),
    (["data.city=paris"], "data.city: invalid value 'paris'; valid choices: seattle, sf"),
    (["data.val_fraction=0.6", "data.test_fraction=0.5"], "data.test_fraction: val_fraction + test_fraction"),
    (["data=csv", "data.path=/no/such.csv", "data.target=y"], "data.path: file not found: '/no/such.csv'"),
    (["resume=/no/such.ckpt"], "resume: checkpoint not found"),
]


@pytest.mark.parametrize(("overrides", "expected"), BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_input_is_one_line_naming_key_and_choices(overrides, expected):
    with pytest.raises(Exception) as err:
        _compose(overrides)
    message = explain(err.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_missing_csv_column_lists_the_columns(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("date,load,temp\n2020-01-01,1,2\n")
    with pytest.raises(ConfigError) as err:
        _compose(["data=csv", f"data.path={path}", "data.target=lod"])
    assert str(err.value) == "data.target: no column 'lod' in s.csv; valid choices: date, load, temp"


def test_cli_reports_bad_input_in_one_line_with_nonzero_exit(tmp_path):
    from conftest import run_cli

    for args, expected in [
        (["backbone=lstn"], "valid choices: gru, lstm, rnn"),
        (["backbone.hidden_size=abc"], "backbone.hidden_size"),
        (["data=csv", "data.path=no.csv", "data.target=y"], "data.path: file not found"),
    ]:
        res = run_cli(args, tmp_path)
        assert res.returncode == 2, res.stderr
        lines = [line for line in res.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and expected in lines[0], res.stderr
        assert "Traceback" not in res.stderr
    assert not (tmp_path / "mlflow.db").exists()  # nothing started, nothing left RUNNING


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
