"""The interface every backbone plugin implements."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn


class Backbone(nn.Module):
    """Maps inputs (B, T, input_size) to per-step features (B, T, output_size) and a final state.

    Per-step features are always returned, so per-step targets, gradient diagnostics and
    regularizers on activations need no change to the backbone.
    """

    output_size: int

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        raise NotImplementedError

    def last_step(self, features: Tensor) -> Tensor:
        """The sequence summary for last-step targets: (B, T, H) -> (B, H)."""
        return features[:, -1]
