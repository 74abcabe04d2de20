"""The interface every backbone plugin implements."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from rnnlab.regularizer import Regularizer


class Backbone(nn.Module):
    """Maps inputs (B, T, input_size) to per-step features (B, T, output_size) and a final state.

    **Constructor contract.** rnnlab builds a backbone as ``Impl(**schema.kwargs(), input_size=C)``:
    every field of the plugin's schema dataclass but ``name`` as a plain keyword argument, plus
    ``input_size`` (the data's features per step, from its ``TaskSpec``). Take plain typed keywords,
    keep no second default that differs from the schema's, and set ``self.output_size``.

    **Forward.** ``forward(x, state=None, lengths=None) -> (features, final_state)``:

    - ``state``: the initial state, in the layout ``final_state`` comes back in (so a chunk's final
      state is the next chunk's initial state, as truncated BPTT needs); None: zeros.
    - ``lengths``: (B,) valid steps per sequence, for right-padded variable-length batches; None:
      every step is valid. Padding must not change any result of a sequence: its features, its
      final state (the state at its last valid step) and ``last_step(features, lengths)``.
      Features at padded steps are zeros.

    Per-step features are always returned, so per-step targets, gradient diagnostics and
    regularizers on activations need no change to the backbone. ``layers(x)`` gives every layer's
    per-step outputs (for diagnostics).

    **Regularizer hooks.** ``SequenceNet`` calls ``transform_inputs``, ``transform`` and
    ``penalty`` of every regularizer itself, whatever the backbone. The hooks inside the recurrence
    (``rnnlab.regularizer.BACKBONE_HOOKS``) can only be called by the backbone: it lists those it
    calls in ``supported_hooks`` and calls them through ``self.regularizers`` (set by
    ``use_regularizers``). A regularizer that needs a hook the backbone does not call is refused
    when the model is built, never ignored.
    """

    output_size: int
    supported_hooks: ClassVar[frozenset[str]] = frozenset()
    # Hooks accepted without being called because they have nothing to act on here (a GRU has no
    # cell state for transform_cell_state): a regularizer that also has them is not refused.
    inapplicable_hooks: ClassVar[frozenset[str]] = frozenset()
    # A plain tuple, not a ModuleList: the regularizers belong to SequenceNet (their state_dict keys
    # stay ``net.regularizers.*``); the backbone only calls their hooks. A class default, so a
    # backbone pickled before this attribute existed still works.
    regularizers: tuple[Regularizer, ...] = ()

    def forward(self, x: Tensor, state: Any = None, lengths: Tensor | None = None) -> tuple[Tensor, Any]:
        raise NotImplementedError

    def last_step(self, features: Tensor, lengths: Tensor | None = None) -> Tensor:
        """The sequence summary for last-step targets: (B, T, H) -> (B, H), at each sequence's last
        valid step when ``lengths`` is given."""
        if getattr(self, "bidirectional", False):  # (B, T, 2H): the backward direction ends at t=0
            h = features.size(-1) // 2
            return torch.cat([_last(features[..., :h], lengths), features[:, 0, h:]], dim=-1)  # (B, 2H)
        return _last(features, lengths)

    def layers(self, x: Tensor, state: Any = None, lengths: Tensor | None = None) -> list[Tensor]:
        """Every layer's per-step outputs, first layer first: [(B, T, H_l), ...]; the last equals
        ``forward``'s features. This default treats the backbone as one layer."""
        return [self(x, state, lengths)[0]]

    @contextlib.contextmanager
    def recording_layers(self) -> Iterator[list[list[Tensor]]]:
        """Within the block, ``forward`` appends to the list it yields, for every layer, the list of
        its states h_t (B, H), t = 1 .. T, as the graph's nodes that the next step reads (so the
        gradient of a loss with respect to h_t is the whole dL/dh_t, through later steps too): the
        gradient-flow diagnostics read these. A backbone records by appending to
        ``self.recording()`` when it is not None; one that never does gives no per-step diagnostics.
        A backbone with gates may also append to ``self.recording_gates()``, for every layer, the
        list of each step's {gate name: activation (B, H)} (gate saturation)."""
        layers: list[list[Tensor]] = []
        # not module attributes: never in state_dict or pickles
        self.__dict__["_recording"], self.__dict__["_recording_gates"] = layers, []
        try:
            yield layers
        finally:
            self.__dict__.pop("_recording", None)

    def recording(self) -> list[list[Tensor]] | None:
        """The list :meth:`recording_layers` collects into, inside its block; None outside."""
        return self.__dict__.get("_recording")

    def recording_gates(self) -> list[list[dict[str, Tensor]]] | None:
        """The gates' list inside a :meth:`recording_layers` block (kept after it); None before."""
        return self.__dict__.get("_recording_gates")

    def record_gates(self, steps: list[dict[str, Tensor]] | None) -> None:
        """Append one layer's gates (each step's {name: activation}) while recording."""
        gates = self.recording_gates()
        if gates is not None and steps:
            gates.append(steps)

    def recurrent_weights(self) -> dict[str, Tensor]:
        """The hidden-to-hidden weights by parameter name (e.g. ``weight_hh_l0``), for regularizers'
        ``weight_penalty``; empty when the backbone has none to offer."""
        return {}

    # -- regularizer hooks ------------------------------------------------------------------------

    def use_regularizers(self, regularizers: Sequence[Regularizer]) -> None:
        """Attach the regularizers whose hooks this backbone calls; refuse one that needs a hook this
        backbone does not call (``ValueError`` naming both)."""
        for reg in regularizers:
            missing = sorted(reg.backbone_hooks() - self.supported_hooks - self.inapplicable_hooks)
            if missing:
                supported = ", ".join(sorted(self.supported_hooks)) or "none"
                raise ValueError(
                    f"regularizer {type(reg).__name__} needs {', '.join(missing)}, which backbone "
                    f"{type(self).__name__} does not call (it calls: {supported})"
                )
        self.regularizers = tuple(regularizers)

    def hooked(self, hook: str) -> list[Regularizer]:
        """The attached regularizers that override ``hook`` (for a backbone's fast path)."""
        return [reg for reg in self.regularizers if hook in reg.backbone_hooks()]

    def state_keep(self, state: str, like: Tensor, layer: int) -> Tensor | float | None:
        """The attached regularizers' ``state_keep`` for one direction of ``layer``, combined: a
        unit keeps its previous state unless every one of them lets it change,
        ``k = 1 - prod(1 - k_i)``. None when none keeps anything."""
        keep: Tensor | float | None = None
        for reg in self.hooked("state_keep"):
            k = reg.state_keep(state, like, layer)
            if k is not None:
                keep = k if keep is None else 1 - (1 - keep) * (1 - k)
        return keep


def _last(features: Tensor, lengths: Tensor | None) -> Tensor:
    """(B, T, H) -> (B, H) at each sequence's last valid step (the last step without lengths)."""
    if lengths is None:
        return features[:, -1]
    return features[torch.arange(features.size(0), device=features.device), lengths.to(features.device) - 1]
