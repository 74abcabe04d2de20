"""``rnnlab compare``: runs from the MLflow store grouped by configuration, each metric as mean ± a
95 % interval over the group's runs (its seeds), the best baseline beside it, and a verdict when two
configurations are compared.

Runs are read through MLflow's API (``MlflowClient.search_runs``), never the database file. A group is
the runs whose params agree on every key but those of ``rnnlab.tracking.NOT_CONFIG`` (the seed, the
logger, the Optuna trial, ...): the seeds of ``python -m rnnlab -m seeds=5`` form one group.

The interval is Student's t with n - 1 degrees of freedom, mean ± t(0.975, n-1) · s / √n (s the sample
standard deviation); one run gives no interval. The verdict's interval on a difference of means is
Welch's: ± t(0.975, dof) · √(s₁²/n₁ + s₂²/n₂), dof from the Welch-Satterthwaite equation; the difference is
significant at 5 % when that interval excludes 0.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnnlab.errors import RnnlabError

# The metric shown when none is asked for: the first of these that the runs logged.
DEFAULT_METRICS = ("test/rmse", "test/accuracy", "test/bpc", "test/loss")
# Metrics where higher is better (every other one: lower is better).
HIGHER_IS_BETTER = ("accuracy", "f1")
# Params that follow from others and only widen the table: a run's data description and model size.
DERIVED = ("model.n_parameters",)
FORMATS = ("markdown", "csv", "table")
CONFIDENCE = 0.95


class CompareError(RnnlabError):
    """Bad input to ``rnnlab compare``: one line, exit 2."""


# ----------------------------------------------------------------------------- statistics


def t_quantile(p: float, dof: float) -> float:
    """Student's t quantile (scipy, which scikit-learn and pmdarima bring)."""
    from scipy import stats

    return float(stats.t.ppf(p, dof))


@dataclass
class Summary:
    """Mean, sample standard deviation, n and the half-width of the 95 % t interval (None for n < 2)."""

    values: list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return math.fsum(self.values) / self.n

    @property
    def var(self) -> float:
        m = self.mean
        return math.fsum((v - m) ** 2 for v in self.values) / (self.n - 1) if self.n > 1 else float("nan")

    @property
    def half_width(self) -> float | None:
        if self.n < 2:
            return None
        return t_quantile((1 + CONFIDENCE) / 2, self.n - 1) * math.sqrt(self.var / self.n)


def welch(a: Summary, b: Summary) -> tuple[float, float | None, float | None]:
    """``(mean(a) - mean(b), half-width of its 95 % Welch interval, Welch's dof)``; None, None when a
    group has fewer than two runs."""
    diff = a.mean - b.mean
    if a.n < 2 or b.n < 2:
        return diff, None, None
    va, vb = a.var / a.n, b.var / b.n
    se2 = va + vb
    if se2 == 0:
        return diff, 0.0, float(a.n + b.n - 2)
    dof = se2**2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))
    return diff, t_quantile((1 + CONFIDENCE) / 2, dof) * math.sqrt(se2), dof


# ----------------------------------------------------------------------------- selecting runs


def _quote(value: str) -> str:
    return "'" + value.replace("'", "\\'") + "'"


def open_store(tracking_uri: str) -> Any:
    """An MlflowClient on an existing store; a missing SQLite file or a server that does not answer
    is a CompareError (reading must not create an empty store)."""
    from rnnlab import stores, tracking
    from rnnlab.errors import ConfigError

    uri = stores.absolute(tracking_uri)
    try:
        stores.check_scheme(uri, "--tracking-uri", stores.TRACKING_SCHEMES)
        tracking.check_reachable(uri)
    except ConfigError as e:
        raise CompareError(f"--tracking-uri: {e.message}") from None
    db = stores.sqlite_path(uri)
    if db is not None and not db.is_file():
        raise CompareError(f"--tracking-uri: no MLflow store at {db} (run an experiment first, or name the store)")
    return tracking.open_client(uri)


