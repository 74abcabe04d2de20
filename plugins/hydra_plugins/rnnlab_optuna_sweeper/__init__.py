"""rnnlab's Optuna sweeper for Hydra: hydra-optuna-sweeper's configs on current Optuna, plus pruning,
resume, worker processes and one MLflow parent run per sweep. See ``docs/sweeps.md``.

Hydra's plugin scan imports only ``config`` (schemas, sampler options) and ``optuna_sweeper`` (the
plugin class): it skips modules whose name starts with ``_``, so optuna and MLflow load when a sweep
starts. ``_impl``: the trial loop; ``_search_space``, ``_samplers``, ``_objectives``: what a trial is
sampled from and scored on; ``_liveness``: study lock, heartbeats, stale trials; ``_workers``: worker
processes; ``_results``: MLflow parent run, results files, plots; ``_identity``: the settings a study
was run under (checked on resume) and sampler sessions (no replayed points).
"""
