"""TaskSpec: what a data module tells the model about its task. No torch here."""

from __future__ import annotations

from dataclasses import dataclass

#: Task kinds (``TaskSpec.kind``), each served by at least one shipped data module.
KINDS = (
    "forecast",  # last-step regression of the next values of a series (SeriesDataModule)
    "regression",  # last-step regression (adding problem)
    "per_step_regression",  # a real target at every step
    "classification",  # one class per sequence (digits, UCR)
    "per_step_classification",  # a class at every step (copy memory)
    "language_model",  # next token at every step (chars)
)

#: What each kind logs per split (``val/<name>``, ``test/<name>``), the loss included.
KIND_METRICS: dict[str, tuple[str, ...]] = {
    "forecast": ("loss", "mae", "rmse"),
    "regression": ("loss", "mse", "mae", "rmse"),
    "per_step_regression": ("loss", "mse", "mae", "rmse"),
    "classification": ("loss", "accuracy"),
    "per_step_classification": ("loss", "accuracy"),
    "language_model": ("loss", "accuracy", "perplexity", "bpc"),
}

#: What a data module's ``score()`` gives on the test split for each kind, the model's and every
#: baseline's (``test/<name>``, ``baseline/<name>/test/<name>``); forecasting adds MASE, sMAPE, steps.
KIND_SCORES: dict[str, tuple[str, ...]] = {
    "forecast": ("mae", "rmse", "mase", "smape"),
    "regression": ("mse", "mae", "rmse"),
    "per_step_regression": ("mse", "mae", "rmse"),
    "classification": ("loss", "accuracy", "f1"),
    "per_step_classification": ("loss", "accuracy"),
    "language_model": ("loss", "bpc", "perplexity", "accuracy"),
}

#: The score that ranks baselines and decides the verdict, for each kind.
KIND_PRIMARY = {
    "forecast": "rmse",
    "regression": "mse",
    "per_step_regression": "mse",
    "classification": "accuracy",
    "per_step_classification": "loss",
    "language_model": "bpc",
}

#: Metrics where higher is better; every other metric is an error (lower is better).
HIGHER_IS_BETTER = frozenset({"accuracy", "f1"})


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` (a bare name or ``split/name``) is better."""
    return metric.rsplit("/", 1)[-1] in HIGHER_IS_BETTER


@dataclass(frozen=True)
class TaskSpec:
    """Shapes, target layout, loss and metrics of a task; the model builds its head from it.

    ``target="last"``: one target vector per sequence, read from the last step (forecasting,
    classification). ``target="per_step"``: a target at every step (language modelling, copy task).
    Regression metrics are reported in the data's original units: ``y = y_scaled * scale + shift``.

    ``tokens=True``: inputs are integer token ids (N, T) in ``[0, input_size)``, one-hot encoded by
    the net (the copy task's symbols, a character model's text), not float features (N, T, C).
    ``language_model=True``: per-step classification of the next token (targets are the inputs
    shifted by one); ``classes`` then names the tokens (the vocabulary), as it names the classes of a
    classification task.
    """

    input_size: int
    output_size: int
    target: str = "last"
    loss: str = "mse"
    metrics: tuple[str, ...] = ("mae", "rmse")
    target_scale: tuple[float, ...] | None = None  # one per output; None: the targets are unscaled
    target_shift: tuple[float, ...] | None = None
    units: str = ""  # of the original target, for the results table (e.g. "degF")
    # Forecasting: input column 0 is the target itself, scaled as the targets are, its last step the
    # last observed value (what model.target=change and model.linear_skip build on)
    forecast: bool = False
    tokens: bool = False
    language_model: bool = False
    classes: tuple[str, ...] | None = None  # class or token names, one per output

    def __post_init__(self) -> None:
        if self.target not in ("last", "per_step"):
            raise ValueError(f"TaskSpec.target must be 'last' or 'per_step', got {self.target!r}")
        if self.loss not in ("mse", "mae", "cross_entropy"):
            raise ValueError(f"TaskSpec.loss must be mse, mae or cross_entropy, got {self.loss!r}")
        for name in ("target_scale", "target_shift", "classes"):
            value = getattr(self, name)
            if value is not None and len(value) != self.output_size:
                raise ValueError(f"TaskSpec.{name} needs {self.output_size} values, got {len(value)}")
        if self.language_model and not (self.target == "per_step" and self.loss == "cross_entropy"):
            raise ValueError("TaskSpec.language_model needs target='per_step' and loss='cross_entropy'")
        if self.forecast and (self.target != "last" or self.loss == "cross_entropy"):
            raise ValueError("TaskSpec.forecast needs target='last' and a regression loss")

    @property
    def kind(self) -> str:
        """One of :data:`KINDS`, from the target layout, the loss and the flags."""
        if self.language_model:
            return "language_model"
        if self.forecast:
            return "forecast"
        classes = self.loss == "cross_entropy"
        base = "classification" if classes else "regression"
        return base if self.target == "last" else f"per_step_{base}"

    @property
    def classification(self) -> bool:
        return self.loss == "cross_entropy"