def _experiment_ids(client: Any, names: Sequence[str]) -> list[str]:
    ids = []
    for name in names:
        exp = client.get_experiment_by_name(name)
        if exp is None or exp.lifecycle_stage == "deleted":
            have = sorted(e.name for e in client.search_experiments())
            raise CompareError(f"--experiment: no experiment {name!r}; valid choices: {', '.join(have) or '(none)'}")
        ids.append(str(exp.experiment_id))
    return ids


def _search(client: Any, experiment_ids: list[str], filter_string: str, users: str | None = None) -> list[Any]:
    """Every run ``filter_string`` matches, page by page; a filter MLflow refuses names ``users``
    (the user's part of it)."""
    from mlflow.exceptions import MlflowException

    runs: list[Any] = []
    token = None
    while True:
        try:
            page = client.search_runs(experiment_ids, filter_string=filter_string, max_results=1000, page_token=token)
        except MlflowException as e:
            first = str(e.message).strip().splitlines()[0]
            raise CompareError(f"--filter: MLflow cannot search with {users or filter_string!r}: {first}") from None
        runs += list(page)
        token = page.token
        if not token:
            return runs


def select_runs(
    client: Any,
    experiments: Sequence[str],
    *,
    sweeps: Sequence[str] = (),
    groups: Sequence[str] = (),
    tags: Sequence[str] = (),
    filter_string: str | None = None,
    include_unfinished: bool = False,
) -> list[Any]:
    """The runs of ``experiments`` that match every criterion given: one of ``sweeps`` (a sweep's
    parent run id, or a multirun directory), one of ``groups`` (``rnnlab.group`` tags), every
    ``KEY=VALUE`` of ``tags`` and ``filter_string`` (MLflow's search syntax). Finished runs only
    (unless ``include_unfinished``), never a sweep's parent run, a pruned trial or an evaluation
    (``rnnlab evaluate``'s child runs, which repeat a trained run's scores)."""
    ids = _experiment_ids(client, experiments)
    base = []
    if not include_unfinished:
        base.append("attributes.status = 'FINISHED'")
    for tag in tags:
        key, eq, value = tag.partition("=")
        if not eq or not key:
            raise CompareError(f"--tag: expected KEY=VALUE, got {tag!r}")
        base.append(f"tags.`{key}` = {_quote(value)}")
    if filter_string:
        base.append(filter_string)
    alternatives: list[list[str]] = [[]]
    if sweeps:
        alternatives = [[_sweep_clause(client, s)] for s in sweeps]
    if groups:
        alternatives = [[*a, f"tags.`rnnlab.group` = {_quote(g)}"] for a in alternatives for g in groups]
    found: dict[str, Any] = {}
    for extra in alternatives:
        for run in _search(client, ids, " and ".join([*base, *extra]), filter_string):
            found.setdefault(run.info.run_id, run)
    runs = [
        r
        for r in found.values()
        if r.data.tags.get("rnnlab.sweep") != "true"
        and r.data.tags.get("optuna.trial_state") != "PRUNED"
        and "rnnlab.evaluation_of" not in r.data.tags  # `rnnlab evaluate`'s child: its parent's scores again
    ]
    return sorted(runs, key=lambda r: r.info.start_time or 0)


def _sweep_clause(client: Any, sweep: str) -> str:
    """A sweep's children (``mlflow.parentRunId``) or, for a multirun directory, its jobs."""
    path = Path(sweep).expanduser()
    if path.is_dir():
        return f"tags.`rnnlab.output_dir` LIKE {_quote(str(path.resolve()) + '/%')}"
    from mlflow.exceptions import MlflowException

    try:
        client.get_run(sweep)
    except MlflowException:
        raise CompareError(f"--sweep: {sweep!r} is neither a sweep's parent run id nor a multirun directory") from None
    return f"tags.`mlflow.parentRunId` = {_quote(sweep)}"


