"""AR/TAR (Merity et al. 2017): penalize large activations and fast changes between steps."""

from __future__ import annotations

import torch
from torch import Tensor

from rnnlab.regularizer import Regularizer


class ARTARRegularizer(Regularizer):
    def __init__(self, *, alpha: float, beta: float) -> None:
        super().__init__()
        self.alpha = alpha
        self.beta = beta

    def penalty(self, features: Tensor, lengths: Tensor | None = None) -> Tensor | None:
        if lengths is not None:  # means over valid steps only; padding is not an activation
            return self._masked(features, lengths)
        ar = features.pow(2).mean()  # features: (B, T, H)
        if features.size(1) < 2:
            return self.alpha * ar
        tar = (features[:, 1:] - features[:, :-1]).pow(2).mean()
        return self.alpha * ar + self.beta * tar

    def _masked(self, features: Tensor, lengths: Tensor) -> Tensor:
        steps = torch.arange(features.size(1), device=features.device)
        valid = (steps < lengths.to(features.device)[:, None]).to(features.dtype)  # (B, T)
        width = features.size(-1)
        ar = (features.pow(2).sum(-1) * valid).sum() / (valid.sum() * width).clamp_min(1)
        pairs = valid[:, 1:] * valid[:, :-1]  # (B, T-1): both steps valid
        diff = (features[:, 1:] - features[:, :-1]).pow(2).sum(-1)  # (B, T-1)
        tar = (diff * pairs).sum() / (pairs.sum() * width).clamp_min(1)
        return self.alpha * ar + self.beta * tar
