"""The bad-input corpus: every case is one line naming the key, exit status 2, before anything runs.

Each case runs the real CLI entry point (``rnnlab.cli.main``) in an empty working directory and checks
that it printed exactly one line, exited 2, and left no MLflow store, no output dir and no study.
A few cases also run as separate processes (``test_cli_processes``) to check the real exit status.
"""

from __future__ import annotations

import pytest

from rnnlab.cli import main

SWEEP = ["-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2"]

# (arguments, expected start of the message after "rnnlab: error: ", expected fragment or None)
CASES: list[tuple[list[str], str, str | None]] = [
    # unknown plugins and presets, every group
    (["backbone=lstn"], "backbone: unknown backbone 'lstn'", "valid choices: gru, ln_lstm, lstm, rnn"),
    (
        ["data=wether"],
        "data: unknown data 'wether'",
        "chars, copy, csv, digits, electricity, sine, temperature, ucr, weather",
    ),
    (["regularizer=[dropou]"], "regularizer: unknown regularizer 'dropou'", "ar_tar, dropout"),
    (["optimizer=adagrad"], "optimizer: unknown optimizer 'adagrad'", "adam, adamw, sgd"),
    (["scheduler=linear"], "scheduler: unknown scheduler 'linear'", "cosine, plateau, step"),
    (["trainer=tpu"], "trainer: unknown trainer 'tpu'", "cpu, ddp, default, gpu"),
    (["logger=wandb"], "logger: unknown logger 'wandb'", "mlflow"),
    (["experiment=nope"], "experiment: unknown experiment 'nope'", "seed_lstm"),
    (["-m", "sweep=nope"], "sweep: unknown sweep 'nope'", "gru_sine, lstm_forecast"),
    # every value of a comma list is checked, not only the first
    (["-m", "backbone=rnn,lstm,gruu"], "backbone: unknown backbone 'gruu'", None),
    (["-m", "data=sine,nope"], "data: unknown data 'nope'", None),
    (["-m", "data=sine", "backbone.hidden_size=16,-3"], "backbone.hidden_size: must be >= 1, got -3", None),
    (["-m", "data=sine", "optimizer=sgd", "optimizer.momentum=0.5,2"], "optimizer.momentum: must be < 1", None),
    # wrong types and impossible values
    (["backbone.hidden_size=-3"], "backbone.hidden_size: must be >= 1, got -3", None),
    (["backbone.hidden_size=abc"], "backbone.hidden_size: Value 'abc' of type 'str' could not be converted", None),
    (["backbone.hidden_size=1.5"], "backbone.hidden_size: Value '1.5' of type 'float'", None),
    (["backbone.num_layers=0"], "backbone.num_layers: must be >= 1, got 0", None),
    (["backbone.dropout=1.0"], "backbone.dropout: must be < 1", None),
    (["backbone.bidirectional=maybe"], "backbone.bidirectional: Value 'maybe' is not a valid bool", None),
    (["backbone=rnn", "backbone.nonlinearity=sigmoid"], "backbone.nonlinearity: invalid value 'sigmoid'", "relu, tanh"),
    (["data.window=0"], "data.window: must be >= 1, got 0", None),
    (["data.horizon=0"], "data.horizon: must be >= 1, got 0", None),
    (["data.stride=0"], "data.stride: must be >= 1, got 0", None),
    (["data.val_fraction=0"], "data.val_fraction: must be > 0", None),
    (["data.val_fraction=0.6", "data.test_fraction=0.5"], "data.test_fraction: val_fraction + test_fraction", None),
    (["data.scaling=robust"], "data.scaling: invalid value 'robust'", "minmax, none, standard"),
    (["data.batch_size=0"], "data.batch_size: must be >= 1, got 0", None),
    (["data=temperature", "data.city=paris"], "data.city: invalid value 'paris'", "seattle, sf"),
    (["data=sine", "data.length=5"], "data.length: must be >= 10, got 5", None),
    (["data=sine", "data.period=0"], "data.period: must be > 0", None),
    (["data=sine", "data.noise=-1"], "data.noise: must be >= 0", None),
    (["trainer.max_epochs=0"], "trainer.max_epochs: must be >= 1, got 0", None),
    (["trainer.min_epochs=5", "trainer.max_epochs=2"], "trainer.min_epochs: must be <= max_epochs (2), got 5", None),
    (["trainer.gradient_clip_algorithm=max"], "trainer.gradient_clip_algorithm: invalid value 'max'", "norm, value"),
    (["trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val: must be >= 0", None),
    (["trainer.precision=banana"], "trainer.precision: invalid value 'banana'", "16-mixed"),
    (["trainer.accelerator=quantum"], "trainer.accelerator: invalid value 'quantum'", "auto, cpu"),
    (
        ["trainer.accelerator=cpu", "trainer.precision=16-mixed"],
        "trainer.precision: '16-mixed' (float16 autocast) needs a CUDA device and trainer.accelerator is 'cpu'",
        "on the CPU use: 32-true, 64-true, bf16-mixed",
    ),
    (
        ["trainer.precision=transformer-engine"],
        "trainer.precision: 'transformer-engine' needs transformer_engine, which is not installed",
        "bf16-mixed",
    ),
    (["trainer.strategy=ddp_magic"], "trainer.strategy: invalid value 'ddp_magic'", "ddp_spawn"),
    (["trainer.devices=0"], "trainer.devices: must be >= 1 (or -1 for all), got 0", None),
    (["trainer.devices=abc"], "trainer.devices: must be 'auto', a count or a list of device ids", None),
    (
        ["trainer.accelerator=cpu", "trainer.devices=[0,1]"],
        "trainer.devices: with accelerator 'cpu' give a count",
        None,
    ),
    (["trainer.accumulate_grad_batches=0"], "trainer.accumulate_grad_batches: must be >= 1", None),
    (["trainer.limit_train_batches=0"], "trainer.limit_train_batches: must be > 0", None),
    (["trainer.early_stopping.patience=-1"], "trainer.early_stopping.patience: must be >= 0", None),
    (["optimizer.lr=0"], "optimizer.lr: must be > 0", None),
    (["optimizer=sgd", "optimizer.momentum=1.5"], "optimizer.momentum: must be < 1, got 1.5", None),
    (["optimizer.weight_decay=-0.1"], "optimizer.weight_decay: must be >= 0", None),
    (["scheduler=step", "scheduler.gamma=2"], "scheduler.gamma: must be <= 1", None),
    (["scheduler=cosine", "scheduler.interval=batch"], "scheduler.interval: invalid value 'batch'", "epoch, step"),
    (["scheduler=plateau", "scheduler.factor=1"], "scheduler.factor: must be < 1", None),
    (["regularizer=[dropout]", "regularizer.dropout.p=1.5"], "regularizer.dropout.p: must be < 1", None),
    (["regularizer=[ar_tar]", "regularizer.ar_tar.alpha=-1"], "regularizer.ar_tar.alpha: must be >= 0", None),
    (["monitor_mode=biggest"], "monitor_mode: invalid value 'biggest'", "max, min"),
    (["seed=-1"], "seed: must be >= 0, got -1", None),
    (["model.head_hidden=-1"], "model.head_hidden: must be >= 0", None),
    (["resume=/no/such.ckpt"], "resume: checkpoint not found", None),
    (["resume=/etc/hostname"], "resume: not a checkpoint", None),
    # non-finite numbers
    (["optimizer.lr=inf"], "optimizer.lr: must be a finite number, got inf", None),
    (["optimizer.lr=nan"], "optimizer.lr: must be a finite number, got nan", None),
    (["trainer.gradient_clip_val=inf"], "trainer.gradient_clip_val: must be a finite number", None),
    (["data.val_fraction=-inf"], "data.val_fraction: must be a finite number", None),
    # metrics the task does not produce
    (["monitor=val/acc"], "monitor: 'electricity' does not log 'val/acc'", "val/loss, val/mae, val/rmse"),
    (["data=copy", "monitor=val/accuracy"], "monitor_mode: val/accuracy is better higher", "set monitor_mode=max"),
    (["data=copy", "monitor=val/mse"], "monitor: 'copy' does not log 'val/mse'", "val/accuracy, val/loss"),
    (["data=adding", "monitor=val/accuracy", "monitor_mode=max"], "monitor: 'adding' does not log", "val/mse"),
    (["data=weather", "data.target=humidity"], "data.target: invalid value 'humidity'", "precipitation, temp_max"),
    (["data=weather", "data.features=[wind,snow]"], "data.features: no column 'snow'", "temp_min, wind"),
    (["trainer.max_time=0"], "trainer.max_time: must be > 0", None),
    (["backbone.kernel=cuda"], "backbone.kernel: invalid value 'cuda'", "valid choices: cell, fused"),
    (["diagnostics.every_n_epochs=0"], "diagnostics.every_n_epochs: must be >= 1, got 0", None),
    (["diagnostics.enabled=maybe"], "diagnostics.enabled: Value 'maybe' is not a valid bool", None),
    # the sequence tasks' own options
    (["data=digits", "data.order=spiral"], "data.order: invalid value 'spiral'", "permuted, pixels, rows"),
    (["data=ucr", "data.dataset=Foo"], "data.dataset: invalid value 'Foo'", "GunPoint, ItalyPowerDemand"),
    (["data=chars", "data.path=/nope.txt"], "data.path: file not found: '/nope.txt'", None),
    (["data=adding", "data.target=sum"], "data.target: invalid value 'sum'", "last, running"),
    (["data=digits", "monitor=val/rmse"], "monitor: 'digits' does not log 'val/rmse'", "val/accuracy, val/loss"),
    (["scheduler=plateau", "scheduler.monitor=val/acc"], "scheduler.monitor: 'electricity' does not log", None),
    ([*SWEEP, "hydra.sweeper.objective=val/acc"], "hydra.sweeper.objective: train() does not return 'val/acc'", None),
    # tracking URIs
    (
        ["logger.tracking_uri=foo://bar"],
        "logger.tracking_uri: unsupported URI 'foo://bar'",
        "valid schemes: databricks",
    ),
    (["logger.tracking_uri="], "logger.tracking_uri: must not be empty", None),
    (["logger.tracking_uri=mlflow.db"], "logger.tracking_uri: unsupported URI 'mlflow.db'", "sqlite"),
    (["logger.experiment_name="], "logger.experiment_name: must not be empty", None),
    (["logger.flush_every_n_steps=0"], "logger.flush_every_n_steps: must be >= 1", None),
    (["logger.tracking_uri=http://127.0.0.1:1"], "logger.tracking_uri: cannot reach the MLflow server", None),
    (["logger.tracking_uri=mysql://u:pw@127.0.0.1/db"], "logger.tracking_uri: a password in a mysql URI", "PGPASSWORD"),
    # unknown keys, with or without +, listing the keys of the plugin actually selected
    (["backbone.hiden_size=3"], "backbone.hiden_size: unknown key", "valid keys: bidirectional, dropout"),
    (["+backbone.nonexistent_key=1"], "backbone.nonexistent_key: unknown key", "hidden_size"),
    (["foo=1"], "foo: unknown key", "valid keys: backbone, baseline, data"),
    # baselines and the forecasting options of the model
    (["baseline=[persistance]"], "baseline: unknown baseline 'persistance'", "valid choices: drift, linear_ar"),
    (["baseline.seasonal_naive.season=-1"], "baseline.seasonal_naive.season: must be >= 0", None),
    (["data.season=-2"], "data.season: must be >= 0", None),
    (["model.target=delta"], "model.target: invalid value 'delta'", "valid choices: auto, change, level"),
    (["model.normalize=batch"], "model.normalize: invalid value 'batch'", "none, revin"),
    (["model.target=level", "model.difference=true"], "model.difference: the backbone then reads changes", None),
    # truncated BPTT: a positive number of steps, on a task with a target at every step
    (["model.tbptt_steps=0"], "model.tbptt_steps: must be a positive number of steps or null, got 0", None),
    (["model.tbptt_steps=-5"], "model.tbptt_steps: must be a positive number of steps or null, got -5", None),
    (["model.tbptt_steps=abc"], "model.tbptt_steps: Value 'abc' of type 'str' could not be converted", None),
    (["model.tbptt_steps=1.5"], "model.tbptt_steps: Value '1.5' of type 'float'", None),
    (["model.tbptt_steps=true"], "model.tbptt_steps: Value 'True' of type 'bool'", None),
    (["model.tbptt_steps=10"], "model.tbptt_steps: needs a target at every step; data 'electricity'", "forecast"),
    (
        ["data=digits", "model.tbptt_steps=10"],
        "model.tbptt_steps: needs a target at every step; data 'digits' is a classification task",
        "task kinds it serves: language_model, per_step_classification, per_step_regression",
    ),
    (
        ["data=chars", "model.tbptt_steps=50", "backbone.bidirectional=true"],
        "model.tbptt_steps: a bidirectional backbone reads every sequence backwards",
        "set backbone.bidirectional=false or model.tbptt_steps=null",
    ),
    (
        ["data=chars", "model.tbptt_steps=50", "trainer.accumulate_grad_batches=2"],
        "model.tbptt_steps: steps the optimizer once a chunk, so it cannot accumulate batches",
        None,
    ),
    (["-m", "data=copy", "model.tbptt_steps=10,0"], "model.tbptt_steps: must be a positive number", None),
    (["data=adding", "model.tbptt_steps=10"], "model.tbptt_steps: needs a target at every step; data 'adding'", None),
    (["+foo=1"], "foo: unknown key", "valid keys: backbone, baseline, data"),
    (["trainer.max_epoch=3"], "trainer.max_epoch: unknown key", "max_epochs"),
    (["backbone=gru", "backbone.bidirectinal=true"], "backbone.bidirectinal: unknown key", "bidirectional"),
    (["data=sine", "data.city=sf"], "data.city: unknown key", "period"),
    (["backbone=rnn", "+backbone.cell=x"], "backbone.cell: unknown key", "nonlinearity"),
    # override syntax
    (["backbone.hidden_size=[1,2"], "backbone.hidden_size: cannot parse 'backbone.hidden_size=[1,2'", None),
    (["backbone.hidden_size=choice(8"], "backbone.hidden_size: cannot parse", None),
    (["backbone.hidden_size=1,2"], "backbone.hidden_size: sweep overrides (a=1,2 or choice(...)) need -m", None),
    (["optimizer.lr=interval(0.1,0.2)"], "optimizer.lr: sweep overrides", None),
    # mandatory values
    (["data=csv"], "data.path: missing mandatory value", None),
    # search space values in a sweep (command line, params on the command line, preset params)
    ([*SWEEP, "data=sine", "optimizer.lr=tag(log, interval(0, 0.1))"], "optimizer.lr: must be > 0, got 0.0", None),
    ([*SWEEP, "backbone.num_layers=range(0,3)"], "backbone.num_layers: must be >= 1, got 0", None),
    ([*SWEEP, "hydra.sweeper.params.optimizer.lr=choice(0.1,-1)"], "optimizer.lr: must be > 0, got -1", None),
    ([*SWEEP, "+hydra.sweeper.params.backbone.hidden_size=choice(4,0)"], "backbone.hidden_size: must be >= 1", None),
    (["-m", "sweep=gru_sine", "data.window=choice(8, 0)"], "data.window: must be >= 1, got 0", None),
    ([*SWEEP, "hydra.sweeper.n_trials=abc"], "hydra.sweeper.n_trials: Value 'abc'", None),
    (
        ["-m", "sweep=gru_sine", "hydra.sweeper.sampler.name=bogus"],
        "hydra.sweeper.sampler: unknown sampler 'bogus'",
        None,
    ),
    (["-m", "backbone=gru", "--cfg", "job"], "--multirun and --cfg cannot be given together", None),
    # files
    (["--config-dir", "/no/such/dir", "sweep=x"], "--config-dir: directory not found", None),
    (["data=csv", "data.path=/no/such.csv", "data.target=y"], "data.path: file not found: '/no/such.csv'", None),
]


def _csv_cases(tmp_path) -> list[tuple[list[str], str, str | None]]:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    header = tmp_path / "header.csv"
    header.write_text("date,load\n")
    semi = tmp_path / "semi.csv"
    semi.write_text("date;load\n2020-01-01;1\n")
    good = tmp_path / "good.csv"
    good.write_text("date,load,temp\n" + "".join(f"2020-01-{i % 28 + 1:02d},{i},{i}\n" for i in range(300)))
    return [
        ([f"data.path={empty}", "data.target=load"], "data.path: empty.csv is empty", None),
        ([f"data.path={header}", "data.target=load"], "data.path: header.csv has a header but no data rows", None),
        ([f"data.path={semi}", "data.target=load"], "data.target: no column 'load' in semi.csv", "delimiter=semicolon"),
        ([f"data.path={good}", "data.target=lod"], "data.target: no column 'lod' in good.csv", "date, load, temp"),
        ([f"data.path={good}", "data.target=load", "data.features=[tmp]"], "data.features: no column 'tmp'", None),
        ([f"data.path={good}", "data.target=load", "data.sort_by=day"], "data.sort_by: no column 'day'", None),
        (
            [f"data.path={good}", "data.target=load", "data.delimiter=';;'"],
            "data.delimiter: must be one character",
            None,
        ),
        ([f"data.path={good}"], "data.target: missing mandatory value", None),
    ]


def _run(argv: list[str], capsys) -> tuple[int, list[str]]:
    import os

    environ = dict(os.environ)  # main() hands credentials over through the environment; keep ours
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
    finally:
        os.environ.clear()
        os.environ.update(environ)
    err = capsys.readouterr().err
    return exit_info.value.code, [line for line in err.splitlines() if line.strip()]


def _assert_nothing_ran(workdir) -> None:
    left = sorted(
        p.name for p in workdir.iterdir() if p.name not in ("empty.csv", "header.csv", "semi.csv", "good.csv")
    )
    assert left == [], f"a rejected command left {left} behind"


@pytest.mark.parametrize(("argv", "start", "fragment"), CASES, ids=[" ".join(a) for a, _, _ in CASES])
def test_bad_input_is_one_line_exit_2_before_anything_runs(argv, start, fragment, workdir, capsys):
    if "trainer.accelerator=gpu" in argv:
        pytest.importorskip("torch")
    code, lines = _run(argv, capsys)
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"rnnlab: error: {start}"), lines[0]
    if fragment:
        assert fragment in lines[0], lines[0]
    _assert_nothing_ran(workdir)