# ----------------------------------------------------------------------------- grouping


@dataclass
class Group:
    """Runs of one configuration: their config params (without NOT_CONFIG) and the runs."""

    config: dict[str, str]
    runs: list[Any] = field(default_factory=list)
    label: str = ""

    def values(self, metric: str) -> Summary | None:
        found = [float(r.data.metrics[metric]) for r in self.runs if metric in r.data.metrics]
        return Summary(found) if found else None

    def seeds(self) -> list[str]:
        return sorted({r.data.params.get("seed", "?") for r in self.runs}, key=lambda s: (len(s), s))


def group_runs(runs: Sequence[Any]) -> tuple[list[Group], list[str]]:
    """Runs grouped by configuration, in order of first appearance, each labelled; and the config
    keys whose values differ between the groups."""
    from rnnlab.tracking import config_params

    groups: dict[tuple[tuple[str, str], ...], Group] = {}
    for run in runs:
        config = config_params(dict(run.data.params))
        key = tuple(sorted(config.items()))
        groups.setdefault(key, Group(config)).runs.append(run)
    out = list(groups.values())
    keys = sorted({k for g in out for k in g.config})
    differing = [k for k in keys if len({g.config.get(k) for g in out}) > 1]
    shown = label_keys(differing)
    for i, g in enumerate(out):
        parts = [g.config.get(k, "-") if k.endswith(".name") else f"{_short(k)}={g.config.get(k, '-')}" for k in shown]
        g.label = ", ".join(parts) if parts else f"group {i + 1}"
    if len({g.label for g in out}) < len(out):  # the shortened keys collide: say them in full
        for i, g in enumerate(out):
            g.label = f"{i + 1}: {g.label}"
    return out, differing


def label_keys(differing: Sequence[str]) -> list[str]:
    """The differing keys that name a group: a plugin's other settings follow from its ``.name``
    when that differs (``backbone.forget_bias`` from ``backbone.name``), and derived params are left
    out."""
    names = {k.rsplit(".", 1)[0] for k in differing if k.endswith(".name")}
    return [
        k
        for k in differing
        if k not in DERIVED
        and not k.startswith("data.n_")
        and (k.endswith(".name") or k.rsplit(".", 1)[0] not in names)
    ]


def _short(key: str) -> str:
    return key.rsplit(".", 1)[-1] if "." in key else key


# ----------------------------------------------------------------------------- budgets


def budgets(client: Any, groups: Sequence[Group]) -> dict[str, str]:
    """Each group's tuning budget, from its sweep's parent run (``n_trials``, ``seeds`` params): e.g.
    ``sweep of 12 trials x 3 seeds``; ``no sweep`` for runs outside a sweep."""
    from mlflow.exceptions import MlflowException

    parents: dict[str, str] = {}
    out = {}
    for g in groups:
        found = set()
        for run in g.runs:
            pid = run.data.tags.get("mlflow.parentRunId")
            if not pid:
                found.add("no sweep")
                continue
            if pid not in parents:
                try:
                    params = client.get_run(pid).data.params
                except MlflowException:
                    params = {}
                n, seeds = params.get("n_trials"), params.get("seeds") or ""
                text = f"sweep of {n} trials" if n else "sweep (budget not recorded)"
                if seeds:
                    text += f" x {len(seeds.split(','))} seeds"
                parents[pid] = text
            found.add(parents[pid])
        out[g.label] = "; ".join(sorted(found))
    return out


# ----------------------------------------------------------------------------- the table


def _better(metric: str) -> str:
    return "higher" if metric.rsplit("/", 1)[-1].split("_step")[0] in HIGHER_IS_BETTER else "lower"


def _fmt(x: float) -> str:
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    digits = max(0, 3 - math.floor(math.log10(abs(x))))
    return f"{x:.{min(digits, 6)}f}" if abs(x) >= 1e-4 else f"{x:.3e}"


