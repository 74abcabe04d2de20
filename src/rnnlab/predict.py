"""``rnnlab predict RUN_ID``: use a logged run's model on new data, without training.

What it does follows the run's task:

- **forecasting** (``--steps N [--input series.csv] [--columns A,B]``): the next N values of the
  target after the end of the series: the CSV's (a column for each series the model reads, by its
  name in the run's data, or by ``--columns``, target first; other columns are ignored; rows in file
  order, or by the run's ``data.sort_by`` column when the file has it), or the run's own series
  without ``--input``. The last ``data.window`` rows are scaled with the run's
  scaler (fitted on its training part) and the model forecasts its ``data.horizon`` steps; beyond
  them, a model that reads the target alone feeds its own forecasts back as inputs (recursive).
- **sequence classification and regression** (``--input sequences.npy|.csv``): one prediction per
  sequence. ``.npy``: float sequences (N, T, C), or (N, T) for one channel; ``.csv``: one sequence
  per row, no header, one channel. Values in the data's own units (standardized here as the run
  standardized its training split); a shorter sequence ends in NaN (npy) or empty cells (csv), which
  the model never reads. Classification gives the class and each class's probability.
- **character language model** (``--prompt TEXT --length N [--temperature T] [--seed S]``): N
  characters written after the prompt, each drawn from softmax(logits / T) (T = 0: the most likely).

Output to stdout, or ``--output FILE`` (``.csv`` or ``.json``; text also ``.txt``). Which run,
weights and config were used goes to stderr, so stdout stays data.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from rnnlab.errors import RnnlabError, first_line

_DELIMITERS = {"comma": ",", "semicolon": ";", "tab": "\t", "pipe": "|"}
_OUTPUTS = (".csv", ".json", ".txt")


def _fail(message: str) -> RnnlabError:
    return RnnlabError(f"predict: {message}")


# ----------------------------------------------------------------------------- forecasting


def series_columns(dm: Any) -> list[str]:
    """The columns a forecasting model reads, in order (column 0 the target): the data module's own."""
    return [str(c) for c in dm.load()[1]]


