"""Shared body of the fused backbones: torch.nn.RNN / LSTM / GRU, batch first (cuDNN on GPU).

Three paths, the first is what runs unless a feature or ``kernel="cell"`` needs another:

- fused: one call of the multi-layer module (cuDNN's kernel on GPU); no hooks, no per-layer output.
- fused with hooked weights: the same single call on a twin module given the weights that
  ``transform_recurrent_weight`` returns (weight drop), the parameters untouched.
- layer by layer: one single-layer call per layer, on the same parameters, for
  ``transform_layer_output`` hooks and ``layers()``. Same arithmetic as the fused call; on GPU it
  gives up cuDNN's overlap of layers and re-packs the weights every call (a copy of the layer's
  weights, small next to the sequence), so use it for diagnostics, not in every step. With
  ``kernel="cell"`` each layer runs as explicit cells (``_cells``), step by step, on the same
  parameters: what per-step hooks inside the recurrence need.

Variable lengths go through ``pack_padded_sequence``, so padded steps are never read.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnlab.backbone import Backbone
from rnnlab.regularizer import Regularizer
from rnnlab_plugins.backbones._cells import run_layer

log = logging.getLogger(__name__)
_PER_STEP = frozenset({"transform_hidden_state", "transform_cell_state", "state_keep"})


class FusedBackbone(Backbone):
    rnn_class: Callable[..., nn.RNNBase]  # nn.RNN, nn.LSTM or nn.GRU
    supported_hooks: ClassVar[frozenset[str]] = frozenset(
        {
            "transform_layer_output",
            "transform_recurrent_weight",
            "weight_penalty",
            "transform_hidden_state",  # with kernel=cell, selected for them
            "state_keep",
        }
    )
    kernel = "fused"  # a class default: a backbone pickled before kernels existed is fused

    def __init__(
        self,
        *,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        bidirectional: bool,
        dropout: float,
        kernel: str,
        **rnn_kwargs: Any,
    ) -> None:  # no defaults: they live in the schema (rnnlab_plugins.backbones.config) alone
        super().__init__()
        self.kernel = kernel
        self.bidirectional = bidirectional
        self.hidden_size = hidden_size
        self.output_size = hidden_size * (2 if bidirectional else 1)
        # torch warns and ignores inter-layer dropout on a single layer; pass 0 instead.
        self.rnn = self.rnn_class(
            input_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
            **rnn_kwargs,
        )

    def use_regularizers(self, regularizers: Sequence[Regularizer]) -> None:
        per_step = [r for r in regularizers if r.backbone_hooks() & (_PER_STEP - self.inapplicable_hooks)]
        if per_step and self.kernel != "cell":
            names = ", ".join(sorted({type(r).__name__ for r in per_step}))
            log.info("%s acts inside the recurrence: backbone.kernel=cell (explicit cells) selected", names)
            self.kernel = "cell"
        super().use_regularizers(regularizers)

    def _state_hook(self, layer: int) -> Callable[[Any, Any], Any] | None:
        """What the cells call after each step of ``layer``: every per-step regularizer's hook."""
        on_h, on_c = self.hooked("transform_hidden_state"), self.hooked("transform_cell_state")
        if not on_h and not on_c:
            return None

        def hook(new: Any, old: Any) -> Any:
            lstm = isinstance(new, tuple)
            h, h_prev = (new[0], old[0]) if lstm else (new, old)
            for reg in on_h:
                h = reg.transform_hidden_state(h, h_prev, layer)
            if not lstm:
                return h
            c = new[1]
            for reg in on_c:
                c = reg.transform_cell_state(c, old[1], layer)
            return h, c

        return hook

    @property
    def num_layers(self) -> int:
        return int(self.rnn.num_layers)

    # -- forward ----------------------------------------------------------------------------------

    def forward(self, x: Tensor, state: Any = None, lengths: Tensor | None = None) -> tuple[Tensor, Any]:
        recording = self.recording()  # diagnostics: every layer as explicit cells, each step's state kept
        if (
            recording is not None
            or self.kernel == "cell"
            or (self.num_layers > 1 and self.hooked("transform_layer_output"))
        ):
            outs, state = self._layer_by_layer(x, state, lengths, hooks=True, record=recording)
            return outs[-1], state
        weights = self._hooked_weights()
        inp = _pack(x, lengths)
        if weights is None:
            out, state = self.rnn(inp, state)  # (B, T, D*H), (D*L, B, H) or a pair of them for LSTM
        else:  # the same call on a twin, so self.rnn's weights (and cuDNN's flat copy of them) stay as they are
            twin = self._twin(self.num_layers, self.rnn.input_size)
            out, state = _run(twin, weights, inp, state)
        return _unpack(out, x.size(1)), state

    def layers(self, x: Tensor, state: Any = None, lengths: Tensor | None = None) -> list[Tensor]:
        return self._layer_by_layer(x, state, lengths, hooks=False)[0]

    def recurrent_weights(self) -> dict[str, Tensor]:
        return {name: p for name, p in self.rnn.named_parameters() if name.startswith("weight_hh")}

    # -- the other paths --------------------------------------------------------------------------

    def _hooked_weights(self) -> dict[str, Tensor] | None:
        """self.rnn's parameters with ``transform_recurrent_weight`` applied, or None when no
        regularizer hooks the weights (the plain fused call)."""
        regs = self.hooked("transform_recurrent_weight")
        if not regs:
            return None
        weights: dict[str, Tensor] = dict(self.rnn.named_parameters())
        for name in [n for n in weights if n.startswith("weight_hh")]:
            for reg in regs:
                weights[name] = reg.transform_recurrent_weight(name, weights[name])
        return weights

    def _twin(self, num_layers: int, input_size: int) -> nn.RNNBase:
        """A twin of self.rnn (``num_layers`` deep, reading ``input_size``) that ``_run`` runs on
        weights it is given; its own are never used. Kept outside the module tree: no state_dict
        keys, no device moves, nothing for DDP to sync, not pickled. Made on first use."""
        twins: dict[tuple[int, int], nn.RNNBase] = self.__dict__.setdefault("_twins", {})
        key = (num_layers, input_size)
        if key not in twins:
            extra = {"nonlinearity": self.rnn.nonlinearity} if isinstance(self.rnn, nn.RNN) else {}
            make: Callable[..., nn.RNNBase] = type(self.rnn)
            twin = make(
                input_size,
                self.hidden_size,
                num_layers,
                bias=self.rnn.bias,
                batch_first=True,
                dropout=self.rnn.dropout if num_layers > 1 else 0.0,
                bidirectional=self.bidirectional,
                device="meta",  # no memory, and no draw from the RNG (seeded runs stay identical)
                **extra,
            )
            # should torch ever re-flatten the twin's weights into one cuDNN buffer, it would do it in
            # place (``set_`` on each); they are self.rnn's or a hook's outputs: leave them be.
            twin.flatten_parameters = _keep_weights_as_given  # type: ignore[method-assign]
            twins[key] = twin
        return twins[key]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop("_twins", None)  # rebuilt on first use
        return state

    def _layer_by_layer(
        self, x: Tensor, state: Any, lengths: Tensor | None, hooks: bool, record: list[list[Tensor]] | None = None
    ) -> tuple[list[Tensor], Any]:
        weights = (self._hooked_weights() if hooks else None) or dict[str, Tensor](self.rnn.named_parameters())
        d = 2 if self.bidirectional else 1
        is_lstm = isinstance(self.rnn, nn.LSTM)
        outs: list[Tensor] = []
        finals: list[Any] = []
        h = x
        for layer in range(self.num_layers):
            own = {
                name.replace(f"_l{layer}", "_l0"): w
                for name, w in weights.items()
                if name.endswith((f"_l{layer}", f"_l{layer}_reverse"))
            }
            rows = slice(layer * d, (layer + 1) * d)  # this layer's slice of the state's (D*L, B, H)
            s = None if state is None else tuple(t[rows] for t in state) if is_lstm else state[rows]
            if self.kernel == "cell" or record is not None:
                steps: list[Tensor] | None = None if record is None else []
                gates: list[dict[str, Tensor]] | None = None if record is None else []
                mode, hook = self.rnn.mode.lower(), self._state_hook(layer) if hooks else None
                keep = partial(self.state_keep, layer=layer) if hooks and self.hooked("state_keep") else None
                out, final = run_layer(mode, own, h, s, lengths, self.bidirectional, steps, hook, keep, gates)
                if record is not None and steps is not None:
                    record.append(steps)
                    self.record_gates(gates)
            else:
                twin = self._twin(1, self.rnn.input_size if layer == 0 else self.output_size)
                out, final = _run(twin, own, _pack(h, lengths), s)
                out = _unpack(out, x.size(1))  # (B, T, D*H)
            outs.append(out)
            finals.append(final)
            if layer < self.num_layers - 1:
                h = nn.functional.dropout(out, self.rnn.dropout, self.training)
                if hooks:
                    for reg in self.hooked("transform_layer_output"):
                        h = reg.transform_layer_output(h, layer)
        if is_lstm:
            return outs, (torch.cat([f[0] for f in finals]), torch.cat([f[1] for f in finals]))
        return outs, torch.cat(finals)  # (D*L, B, H)