def _pm(value: float, half: float) -> str:
    """``value ± half``, both to the decimals that give ``half`` two significant digits."""
    if half <= 0 or not math.isfinite(half):
        return f"{_fmt(value)} ± {half:g}"
    decimals = min(8, max(0, 1 - math.floor(math.log10(half))))
    return f"{value:.{decimals}f} ± {half:.{decimals}f}"


def _cell(s: Summary | None) -> str:
    if s is None:
        return "-"
    hw = s.half_width
    return _pm(s.mean, hw) if hw is not None else f"{_fmt(s.mean)} (n=1, no interval)"


def over_seeds(values: Sequence[float]) -> str:
    """``values`` (one a seed) as every table in rnnlab reports them: mean ± the half-width of its
    95 % t interval, to two significant digits of the half-width; one value says it has no interval."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    return _cell(Summary(finite)) if finite else "n/a"


def _baseline_cell(g: Group, metric: str) -> str:
    s = g.values(f"baseline/{metric}")
    if s is None:
        return "-"
    names = sorted({r.data.tags.get("rnnlab.baseline.best", "") for r in g.runs} - {""})
    spread = max(s.values) - min(s.values)
    value = _fmt(s.mean) if spread <= 1e-9 * max(1.0, abs(s.mean)) else _cell(s)
    return f"{value} ({', '.join(names)})" if names else value


def verdict(a: Group, b: Group, metric: str) -> str:
    """``lstm vs gru on test/rmse: difference 0.012 ± 0.020, not significant at n=5 (Welch t, 95 %)``."""
    sa, sb = a.values(metric), b.values(metric)
    if sa is None or sb is None:
        return f"{a.label} vs {b.label} on {metric}: not logged by both"
    diff, hw, _ = welch(sa, sb)
    at = f"n={sa.n}" if sa.n == sb.n else f"n={sa.n} and {sb.n}"
    head = f"{a.label} vs {b.label} on {metric}: difference"
    if hw is None:
        return f"{head} {_fmt(diff)}, no interval at {at} (a group has one run): run more seeds (seeds=5)"
    significant = abs(diff) > hw
    if not significant:
        return f"{head} {_pm(diff, hw)}, not significant at {at} (Welch t, 95 %)"
    good = "lower" if _better(metric) == "lower" else "higher"
    winner = a.label if (diff < 0) == (good == "lower") else b.label
    return f"{head} {_pm(diff, hw)}, significant at {at} (Welch t, 95 %): {winner} is better ({good} {metric})"


@dataclass
class Comparison:
    groups: list[Group]
    differing: list[str]
    metrics: list[str]
    budgets: dict[str, str]

    def rows(self) -> tuple[list[str], list[list[str]]]:
        header = ["configuration", "n", "seeds"]
        for m in self.metrics:
            header += [f"{m} (mean ± 95 %)", f"best baseline {m}"]
        rows = []
        for g in self.groups:
            row = [g.label, str(len(g.runs)), ",".join(g.seeds())]
            for m in self.metrics:
                row += [_cell(g.values(m)), _baseline_cell(g, m)]
            rows.append(row)
        return header, rows

    def notes(self) -> list[str]:
        lines = []
        hidden = [k for k in self.differing if k not in label_keys(self.differing)]
        if hidden:
            lines.append(f"also differ (they follow from the keys above): {', '.join(hidden)}")
        lines.append(
            "mean ± half-width of the 95 % Student t interval over the group's runs (n - 1 degrees of freedom)"
        )
        single = [g.label for g in self.groups if len(g.runs) == 1]
        if single:
            lines.append(f"one run, so no interval: {', '.join(single)}")
        if len(set(self.budgets.values())) > 1:
            lines.append(
                "tuning budgets differ: "
                + "; ".join(f"{k}: {v}" for k, v in self.budgets.items())
                + " (a fair comparison gives each the same sweep: README, Comparing runs across seeds)"
            )
        if len(self.groups) == 2:
            lines += [verdict(self.groups[0], self.groups[1], m) for m in self.metrics]
        return lines

    def markdown(self) -> str:
        header, rows = self.rows()
        out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join([*out, "", *self.notes()])

    def csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        head = ["configuration", "n", "seeds", *self.differing]
        for m in self.metrics:
            head += [f"{m} mean", f"{m} ci95", f"{m} n", f"{m} best baseline"]
        writer.writerow(head)
        for g in self.groups:
            row: list[Any] = [g.label, len(g.runs), " ".join(g.seeds()), *(g.config.get(k, "") for k in self.differing)]
            for m in self.metrics:
                s, base = g.values(m), g.values(f"baseline/{m}")
                hw = s.half_width if s else None
                row += [repr(s.mean) if s else "", repr(hw) if hw is not None else "", s.n if s else 0]
                row += [repr(base.mean) if base else ""]
            writer.writerow(row)
        return buf.getvalue().rstrip("\n")

    def table(self) -> str:
        header, rows = self.rows()
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join([*lines, "", *self.notes()])


def metric_names(runs: Sequence[Any]) -> list[str]:
    """What a user may ask for: every metric a selected run logged, but the baselines' and diagnostics'."""
    keys = {k for r in runs for k in r.data.metrics}
    return sorted(k for k in keys if not k.startswith(("baseline/", "diag/")))


def compare(client: Any, runs: Sequence[Any], metrics: Sequence[str] = (), best: bool = False) -> Comparison:
    """The comparison of ``runs`` on ``metrics`` (default: the first of DEFAULT_METRICS they logged);
    ``best``: of each sweep, only the configuration with the best mean objective (the sweep's own
    ``objective`` and ``direction``, on validation), the others' runs left out."""
    if not runs:
        raise CompareError("no runs matched; widen the selection (--experiment, --sweep, --group, --tag, --filter)")
    valid = metric_names(runs)
    if not metrics:
        metrics = [next((m for m in DEFAULT_METRICS if m in valid), valid[0] if valid else "test/loss")]
    for m in metrics:
        if m not in valid:
            raise CompareError(f"--metric: the selected runs did not log {m!r}; valid choices: {', '.join(valid)}")
    groups, _ = group_runs(runs)
    if best:
        kept = {id(g) for g in best_of_sweeps(client, groups)}
        groups, _ = group_runs([r for g in groups if id(g) in kept for r in g.runs])
    groups, differing = group_runs([r for g in groups for r in g.runs])
    return Comparison(groups, differing, list(metrics), budgets(client, groups))


