"""Schemas of the synthetic long-memory tasks (adding problem, copy memory). Light: no torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rnnlab.errors import ConfigError
from rnnlab.schemas import SequenceConfig, check_choice, check_range


@dataclass
class AddingConfig(SequenceConfig):
    """The adding problem (Hochreiter & Schmidhuber 1997): T steps of (random value, marker); the
    target is the sum of the two marked values, one marked in each half of the sequence (Arjovsky et
    al. 2016). Predicting 1.0 always scores MSE 0.167.

    ``target``: ``last``, that sum from the last step (last-step regression); ``running``, at every
    step the sum of the values marked so far (per-step regression: 0 before the first marker, the
    first value until the second, then the sum; its last step is the ``last`` target)."""

    name: str = "adding"
    length: int = 100  # T
    target: str = "last"
    n_train: int = 10000
    n_val: int = 1000
    n_test: int = 1000
    seed: int = 0  # the data; each split has its own stream
    kind: ClassVar[str] = "regression"
    impl: ClassVar[str] = "rnnlab_plugins.data.synthetic:AddingDataModule"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self, "length", ge=2)
        check_choice(self, "target", ("last", "running"))
        for key in ("n_train", "n_val", "n_test"):
            check_range(self, key, ge=1)

    def task_kind(self) -> str:
        return "per_step_regression" if self.target == "running" else "regression"


@dataclass
class CopyConfig(SequenceConfig):
    """Copy memory (Arjovsky et al. 2016): 10 symbols from an alphabet, T blanks, a delimiter, then
    reproduce the symbols. The memoryless baseline's cross-entropy is 10 ln(alphabet) / (T + 20).
    Validation and test hold no symbol string of the training set."""

    name: str = "copy"
    delay: int = 50  # T
    alphabet: int = 8
    symbols: int = 10
    n_train: int = 10000
    n_val: int = 1000
    n_test: int = 1000
    seed: int = 0  # the data; each split has its own stream
    kind: ClassVar[str] = "per_step_classification"
    impl: ClassVar[str] = "rnnlab_plugins.data.synthetic:CopyDataModule"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self, "delay", ge=1)
        check_range(self, "alphabet", ge=2)
        check_range(self, "symbols", ge=1)
        for key in ("n_train", "n_val", "n_test"):
            check_range(self, key, ge=1)
        # the splits are kept disjoint by drawing again any string held out (val, test): enough
        # strings must be left over, or the draws would not end (at most half held out: ~2 draws each)
        strings = self.alphabet ** min(self.symbols, 64)  # 2**64 outnumbers any split
        held_out = self.n_val + self.n_test
        if strings < 2 * held_out:
            raise ConfigError(
                "symbols",
                f"{self.alphabet}**{self.symbols} = {strings} symbol strings are too few for disjoint splits, "
                f"which need at least 2 * (n_val + n_test) = {2 * held_out}: raise symbols or alphabet, "
                "or lower n_val and n_test",
            )
