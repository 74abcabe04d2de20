"""The interface every regularizer plugin implements."""

from __future__ import annotations

from torch import Tensor, nn


class Regularizer(nn.Module):
    """Acts on the backbone's per-step features (B, T, H).

    ``transform`` may change the features on their way to the head (it sees ``self.training``);
    ``penalty`` returns a scalar added to the training loss, or None.
    """

    def transform(self, features: Tensor) -> Tensor:
        return features

    def penalty(self, features: Tensor) -> Tensor | None:
        return None