def best_of_sweeps(client: Any, groups: Sequence[Group]) -> list[Group]:
    """Of the groups of each sweep (runs with one ``mlflow.parentRunId``), the one whose mean of the
    sweep's objective is best in its direction; groups outside a sweep are kept."""
    by_parent: dict[str, list[Group]] = {}
    out = []
    for g in groups:
        parents = {r.data.tags.get("mlflow.parentRunId") for r in g.runs}
        if len(parents) == 1 and None not in parents:
            by_parent.setdefault(str(next(iter(parents))), []).append(g)
        else:
            out.append(g)
    for pid, candidates in by_parent.items():
        params = client.get_run(pid).data.params
        objective = (params.get("objective") or "val/loss").split(",")[0]
        sign = -1.0 if (params.get("direction") or "minimize").split(",")[0] == "maximize" else 1.0
        scored = []
        for g in candidates:
            s = g.values(f"best/{objective}") or g.values(objective)
            if s is not None:
                scored.append((sign * s.mean, g))
        if scored:
            out.append(min(scored, key=lambda x: x[0])[1])
    return out


# ----------------------------------------------------------------------------- curves


def draw_curves(client: Any, comparison: Comparison, metric: str, path: Path) -> Path:
    """Every selected run's per-epoch ``metric`` in one PNG, a colour per configuration."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from rnnlab.tracking import metric_history

    fig = Figure(figsize=(9, 5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    drawn = 0
    for i, g in enumerate(comparison.groups):
        color = f"C{i % 10}"
        for j, run in enumerate(g.runs):
            history = metric_history(client, run.info.run_id, metric)
            if not history:
                continue
            ax.plot(
                [m.step for m in history],
                [m.value for m in history],
                color=color,
                alpha=0.8,
                linewidth=1.2,
                label=f"{g.label} (n={len(g.runs)})" if j == 0 else None,
            )
            drawn += 1
    if not drawn:
        raise CompareError(f"--curve-metric: no selected run logged a history of {metric!r}")
    ax.set_xlabel("step (epoch for per-epoch metrics)")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric}: {drawn} runs, one line per run (seed)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


# ----------------------------------------------------------------------------- the command


def _parser() -> argparse.ArgumentParser:
    from rnnlab.schemas import LoggerConfig

    p = argparse.ArgumentParser(
        prog="rnnlab compare",
        description="runs grouped by configuration: each metric's mean ± 95 %% t interval over seeds, the best "
        "baseline beside it, and a verdict for two configurations",
    )
    p.add_argument(
        "--experiment",
        action="append",
        help=f"MLflow experiment (repeatable; default: {LoggerConfig.experiment_name})",
    )
    p.add_argument(
        "--sweep", action="append", default=[], help="a sweep's parent run id or a multirun dir (repeatable)"
    )
    p.add_argument("--group", action="append", default=[], help="an rnnlab.group tag (repeatable)")
    p.add_argument("--tag", action="append", default=[], help="KEY=VALUE, a tag every run has (repeatable)")
    p.add_argument("--filter", help="an MLflow search string, e.g. \"params.`backbone.name` = 'lstm'\"")
    p.add_argument("--metric", action="append", default=[], help="a metric (repeatable; default: test/rmse, ...)")
    p.add_argument("--format", choices=FORMATS, default="markdown", help="output (default: %(default)s)")
    p.add_argument("--curves", type=Path, help="write the selected runs' learning curves to this PNG")
    p.add_argument("--curve-metric", default="val/loss", help="the curve's metric (default: %(default)s)")
    p.add_argument(
        "--best", action="store_true", help="of each sweep, only its best configuration (on the sweep's objective)"
    )
    p.add_argument("--all", action="store_true", help="also runs that did not finish (FAILED, KILLED, RUNNING)")
    p.add_argument("--tracking-uri", default=LoggerConfig.tracking_uri, help="the MLflow store (default: %(default)s)")
    return p


def main(args: Sequence[str]) -> None:
    """``rnnlab compare [options]``; bad input is one line on stderr and exit status 2."""
    parser = _parser()

    def error(message: str) -> Any:  # argparse's own errors as one line, exit 2
        print(f"rnnlab: error: compare: {message}", file=sys.stderr)
        sys.exit(2)

    parser.error = error  # type: ignore[method-assign]
    opts = parser.parse_args(list(args))
    try:
        client = open_store(opts.tracking_uri)
        from rnnlab.schemas import LoggerConfig

        runs = select_runs(
            client,
            opts.experiment or [LoggerConfig.experiment_name],
            sweeps=opts.sweep,
            groups=opts.group,
            tags=opts.tag,
            filter_string=opts.filter,
            include_unfinished=opts.all,
        )
        result = compare(client, runs, opts.metric, best=opts.best)
        text = {"markdown": result.markdown, "csv": result.csv, "table": result.table}[opts.format]()
        if opts.curves is not None:
            path = draw_curves(client, result, opts.curve_metric, opts.curves)
            print(f"curves: {path}", file=sys.stderr)
    except RnnlabError as e:
        print(f"rnnlab: error: compare: {e}", file=sys.stderr)
        sys.exit(2)
    print(text)