def read_series(path: Path, columns: list[str], delimiter: str = ",", sort_by: str | None = None) -> np.ndarray:
    """``columns`` of the CSV at ``path`` as floats (T, C), in file order or by ``sort_by``."""
    import pandas as pd

    try:
        frame = pd.read_csv(path, sep=delimiter, encoding="utf-8-sig")
    except FileNotFoundError:
        raise _fail(f"--input: file not found: {str(path)!r}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise _fail(f"--input: cannot read {path.name} as CSV: {str(e).splitlines()[0]}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise _fail(
            f"--input: {path.name} has no column {missing[0]!r}; the model reads {', '.join(columns)} "
            f"(the file has {', '.join(frame.columns) or 'none'})"
        )
    if sort_by and sort_by in frame.columns:
        key = pd.to_datetime(frame[sort_by], errors="coerce", format="mixed")
        frame = frame.iloc[(key if key.notna().all() else frame[sort_by]).argsort(kind="stable").to_numpy()]
    values = frame[columns].apply(pd.to_numeric, errors="coerce")
    bad = values.columns[values.isna().any()].tolist()
    if bad:
        rows = int(values[bad[0]].isna().sum())
        raise _fail(f"--input: column {bad[0]!r} of {path.name} has {rows} empty or non-numeric values")
    return values.to_numpy(dtype=np.float64)


def forecast(net: Any, dm: Any, values: np.ndarray, steps: int) -> np.ndarray:
    """The next ``steps`` target values after ``values`` (T, C) in original units: (steps,).

    The last ``dm.window`` rows, scaled as the run scaled its series, give ``dm.horizon`` steps at a
    time; past the horizon a univariate model reads its own forecasts (scaled back) as inputs."""
    import torch

    window, horizon = dm.window, dm.horizon
    if len(values) < window:
        raise _fail(f"--input: {len(values)} rows; the model reads a window of {window} (data.window)")
    if steps > horizon and values.shape[1] > 1:
        raise _fail(
            f"--steps: at most {horizon} (the model's data.horizon) for a model that reads "
            f"{values.shape[1] - 1} feature column(s) besides the target: further steps need their future"
        )
    scaled = (values[-window:] - dm._mean) / dm._scale  # (W, C), the run's scaler
    out: list[float] = []
    with torch.no_grad():
        while len(out) < steps:
            x = torch.from_numpy(scaled[-window:][None]).float()  # (1, W, C)
            y = net(x)[0].double().numpy()  # (horizon,) original units
            out.extend(y.tolist())
            scaled = np.concatenate([scaled, dm.scale_target(y)[:, None]])  # univariate here
    return np.asarray(out[:steps])


# ----------------------------------------------------------------------------- sequences


def read_sequences(path: Path, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Sequences (N, T, C) with NaN after each one's end, and their lengths (N,), from .npy or .csv."""
    if path.suffix == ".npy":
        try:
            x = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise _fail(f"--input: file not found: {str(path)!r}") from None
        except ValueError as e:
            raise _fail(f"--input: {path.name} is no plain .npy array: {e}") from None
        x = np.asarray(x, dtype=np.float64)
    elif path.suffix == ".csv":
        import pandas as pd

        try:
            x = pd.read_csv(path, header=None, skip_blank_lines=True).apply(pd.to_numeric, errors="coerce").to_numpy()
        except FileNotFoundError:
            raise _fail(f"--input: file not found: {str(path)!r}") from None
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            raise _fail(f"--input: cannot read {path.name} as CSV: {str(e).splitlines()[0]}") from None
        x = x.astype(np.float64)
    else:
        raise _fail(f"--input: {path.name}: sequences come as .npy or .csv")
    if x.ndim == 2 and channels == 1:
        x = x[:, :, None]
    if x.ndim != 3 or x.shape[2] != channels or len(x) == 0:
        raise _fail(
            f"--input: {path.name} holds an array of shape {x.shape}; the model reads sequences of {channels} "
            f"channel(s): (N, T, {channels})" + (" or (N, T), a row each in a .csv" if channels == 1 else "")
        )
    present = ~np.isnan(x).all(axis=2)  # (N, T) steps with values
    lengths = present.sum(axis=1)
    if (lengths == 0).any():
        raise _fail(f"--input: sequence {int(np.argmin(lengths))} of {path.name} has no values")
    # steps after a sequence's end are padding; a gap before it is an error
    if (present != (np.arange(x.shape[1])[None, :] < lengths[:, None])).any() or np.isnan(x[present]).any():
        raise _fail(f"--input: {path.name} has missing values inside a sequence (only its end may be empty)")
    return x, lengths


def standardized(dm: Any, x: np.ndarray) -> np.ndarray:
    """Sequences in the data's units standardized as the run's data module standardized its own:
    per channel (``mean``, ``std`` of its training split) or over every value (``pixel_mean``,
    ``pixel_std``); as they are for a module that does not scale (synthetic tasks)."""
    if hasattr(dm, "pixel_mean"):
        return (x - dm.pixel_mean) / dm.pixel_std
    mean, std = getattr(dm, "mean", None), getattr(dm, "std", None)
    if isinstance(mean, np.ndarray) and isinstance(std, np.ndarray) and mean.shape == (x.shape[2],):
        return (x - mean) / std
    return x


def predict_sequences(net: Any, dm: Any, x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The net's outputs for each sequence: logits (N, K) or values (N, O), original units."""
    import torch

    z = np.nan_to_num(standardized(dm, x), nan=0.0)  # padding: zeros, as the data modules pad
    batches = []
    with torch.no_grad():
        for start in range(0, len(z), 512):
            xb = torch.from_numpy(z[start : start + 512]).float()  # (B, T, C)
            lb = torch.from_numpy(lengths[start : start + 512]).long()  # (B,)
            full = bool((lb == z.shape[1]).all())
            batches.append((net(xb) if full else net(xb, lb)).double().numpy())
    return np.concatenate(batches)


# ----------------------------------------------------------------------------- output


def _write(rows: list[dict[str, Any]], meta: dict[str, Any], output: Path | None) -> None:
    """``rows`` as CSV (stdout or a .csv file) or JSON (``meta`` plus the rows)."""
    import csv
    import io

    if output is not None and output.suffix == ".json":
        output.write_text(json.dumps({**meta, "predictions": rows}, indent=2) + "\n")
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    if output is None:
        sys.stdout.write(buffer.getvalue())
    else:
        output.write_text(buffer.getvalue())


def predict(opts: argparse.Namespace) -> None:
    from rnnlab import logged
    from rnnlab.train import _quiet

    _quiet()
    output = Path(opts.output) if opts.output else None
    if output is not None and output.suffix not in _OUTPUTS:
        raise _fail(f"--output: {output.name}: write .csv or .json (text also .txt)")
    for name in ("steps", "length"):
        value = getattr(opts, name)
        if value is not None and value < 1:
            raise _fail(f"--{name}: must be >= 1, got {value}")
    if opts.temperature is not None and not (math.isfinite(opts.temperature) and opts.temperature >= 0):
        raise _fail(f"--temperature: must be a finite number >= 0, got {opts.temperature}")
    loaded = logged.load(opts.run_id, opts.tracking_uri, [], command="predict")
    print(f"rnnlab predict: {loaded.describe()}", file=sys.stderr, flush=True)
    dm, net = loaded.dm, loaded.net.cpu().eval()
    kind = dm.task().kind
    meta: dict[str, Any] = {"run_id": loaded.run_id, "model": loaded.source, "kind": kind}
    if kind == "forecast":
        _refuse(opts, "forecasting", ("prompt", "length", "temperature", "seed"))
        if opts.steps is None:
            raise _fail("--steps: how many steps to forecast (e.g. --steps 24)")
        columns = series_columns(dm)
        if opts.input:
            data = loaded.cfg.data
            delimiter = _DELIMITERS.get(str(data.get("delimiter", ",")), str(data.get("delimiter", ",")))
            names = columns
            if opts.columns:  # the file's own names for the model's columns, in the model's order
                names = [c.strip() for c in opts.columns.split(",")]
                if len(names) != len(columns):
                    raise _fail(
                        f"--columns: the model reads {len(columns)} column(s) ({', '.join(columns)}), got {len(names)}"
                    )
            values = read_series(Path(opts.input), names, delimiter, data.get("sort_by"))
        else:
            values = dm.history()
        pred = forecast(net, dm, values, opts.steps)
        meta.update(target=columns[0], input=opts.input or f"the run's series ({len(values)} rows)")
        _write([{"step": k + 1, columns[0]: float(v)} for k, v in enumerate(pred)], meta, output)
    elif kind == "language_model":
        _refuse(opts, "a language model", ("steps", "input", "columns"))
        if opts.prompt is None or opts.length is None:
            raise _fail("a character model writes text: give --prompt TEXT and --length N")
        if not opts.prompt:
            raise _fail("--prompt: give at least one character")
        import torch

        # the sampler of the data module's own package (rnnlab_plugins.data.chars.sample)
        sample = getattr(sys.modules[type(dm).__module__], "sample", None)
        if sample is None or not hasattr(dm, "vocab"):
            raise _fail(f"{type(dm).__name__} offers no text sampler (a function 'sample' beside it)")
        temperature = 1.0 if opts.temperature is None else opts.temperature
        seed = 0 if opts.seed is None else opts.seed
        text = sample(net, dm.vocab, opts.prompt, opts.length, temperature, torch.Generator().manual_seed(seed))
        meta.update(prompt=opts.prompt, temperature=temperature, seed=seed, text=text)
        if output is not None and output.suffix == ".json":
            output.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
        elif output is not None:
            output.write_text(opts.prompt + text, encoding="utf-8")
        else:
            sys.stdout.write(opts.prompt + text + "\n")
    elif kind in ("classification", "regression"):
        _refuse(opts, f"a {kind} model", ("steps", "columns", "prompt", "length", "temperature", "seed"))
        if not opts.input:
            raise _fail("--input: the sequences to predict, a .npy (N, T, C) or a .csv (a sequence a row)")
        task = dm.task()
        x, lengths = read_sequences(Path(opts.input), task.input_size)
        out = predict_sequences(net, dm, x, lengths)
        meta.update(input=opts.input)
        rows: list[dict[str, Any]] = []
        if kind == "classification":
            import torch

            probs = torch.softmax(torch.from_numpy(out), dim=-1).numpy()  # (N, K)
            names = [str(c) for c in (task.classes or range(task.output_size))]
            for i, p in enumerate(probs):
                chances = {f"p_{n}": float(v) for n, v in zip(names, p, strict=True)}
                rows.append({"sequence": i, "class": names[int(p.argmax())], **chances})
        else:
            for i, values in enumerate(out):
                rows.append({"sequence": i, **{f"y{j}": float(v) for j, v in enumerate(values)}})
        _write(rows, meta, output)
    else:
        raise _fail(
            f"run {loaded.run_id[:8]} is a {kind} model (a target at every step); predict serves forecasting, "
            "sequence classification and regression, and character models (rnnlab evaluate serves every task)"
        )
    if output is not None:
        print(f"rnnlab predict: wrote {output}", file=sys.stderr)


def _refuse(opts: argparse.Namespace, what: str, names: tuple[str, ...]) -> None:
    given = [n for n in names if getattr(opts, n) is not None]
    if given:
        raise _fail(f"--{given[0]}: not for {what}")


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line, exit status 2, as every rnnlab error."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        print(f"rnnlab: error: {self.prog.removeprefix('rnnlab ')}: {message}", file=sys.stderr)
        sys.exit(2)


def main(args: list[str]) -> None:
    """``rnnlab predict RUN_ID [--steps N] [--input FILE] [--prompt TEXT --length N] [--output FILE]``."""
    from rnnlab.schemas import LoggerConfig

    parser = OneLineParser(
        prog="rnnlab predict",
        description="forecast, classify or write text with a logged run's model",
    )
    parser.add_argument("run_id")
    parser.add_argument("--steps", type=int, help="forecasting: steps ahead")
    parser.add_argument("--input", help="forecasting: a CSV series; classification: sequences (.npy or .csv)")
    parser.add_argument(
        "--columns", help="forecasting: the CSV's columns to read as the model's (target first), comma-separated"
    )
    parser.add_argument("--prompt", help="character model: the text to continue")
    parser.add_argument("--length", type=int, help="character model: characters to write")
    parser.add_argument("--temperature", type=float, help="character model: sampling temperature (default 1; 0 greedy)")
    parser.add_argument("--seed", type=int, help="character model: the sampler's seed (default 0)")
    parser.add_argument("--output", help="write to FILE (.csv or .json; text also .txt) instead of stdout")
    parser.add_argument(
        "--tracking-uri", default=LoggerConfig.tracking_uri, help="the MLflow store (default: %(default)s)"
    )
    opts = parser.parse_args(args)
    try:
        predict(opts)
    except RnnlabError as e:
        print(f"rnnlab: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("rnnlab: error: predict: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"rnnlab: error: predict: {type(e).__name__}: {first_line(str(e))}", file=sys.stderr)
        sys.exit(1)
