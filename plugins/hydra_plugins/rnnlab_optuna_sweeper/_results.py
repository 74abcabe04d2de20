"""What a sweep leaves behind: one MLflow parent run (kept across resumes and shared by workers),
``optimization_results.yaml`` (hydra-optuna-sweeper's keys), ``best.yaml`` (a config that re-runs the
best trial) and Optuna's plots."""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf
from optuna.trial import FrozenTrial, TrialState

from rnnlab import stores

from ._liveness import OVERRIDES_ATTR
from ._objectives import Objectives
from ._search_space import one_line

log = logging.getLogger(__name__)

PARENT_RUN_ATTR = "rnnlab:mlflow_parent_run_id"  # study user attr


class SweepRecord:
    def __init__(
        self,
        study: optuna.Study,
        objectives: Objectives,
        sweep_dir: Path,
        storage_label: str,
        tracking_uri: str | None,
        experiment_name: str | None,
        plots: bool = True,
    ) -> None:
        self.study, self.objectives, self.sweep_dir = study, objectives, sweep_dir
        self.storage_label = storage_label
        self.tracking_uri = stores.absolute(tracking_uri) if tracking_uri else None
        self.experiment_name = experiment_name or study.study_name
        self.use_plots = plots
        self.parent_run_id: str | None = None

    # ------------------------------------------------------------------ MLflow parent run

    def _client(self) -> Any:
        # rnnlab's one way to open a store: a new SQLite store's tables are created under a lock
        from rnnlab.tracking import open_client

        assert self.tracking_uri is not None
        return open_client(self.tracking_uri)

    def start_parent_run(self, lock: Callable[[], Any], params: Mapping[str, Any]) -> str | None:
        """The parent run's id, created or resumed; None without a tracking URI."""
        if not self.tracking_uri:
            return None
        from rnnlab.tracking import get_or_create_experiment

        name = self.study.study_name
        # Under the lock: two sweeps starting at once must not both create the MLflow store's tables
        # (MLflow's SQLite migration is not concurrency-safe) or two parent runs.
        with lock():
            client = self._client()
            run_id = self.study.user_attrs.get(PARENT_RUN_ATTR)
            if run_id:
                try:
                    client.get_run(run_id)
                    client.update_run(run_id, status="RUNNING")
                    log.info("resuming MLflow parent run %s", run_id)
                    self.parent_run_id = run_id
                    return run_id
                except Exception:
                    log.warning("MLflow parent run %s not found in %s; starting a new one", run_id, self.tracking_uri)
            exp_id = get_or_create_experiment(client, self.experiment_name, self.tracking_uri)
            tags = {"rnnlab.sweep": "true", "optuna.study_name": name, "optuna.storage": self.storage_label}
            run_id = client.create_run(exp_id, run_name=f"sweep-{name}", tags=tags).info.run_id
            self.study.set_user_attr(PARENT_RUN_ATTR, run_id)
        from mlflow.entities import Param

        with contextlib.suppress(Exception):
            client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
        self.parent_run_id = run_id
        return run_id

    def finish(self, status: str, config: DictConfig, loader: Any) -> None:
        """Write the results and plots, log them to the parent run and close it (unless trials still
        run elsewhere: the worker that ends last closes it)."""
        try:
            trials = self.study.get_trials(deepcopy=False)
            counts = {s.name: sum(t.state == s for t in trials) for s in TrialState}
            summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no trials"
            log.info("study %r: %s", self.study.study_name, summary)
            t0 = time.time()
            files = self._write_results(config, loader)
            plots = self._plots() if self.use_plots else []
            log.info("results in %s (%.1f s)", self.sweep_dir, time.time() - t0)
        except Exception as e:
            log.warning("sweep summary failed: %s", e)
            files, plots, counts = [], [], {}
        if not self.parent_run_id:
            return
        client = self._client()
        try:
            self._log_parent(client, counts, files, plots)
        except Exception as e:
            log.warning("logging the sweep to MLflow failed: %s", e)
        if status == "FINISHED" and counts.get("RUNNING"):
            log.info(
                "%d trial(s) still running elsewhere; the worker that ends last closes the parent run",
                counts["RUNNING"],
            )
            return
        client.set_terminated(self.parent_run_id, status=status)

    def _log_parent(self, client: Any, counts: Mapping[str, int], files: list[Path], plots: list[Path]) -> None:
        from mlflow.entities import Metric, RunTag

        assert self.parent_run_id is not None
        now = int(time.time() * 1000)
        finished = sum(counts.get(s, 0) for s in ("COMPLETE", "PRUNED", "FAIL"))
        metrics = [Metric(f"trials_{s.lower()}", float(n), now, finished) for s, n in counts.items()]
        tags = []
        best = self.best()
        if best is not None:
            metrics.append(Metric(f"best/{self.objectives.names[0]}", float(best.value), now, finished))  # type: ignore[arg-type]
            tags.append(RunTag("best.trial_number", str(best.number)))
            tags += [RunTag(f"best.{k}", str(v)[:5000]) for k, v in best.params.items()]
            compared = self.baselines(best)
            if compared:
                metric = self.objectives.names[0]
                metrics += [Metric(f"best/baseline/{n}/{metric}", v, now, finished) for n, v in compared[0].items()]
                tags.append(RunTag("best.verdict", compared[1]))
        client.log_batch(self.parent_run_id, metrics=metrics, tags=tags)
        for path in files:
            client.log_artifact(self.parent_run_id, str(path))
        for path in plots:
            client.log_artifact(self.parent_run_id, str(path), artifact_path="plots")

    # ------------------------------------------------------------------ files

    def best(self) -> FrozenTrial | None:
        if len(self.objectives.directions) > 1:
            return None
        try:
            return self.study.best_trial
        except ValueError:
            return None

    def baselines(self, best: FrozenTrial) -> tuple[dict[str, float], str] | None:
        """The best trial's baselines on the first objective ({name: value}) and the verdict line, when
        the task reported baselines (``baseline/<name>/<objective>``) and the study optimizes the
        objective the way it is better (minimize an error, maximize an accuracy)."""
        from rnnlab.baseline import verdict
        from rnnlab.task import higher_is_better

        metric = self.objectives.names[0]
        prefix, suffix = "baseline/", "/" + metric
        values = {
            k[len(prefix) : -len(suffix)]: float(v)
            for k, v in best.user_attrs.items()
            if k.startswith(prefix) and k.endswith(suffix)
        }
        wanted = "maximize" if higher_is_better(metric) else "minimize"
        if not values or self.objectives.directions[0] != wanted or best.value is None:
            return None
        scores = {n: {metric: v} for n, v in values.items()}
        return values, verdict(float(best.value), scores, metric, label=f"trial {best.number}")

    def _write_results(self, config: DictConfig, loader: Any) -> list[Path]:
        files = []
        results: dict[str, Any] = {"name": "optuna"}  # hydra-optuna-sweeper's keys first
        best = self.best()
        if len(self.objectives.directions) > 1:
            results["solutions"] = [
                {"params": t.params, "values": t.values, "number": t.number} for t in self.study.best_trials
            ]
        elif best is not None:
            results.update(best_params=best.params, best_value=best.value, best_trial=best.number)
            compared = self.baselines(best)
            if compared:
                results["baselines"] = {f"{n}/{self.objectives.names[0]}": v for n, v in compared[0].items()}
                results["verdict"] = compared[1]
                log.info("best trial %d: %s", best.number, compared[1])
            path = self.sweep_dir / "best.yaml"
            path.write_text(self._best_yaml(best, config, loader))
            files.append(path)
        results.update(
            study_name=self.study.study_name,
            storage=self.storage_label,
            objective=self.objectives.names,
            direction=self.objectives.directions,
        )
        path = self.sweep_dir / "optimization_results.yaml"
        OmegaConf.save(OmegaConf.create(results), path)
        files.append(path)
        return files

    def _best_yaml(self, best: FrozenTrial, config: DictConfig, loader: Any) -> str:
        """A primary config that composes the best trial's job: the app's own config, the trial's
        group choices in the defaults list, its values below. ``--config-dir <sweep dir>
        --config-name best`` runs it, with the schemas and interpolations of a normal run."""
        overrides = list(best.system_attrs.get(OVERRIDES_ATTR) or [])
        defaults: list[Any] = [config.hydra.job.config_name]
        values = OmegaConf.create()
        for o in OverridesParser.create().parse_overrides(overrides):
            key = o.key_or_group
            if o.is_delete():
                continue
            if "." not in key and o.package is None and loader.get_group_options(key):
                defaults.append({f"/{key}" if o.is_add() else f"override /{key}": o.value()})
            else:
                OmegaConf.update(values, key, o.value(), force_add=True)
        defaults.append("_self_")
        body = OmegaConf.create({"defaults": defaults})
        body.merge_with(values)
        value = self.objectives.describe(best.values)
        prog = "python -m rnnlab" if config.hydra.job.name in ("cli", "__main__", "rnnlab") else "python <app>"
        header = [
            f"# Best trial {best.number} of Optuna study {self.study.study_name!r}: {value}",
            "# Re-run it as a single run:",
            f"#   {prog} --config-dir {self.sweep_dir} --config-name best",
            "# which is the same as:",
            f"#   {prog} {' '.join(overrides)}",
        ]
        return "\n".join(header) + "\n" + OmegaConf.to_yaml(body)

    def _plots(self) -> list[Path]:
        if not self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            return []
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from optuna.visualization import matplotlib as ovm

        out = self.sweep_dir / "plots"
        out.mkdir(exist_ok=True)
        kwargs: dict[str, Any] = {}
        makers: dict[str, Callable[..., Any]]
        if len(self.objectives.directions) == 1:
            kwargs["target_name"] = self.objectives.names[0]
            makers = {
                "optimization_history": ovm.plot_optimization_history,
                "param_importances": ovm.plot_param_importances,
                "parallel_coordinate": ovm.plot_parallel_coordinate,
                "intermediate_values": ovm.plot_intermediate_values,
            }
        else:
            kwargs["target_names"] = self.objectives.names
            makers = {"pareto_front": ovm.plot_pareto_front}
        paths = []
        for name, make in makers.items():
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ax = make(self.study, **({} if name == "intermediate_values" else kwargs))
                fig = ax if hasattr(ax, "savefig") else getattr(ax, "figure", None) or ax.flat[0].figure
                fig.set_size_inches(9, 6)
                path = out / f"{name}.png"
                fig.savefig(path, dpi=100, bbox_inches="tight")
                plt.close(fig)
                paths.append(path)
            except Exception as e:  # too few trials for importances, a single param, ...
                log.info("plot %s skipped: %s", name, one_line(e))
        return paths
