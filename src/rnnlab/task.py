"""TaskSpec: what a data module tells the model about its task. No torch here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskSpec:
    """Shapes, target layout, loss and metrics of a task; the model builds its head from it.

    ``target="last"``: one target vector per sequence, read from the last step (forecasting,
    classification). ``target="per_step"``: a target at every step (language modelling, copy task).
    Regression metrics are reported in the data's original units: ``y = y_scaled * scale + shift``.
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

    def __post_init__(self) -> None:
        if self.target not in ("last", "per_step"):
            raise ValueError(f"TaskSpec.target must be 'last' or 'per_step', got {self.target!r}")
        if self.loss not in ("mse", "mae", "cross_entropy"):
            raise ValueError(f"TaskSpec.loss must be mse, mae or cross_entropy, got {self.loss!r}")
        for name in ("target_scale", "target_shift"):
            value = getattr(self, name)
            if value is not None and len(value) != self.output_size:
                raise ValueError(f"TaskSpec.{name} needs {self.output_size} values, got {len(value)}")
