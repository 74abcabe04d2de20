"""A tiny Hydra app with rnnlab's ``trial`` contract, for fast sweeper tests.

Each "epoch" e reports ``loss_e = target + 1 / (e + 1)`` through :class:`rnnlab.pruning.TrialReporter`
(the code path of ``PruningCallback``), where ``target = (x - 0.3)^2 + (y + 0.2)^2 (+ 0.1 if
opt == "b")``. ``fail_above``: raise when x exceeds it. ``returns``: ``dict`` (metrics, as rnnlab's
``train``), ``float`` (the loss) or ``list`` (loss and |x|), the last two as hydra-optuna-sweeper's
apps. ``log_child``: one MLflow child run per job, tagged like ``rnnlab.train`` tags its runs.
"""

from __future__ import annotations

import time

import hydra
from omegaconf import DictConfig

from rnnlab.pruning import TrialReporter


def objective(cfg: DictConfig) -> dict[str, float]:
    target = (cfg.x - 0.3) ** 2 + (cfg.y + 0.2) ** 2 + (0.1 if cfg.opt == "b" else 0.0)
    if cfg.fail_above is not None and cfg.x > cfg.fail_above:
        raise ValueError(f"x={cfg.x} is above fail_above={cfg.fail_above}")
    reporter = TrialReporter.from_config(cfg.trial)
    loss = float("inf")
    for epoch in range(cfg.epochs):
        time.sleep(cfg.sleep)
        loss = target + 1.0 / (epoch + 1)
        if reporter is not None:
            reporter.check(loss, epoch)
    if cfg.returns == "float":  # a plain number, as hydra-optuna-sweeper's apps return
        return loss  # type: ignore[return-value]
    if cfg.returns == "list":  # one number per direction
        return [loss, abs(cfg.x)]  # type: ignore[return-value]
    return {"val/loss": loss, "test/loss": loss + 0.01, "neg_x": -float(cfg.x)}


def _with_child_run(cfg: DictConfig) -> dict[str, float]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(cfg.logger.tracking_uri)
    exp = client.get_experiment_by_name(cfg.logger.experiment_name)
    exp_id = exp.experiment_id if exp else client.create_experiment(cfg.logger.experiment_name)
    tags = {"optuna.trial_number": str(cfg.trial.number)}
    if cfg.trial.mlflow_parent_run_id:
        tags["mlflow.parentRunId"] = cfg.trial.mlflow_parent_run_id
    run = client.create_run(exp_id, tags=tags)
    state, status = "FAIL", "FAILED"
    try:
        metrics = objective(cfg)
        state, status = "COMPLETE", "FINISHED"
        return metrics
    except Exception as e:
        if type(e).__name__ == "TrialPruned":
            state, status = "PRUNED", "FINISHED"
        raise
    finally:
        client.set_tag(run.info.run_id, "optuna.trial_state", state)
        client.set_terminated(run.info.run_id, status)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> dict[str, float]:
    return _with_child_run(cfg) if cfg.log_child else objective(cfg)


if __name__ == "__main__":
    main()
