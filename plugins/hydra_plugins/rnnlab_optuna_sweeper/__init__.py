"""rnnlab's Optuna sweeper for Hydra: pruning, resume, parallel workers, one MLflow parent per sweep.

Select it with ``hydra/sweeper=optuna`` or a preset (``python -m rnnlab -m sweep=lstm_forecast``).
Discovery imports only ``config`` and ``optuna_sweeper``; optuna and MLflow load in ``_impl`` when a
sweep starts.
"""
