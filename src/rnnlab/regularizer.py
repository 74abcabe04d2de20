"""The interface every regularizer plugin implements."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

# Hooks inside the recurrence: only a backbone can call them, and it declares which it calls in
# ``Backbone.supported_hooks``. The others (``transform_inputs``, ``transform``, ``penalty``) are
# called by SequenceNet / SequenceModel for every backbone.
BACKBONE_HOOKS = frozenset(
    {
        "transform_layer_output",
        "transform_recurrent_weight",
        "transform_hidden_state",
        "transform_cell_state",
        "state_keep",
        "weight_penalty",
    }
)


class Regularizer(nn.Module):
    """Hooks on the way from inputs to loss; every one is a no-op unless overridden.

    **Constructor contract.** Built as ``Impl(**schema.kwargs())``: the schema's fields but ``name``
    as plain keyword arguments. Hooks see ``self.training`` (most act in training only).

    Called for every backbone, by the model:

    - ``transform_inputs(x)``: inputs (B, T, C) before the backbone (e.g. input or embedding dropout).
    - ``transform(features)``: the last layer's features (B, T, H) on their way to the head.
    - ``penalty(features, lengths=None)``: a scalar added to the training loss, or None. With
      ``lengths`` (B,), steps at and beyond a sequence's length are padding (zeros).

    Called by backbones that list them in ``supported_hooks`` (the model refuses the combination
    otherwise). The built-in backbones (rnn, lstm, gru) call ``transform_layer_output``,
    ``transform_recurrent_weight`` and support ``weight_penalty`` on their fused kernels; the
    per-step ``transform_hidden_state`` / ``transform_cell_state`` need an explicit cell loop (cuDNN
    runs the whole sequence in one kernel), so a regularizer that needs them switches the backbone
    to ``kernel=cell`` and the log says so:

    - ``transform_layer_output(h, layer)``: layer ``layer``'s outputs (B, T, D*H) before they feed
      layer ``layer + 1`` (never called after the last layer; that is ``transform``). Called after
      torch's own inter-layer ``dropout``.
    - ``transform_recurrent_weight(name, weight)``: the hidden-to-hidden weight to use in this
      forward pass, e.g. DropConnect on ``weight_hh_l0`` (weight drop); ``name`` is the parameter's
      name in the backbone. The parameter itself is not changed.
    - ``state_keep(state, like, layer)``: the fraction of each unit's previous state that every
      step of layer ``layer`` keeps, ``s_t = k s_{t-1} + (1 - k) s~_t``, as a tensor shaped like
      ``like`` (T, B, H), a number, or None (no change); ``state`` is "h", or "c" for an LSTM's cell
      (zoneout). The explicit cells run it inside their hand-written BPTT, the fast path.
    - ``transform_hidden_state(h, h_prev, layer)`` / ``transform_cell_state(c, c_prev, layer)``: the
      state (B, H) after a step, given the state before it, for any other per-step transform; ``c``
      is an LSTM's cell. They run the cells step by step under autograd (slower).
    - ``weight_penalty(weights)``: a scalar added to the training loss from the backbone's
      ``recurrent_weights()`` ({name: weight}), or None.
    """

    def transform_inputs(self, x: Tensor) -> Tensor:
        return x

    def transform(self, features: Tensor) -> Tensor:
        return features

    def penalty(self, features: Tensor, lengths: Tensor | None = None) -> Tensor | None:
        return None

    def transform_layer_output(self, h: Tensor, layer: int) -> Tensor:
        return h

    def transform_recurrent_weight(self, name: str, weight: Tensor) -> Tensor:
        return weight

    def transform_hidden_state(self, h: Tensor, h_prev: Tensor, layer: int) -> Tensor:
        return h

    def transform_cell_state(self, c: Tensor, c_prev: Tensor, layer: int) -> Tensor:
        return c

    def state_keep(self, state: str, like: Tensor, layer: int) -> Tensor | float | None:
        return None

    def weight_penalty(self, weights: Mapping[str, Tensor]) -> Tensor | None:
        return None

    @classmethod
    def backbone_hooks(cls) -> frozenset[str]:
        """The hooks in ``BACKBONE_HOOKS`` this class overrides (what it needs from a backbone)."""
        return frozenset(h for h in BACKBONE_HOOKS if getattr(cls, h) is not getattr(Regularizer, h))

    @classmethod
    def overrides(cls, hook: str) -> bool:
        """Whether this class overrides ``hook`` (so a caller can skip a no-op)."""
        return getattr(cls, hook) is not getattr(Regularizer, hook)
