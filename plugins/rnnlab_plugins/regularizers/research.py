"""The regularizers of RNN research: variational dropout, weight drop, zoneout, embedding dropout
and input noise (schemas and references in ``config.py``). Each acts in training only (zoneout
uses its expectation in eval)."""

from __future__ import annotations

import torch
from torch import Tensor

from rnnlab.regularizer import Regularizer


def drop_mask(like: Tensor, p: float) -> Tensor:
    """A dropout mask shaped like ``like``: zeros with probability ``p``, else 1 / (1 - p). Drawn
    as uniform numbers against ``p``: on CPU, ``bernoulli_`` took 130 us for a 256 x 64 weight
    (8 ns a number), a tenth of a weight-dropped LSTM step at hidden 64."""
    return (torch.rand_like(like) >= p).to(like.dtype) / (1 - p)


def locked_mask(x: Tensor, p: float) -> Tensor:
    """A dropout mask for ``x`` (B, T, C) drawn once per sequence and channel, the same at every
    step: (B, 1, C)."""
    return drop_mask(x.new_empty(x.size(0), 1, x.size(2)), p)


class VariationalDropout(Regularizer):
    def __init__(self, *, p_input: float, p_hidden: float, p_output: float) -> None:
        super().__init__()
        self.p_input, self.p_hidden, self.p_output = p_input, p_hidden, p_output

    def _drop(self, x: Tensor, p: float) -> Tensor:
        return x * locked_mask(x, p) if self.training and p > 0 else x

    def transform_inputs(self, x: Tensor) -> Tensor:
        return self._drop(x, self.p_input)

    def transform_layer_output(self, h: Tensor, layer: int) -> Tensor:
        return self._drop(h, self.p_hidden)

    def transform(self, features: Tensor) -> Tensor:
        return self._drop(features, self.p_output)


class WeightDrop(Regularizer):
    def __init__(self, *, p: float) -> None:
        super().__init__()
        self.p = p

    def transform_recurrent_weight(self, name: str, weight: Tensor) -> Tensor:
        return weight * drop_mask(weight, self.p) if self.training and self.p > 0 else weight


class Zoneout(Regularizer):
    def __init__(self, *, p_hidden: float, p_cell: float) -> None:
        super().__init__()
        self.p_hidden, self.p_cell = p_hidden, p_cell

    def state_keep(self, state: str, like: Tensor, layer: int) -> Tensor | float | None:
        p = self.p_hidden if state == "h" else self.p_cell
        if p == 0:
            return None
        if not self.training:
            return p  # the expectation: p h_{t-1} + (1 - p) h~_t
        return (torch.rand_like(like) < p).to(like.dtype)  # 1: the unit keeps its previous value


class EmbeddingDropout(Regularizer):
    def __init__(self, *, p: float) -> None:
        super().__init__()
        self.p = p

    def transform_inputs(self, x: Tensor) -> Tensor:
        # one-hot token inputs (B, T, V): a dropped channel is a dropped token type of that sequence
        return x * locked_mask(x, self.p) if self.training and self.p > 0 else x


class InputNoise(Regularizer):
    def __init__(self, *, sigma: float) -> None:
        super().__init__()
        self.sigma = sigma

    def transform_inputs(self, x: Tensor) -> Tensor:
        return x + self.sigma * torch.randn_like(x) if self.training and self.sigma > 0 else x
