"""``rnnlab predict RUN_ID``: a logged model on new data - forecasts from the end of a CSV or of the
run's series, classes of sequences from .npy / .csv, text from a prompt - checked against the same
model as MLflow logged it (``mlflow.pytorch.load_model``), computed here; and its bad inputs."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import SMALL, run_cli
from mlflow.tracking import MlflowClient
from test_evaluate import _bare_run, _main, evaluates_to_its_logged_scores

from rnnlab import cli, tracking
from rnnlab.composition import compose

TINY = ("backbone.hidden_size=8", "trainer.max_epochs=1", "trainer.accelerator=cpu", "trainer.devices=1")


def _train(workdir: Path, *overrides: str) -> tuple[str, Any, Any]:
    """A run made by the CLI; its id, its trained net (built here from the same overrides, its
    best checkpoint's weights) and that build's data module."""
    from rnnlab.train import build

    res = run_cli([*TINY, "logger.log_model=false", *overrides], workdir)
    assert res.returncode == 0, res.stderr[-2000:]
    client = MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("rnnlab").experiment_id], max_results=1)
    dm, model = build(compose([*TINY, *overrides]))
    (ckpt,) = (workdir / "outputs").rglob("best.ckpt")
    model.load_state_dict(torch.load(ckpt, weights_only=True)["state_dict"])
    return run.info.run_id, model.net.eval(), dm


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.slow  # a training run and two predictions as processes, ~45 s
def test_forecast_from_the_end_of_a_csv_or_of_the_runs_series(workdir, capsys):
    t = np.arange(300)
    load = 50 + 8 * np.sin(2 * np.pi * t / 24) + 0.5 * np.sin(t / 7)
    dates = [f"2024-01-{1 + i // 24:02d} {i % 24:02d}:00" for i in t]
    lines = [f"{d},{v:.5f}\n" for d, v in zip(dates, load, strict=True)]
    (workdir / "series.csv").write_text("date,load\n" + "".join(lines))
    run_id, net, _ = _train(workdir, "data=csv", "data.path=series.csv", "data.target=load", "data.window=12")
    mean, std = load[:210].mean(), load[:210].std()  # the training part: 300 - 45 - 45 rows

    def by_hand(series: np.ndarray, steps: int) -> list[float]:
        """The logged net on the last 12 scaled values, its forecasts fed back."""
        scaled = list((series - mean) / std)
        out = []
        with torch.no_grad():
            for _ in range(steps):
                x = torch.tensor(scaled[-12:], dtype=torch.float32)[None, :, None]  # (1, 12, 1)
                value = float(net(x)[0, 0])
                out.append(value)
                scaled.append((value - mean) / std)
        return out

    new = 60 + 5 * np.cos(np.arange(40) / 3)
    (workdir / "new.csv").write_text("load,note\n" + "".join(f"{v:.5f},x\n" for v in new))
    res = run_cli(["predict", run_id, "--input", "new.csv", "--steps", "3", "--output", "out.json"], workdir)
    assert res.returncode == 0, res.stderr[-2000:]
    used = res.stderr.strip().splitlines()[0]
    assert used.startswith(f"rnnlab predict: run {run_id} (") and "checkpoints/best.ckpt (epoch 0, step " in used
    saved = json.loads((workdir / "out.json").read_text())
    assert saved["run_id"] == run_id and saved["target"] == "load" and saved["kind"] == "forecast"
    assert [p["step"] for p in saved["predictions"]] == [1, 2, 3]
    got = [p["load"] for p in saved["predictions"]]
    assert got == pytest.approx(by_hand(new, 3), rel=1e-5)  # step 1 the net's forward, 2 and 3 fed back

    res = run_cli(["predict", run_id, "--steps", "2"], workdir)  # from the end of the run's own series
    assert res.returncode == 0, res.stderr[-2000:]
    rows = _rows(res.stdout)
    assert [r["step"] for r in rows] == ["1", "2"]
    assert [float(r["load"]) for r in rows] == pytest.approx(by_hand(load, 2), rel=1e-5)

    # another name for the column: --columns names the file's columns in the model's order
    (workdir / "renamed.csv").write_text("level\n" + "".join(f"{v:.5f}\n" for v in new))
    cli.main(["predict", run_id, "--input", "renamed.csv", "--columns", "level", "--steps", "1"])
    assert [float(r["load"]) for r in _rows(capsys.readouterr().out)] == pytest.approx(by_hand(new, 1), rel=1e-5)

    (workdir / "wrong.csv").write_text("date,demand\n" + "".join(f"{d},1.0\n" for d in dates[:20]))
    code, err = _main(["predict", run_id, "--input", "wrong.csv", "--steps", "2"], capsys)
    assert code == 2 and err[-1] == (
        "rnnlab: error: predict: --input: wrong.csv has no column 'load'; the model reads load "
        "(the file has date, demand)"
    )
    (workdir / "short.csv").write_text("load\n1\n2\n3\n")
    code, err = _main(["predict", run_id, "--input", "short.csv", "--steps", "2"], capsys)
    assert (
        code == 2 and err[-1] == "rnnlab: error: predict: --input: 3 rows; the model reads a window of 12 (data.window)"
    )
    code, err = _main(["predict", run_id, "--steps", "2", "--prompt", "x"], capsys)
    assert code == 2 and err[-1] == "rnnlab: error: predict: --prompt: not for forecasting"


@pytest.mark.slow  # a training run and two predictions as processes, ~45 s
def test_a_character_model_writes_text_after_a_prompt(workdir, capsys):
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran"]
    rng = np.random.default_rng(0)
    text = " ".join(rng.choice(words, 1200))[:4000]
    (workdir / "text.txt").write_text(text)
    run_id, net, _ = _train(
        workdir,
        "data=chars",
        "data.path=text.txt",
        "data.length=20",
        "data.sample_chars=0",
        "backbone.hidden_size=16",
        "trainer.max_epochs=3",
        "optimizer.lr=0.02",
    )
    vocab = ("<unk>", *sorted(set(text[: len(text) - 2 * int(len(text) * 0.05)])))  # the training part's
    evaluates_to_its_logged_scores(workdir, run_id, capsys)  # bits per character, perplexity, unigram

    prompt = "the ca"
    res = run_cli(["predict", run_id, "--prompt", prompt, "--length", "12", "--temperature", "0"], workdir)
    assert res.returncode == 0, res.stderr[-2000:]
    ids = [vocab.index(c) for c in prompt]
    with torch.no_grad():  # greedy, the whole prefix read again at every step (no state carried)
        for _ in range(12):
            ids.append(int(net(torch.tensor([ids]))[0, -1].argmax()))
    written = "".join("\ufffd" if i == 0 else vocab[i] for i in ids[len(prompt) :])  # <unk> as U+FFFD
    assert res.stdout == prompt + written + "\n"

    args = ["predict", run_id, "--prompt", prompt, "--length", "30", "--temperature", "0.8", "--seed", "3"]
    res = run_cli([*args, "--output", "sample.json"], workdir)
    assert res.returncode == 0, res.stderr[-2000:]
    saved = json.loads((workdir / "sample.json").read_text())
    assert (saved["prompt"], saved["temperature"], saved["seed"]) == (prompt, 0.8, 3)
    from rnnlab_plugins.data.chars import sample

    assert saved["text"] == sample(net, vocab, prompt, 30, 0.8, torch.Generator().manual_seed(3))

    cli.main(["predict", run_id, "--prompt", prompt, "--length", "30"])  # temperature 1 and seed 0 by default
    default = sample(net, vocab, prompt, 30, 1.0, torch.Generator().manual_seed(0))
    assert capsys.readouterr().out == prompt + default + "\n"

    code, err = _main(["predict", run_id, "--length", "5"], capsys)
    assert (
        code == 2
        and err[-1] == "rnnlab: error: predict: a character model writes text: give --prompt TEXT and --length N"
    )


@pytest.mark.slow  # a training run and two predictions as processes, ~45 s
def test_classify_sequences_from_npy_and_csv(workdir, capsys):
    data = ("data=ucr", "data.dataset=ItalyPowerDemand")
    run_id, net, dm = _train(workdir, *data)
    classes = list(dm.classes)
    evaluates_to_its_logged_scores(workdir, run_id, capsys)  # accuracy, F1, majority class

    raw = np.random.default_rng(1).normal(1.0, 2.0, size=(5, 24))  # (N, T) in the data's units
    ragged = raw.copy()
    ragged[2, 20:] = np.nan  # a sequence of 20 steps
    np.save(workdir / "seqs.npy", ragged)
    res = run_cli(["predict", run_id, "--input", "seqs.npy", "--output", "classes.csv"], workdir)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = _rows((workdir / "classes.csv").read_text())
    with torch.no_grad():
        for i, row in enumerate(rows):
            steps = 20 if i == 2 else 24
            x = torch.from_numpy((raw[i, :steps] - dm.mean[0]) / dm.std[0]).float()[None, :, None]  # (1, T, 1)
            p = torch.softmax(net(x)[0].double(), -1).numpy()
            assert row["class"] == classes[int(p.argmax())]
            assert [float(row[f"p_{c}"]) for c in classes] == pytest.approx(p, abs=1e-5)

    (workdir / "seqs.csv").write_text(
        "\n".join(",".join("" if np.isnan(v) else f"{v:.17g}" for v in seq) for seq in ragged) + "\n"
    )
    res = run_cli(["predict", run_id, "--input", "seqs.csv"], workdir)
    assert res.returncode == 0, res.stderr[-2000:]
    assert _rows(res.stdout) == rows  # the same sequences as .csv: the same answers

    np.save(workdir / "two.npy", np.zeros((3, 24, 2)))
    code, err = _main(["predict", run_id, "--input", "two.npy"], capsys)
    assert code == 2 and err[-1] == (
        "rnnlab: error: predict: --input: two.npy holds an array of shape (3, 24, 2); the model reads "
        "sequences of 1 channel(s): (N, T, 1) or (N, T), a row each in a .csv"
    )


@pytest.mark.slow  # a training run and a prediction, ~30 s
def test_sequence_regression_gives_a_value_per_sequence(workdir, capsys):
    data = ("data=adding", "data.length=10", "data.n_train=256", "data.n_val=64", "data.n_test=64")
    run_id, net, _ = _train(workdir, *data)
    evaluates_to_its_logged_scores(workdir, run_id, capsys)  # mse, the mean baseline
    rng = np.random.default_rng(2)
    x = np.stack([rng.uniform(0, 1, (4, 10)), np.zeros((4, 10))], axis=2)  # (N, T, 2): values, markers
    x[:, [1, 6], 1] = 1.0  # the two marked values of each sequence
    np.save(workdir / "adding.npy", x)
    cli.main(["predict", run_id, "--input", "adding.npy"])
    rows = _rows(capsys.readouterr().out)
    with torch.no_grad():
        expected = net(torch.from_numpy(x).float())[:, 0].double().numpy()  # the adding task is not scaled
    assert [r["sequence"] for r in rows] == ["0", "1", "2", "3"]
    assert [float(r["y0"]) for r in rows] == pytest.approx(expected, rel=1e-5)


def test_predict_bad_inputs_are_one_line(workdir, capsys):
    code, err = _main(["predict", "0123abcd", "--steps", "0"], capsys)
    assert (code, err) == (2, ["rnnlab: error: predict: --steps: must be >= 1, got 0"])
    code, err = _main(["predict", "0123abcd", "--steps", "three"], capsys)
    assert (code, err) == (2, ["rnnlab: error: predict: argument --steps: invalid int value: 'three'"])
    code, err = _main(["predict", "0123abcd", "--steps", "2", "--output", "out.xlsx"], capsys)
    assert (code, err) == (2, ["rnnlab: error: predict: --output: out.xlsx: write .csv or .json (text also .txt)"])
    no_model = _bare_run(workdir, tracking.config_yaml(compose(list(SMALL))))
    capsys.readouterr()
    code, err = _main(["predict", "0123abcd", "--steps", "2"], capsys)
    assert (code, err) == (2, [f"rnnlab: error: predict: no run '0123abcd' in sqlite:///{workdir}/mlflow.db"])
    code, err = _main(["predict", no_model, "--steps", "2"], capsys)
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"rnnlab: error: predict: run {no_model[:8]} has no model: it logged no checkpoints/")
    code, err = _main(["predict", no_model, "--prompt", "a", "--length", "0"], capsys)
    assert (code, err) == (2, ["rnnlab: error: predict: --length: must be >= 1, got 0"])
