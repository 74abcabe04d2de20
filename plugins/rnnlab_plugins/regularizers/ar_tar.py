"""AR/TAR (Merity et al. 2017): penalize large activations and fast changes between steps."""

from __future__ import annotations

from torch import Tensor

from rnnlab.regularizer import Regularizer


class ARTARRegularizer(Regularizer):
    def __init__(self, alpha: float = 2.0, beta: float = 1.0) -> None:
        super().__init__()
        self.alpha = alpha
        self.beta = beta

    def penalty(self, features: Tensor) -> Tensor | None:
        ar = features.pow(2).mean()  # features: (B, T, H)
        if features.size(1) < 2:
            return self.alpha * ar
        tar = (features[:, 1:] - features[:, :-1]).pow(2).mean()
        return self.alpha * ar + self.beta * tar
