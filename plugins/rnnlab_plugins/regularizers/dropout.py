"""Dropout on the backbone's outputs, before the head."""

from __future__ import annotations

from torch import Tensor, nn

from rnnlab.regularizer import Regularizer


class DropoutRegularizer(Regularizer):
    def __init__(self, *, p: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(p)

    def transform(self, features: Tensor) -> Tensor:
        return self.dropout(features)  # (B, T, H)