def _run(twin: nn.RNNBase, weights: dict[str, Tensor], inp: Tensor | PackedSequence, state: Any) -> Any:
    """``twin(inp, state)`` on ``weights``. The module's forward reads its weights from the list
    ``_flat_weights`` (torch refreshes it only when its own parameters change, which the twin's never
    do): set, called, and restored. ``torch.func.functional_call`` does the same with a
    parameter swap around it, which cost 7 % of a step at hidden 64 (scripts/bench_cells.py). On
    GPU, cuDNN copies weights that are not in one flat buffer on every call and says so; here that
    copy is the price of the path, not news."""
    own = twin._flat_weights
    twin._flat_weights = [weights[name] for name in twin._flat_weights_names]
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous")
            return twin(inp, state)
    finally:
        twin._flat_weights = own  # no reference kept to this call's weights (or their graph)


def _keep_weights_as_given() -> None:
    return None


def _pack(x: Tensor, lengths: Tensor | None) -> Tensor | PackedSequence:
    if lengths is None:
        return x
    # Lengths live on the CPU for packing; sorting is done (and undone) by torch.
    return pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)


def _unpack(out: Tensor | PackedSequence, total: int) -> Tensor:
    if isinstance(out, PackedSequence):
        return pad_packed_sequence(out, batch_first=True, total_length=total)[0]  # (B, T, D*H), zeros padded
    return out