def test_bad_csv_files(workdir, capsys):
    for args, start, fragment in _csv_cases(workdir):
        code, lines = _run(["data=csv", *args], capsys)
        assert code == 2 and len(lines) == 1, (args, lines)
        assert lines[0].startswith(f"rnnlab: error: {start}"), lines[0]
        if fragment:
            assert fragment in lines[0], lines[0]
        _assert_nothing_ran(workdir)


def test_gpu_asked_for_on_a_machine_without_one(workdir, capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, lines = _run(["trainer.accelerator=gpu"], capsys)
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith("rnnlab: error: trainer.accelerator: 'gpu' asked for, but this machine has no CUDA")
    _assert_nothing_ran(workdir)


def test_a_password_in_a_tracking_uri_is_never_printed(workdir, capsys):
    code, lines = _run(["logger.tracking_uri=http://user:s3cret@127.0.0.1:1"], capsys)
    assert code == 2 and len(lines) == 1
    assert "s3cret" not in lines[0] and "logger.tracking_uri" in lines[0]


def test_the_corpus_is_large(tmp_path):
    assert len(CASES) + len(_csv_cases(tmp_path)) + 2 >= 60


def test_cli_processes(workdir):
    """The real process: exit status 2, one line on stderr, no traceback, nothing in the store."""
    from conftest import run_cli

    for args in (["backbone=lstn"], ["-m", "data=sine", "backbone.hidden_size=16,-3"], ["monitor=val/acc"]):
        res = run_cli(args, workdir)
        lines = [line for line in res.stderr.splitlines() if line.strip()]
        assert res.returncode == 2 and len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    _assert_nothing_ran(workdir)


def test_bad_values_in_a_presets_search_space_dict(workdir, capsys):
    """hydra-optuna-sweeper's ``search_space`` form is checked like ``params``: bounds and choices."""
    (workdir / "mine" / "sweep").mkdir(parents=True)
    (workdir / "mine" / "sweep" / "s.yaml").write_text(
        "# @package _global_\n"
        "defaults:\n  - override /data: sine\n  - override /hydra/sweeper: optuna\n"
        "hydra:\n  sweeper:\n    n_trials: 2\n    search_space:\n"
        "      backbone.hidden_size: {type: int, low: 0, high: 8}\n"
    )
    code, lines = _run(["-m", "--config-dir", str(workdir / "mine"), "sweep=s"], capsys)
    assert code == 2 and lines == ["rnnlab: error: backbone.hidden_size: must be >= 1, got 0"], lines
    assert sorted(p.name for p in workdir.iterdir()) == ["mine"]


def test_range_stop_is_checked_only_where_the_sweeper_samples_it():
    """Hydra's basic sweeper excludes ``stop``; the Optuna sweeper includes it (as hydra-optuna-sweeper)."""
    from rnnlab.checks import check
    from rnnlab.errors import ConfigError

    sweep = ["data=sine", "data.val_fraction=range(0.1,0.9,0.2)", "data.test_fraction=0.1"]
    check(sweep, multirun=True, run=False)  # 0.1, 0.3, 0.5, 0.7: all valid
    with pytest.raises(ConfigError, match=r"val_fraction \+ test_fraction must be < 1, got 0.9"):
        check([*sweep, "hydra/sweeper=optuna"], multirun=True, run=False)


def test_a_checkpoint_that_does_not_load_weights_only_is_one_line_without_unsafe_advice(workdir, capsys):
    import pickle
    import zipfile

    ckpt = workdir / "evil.ckpt"
    with zipfile.ZipFile(ckpt, "w") as z:  # a zip, as torch.save writes, whose pickle names a global
        z.writestr("archive/data.pkl", pickle.dumps(zipfile.ZipInfo("x"), protocol=2))
        z.writestr("archive/version", "3\n")
    code, lines = _run([f"resume={ckpt}", "data=sine"], capsys)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"rnnlab: error: resume: {ckpt} does not load as a checkpoint, weights only"), lines
    assert "weights_only" not in lines[0] and "trusted" not in lines[0]
    assert sorted(p.name for p in workdir.iterdir()) == ["evil.ckpt"]
