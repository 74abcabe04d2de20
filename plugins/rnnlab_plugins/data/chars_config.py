"""Schema of character-level language modelling. Light: no torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from rnnlab.errors import ConfigError
from rnnlab.schemas import SequenceConfig, check_fractions, check_range


@dataclass
class CharsConfig(SequenceConfig):
    """Next-character prediction on real text: the Python standard library's source by default
    (the top-level ``*.py`` modules of the running interpreter, sorted by name), or any UTF-8 file
    (``path``). The text is split by position (train | val | test); the vocabulary is the training
    part's characters, id 0 is ``<unk>`` for any other. Reports bits per character and perplexity."""

    name: str = "chars"
    path: str | None = None  # a UTF-8 text file; None: the standard library's source
    # The first max_chars characters of the text. 1M: an epoch of an LSTM of 256 units takes 35 s on
    # one free CPU thread (30k characters/s, batch 64 of 100 steps), 86 s on one shared with other
    # jobs; of the default 64 units, seconds.
    max_chars: int = 1_000_000
    length: int = 100  # characters per training sequence
    val_fraction: float = 0.05
    test_fraction: float = 0.05
    # The text sample saved with the run (sample.txt), from a prompt at the start of the test text
    sample_chars: int = 500  # 0: none
    sample_temperature: float = 0.8  # 0: greedy (the most likely character at every step)
    kind: ClassVar[str] = "language_model"
    impl: ClassVar[str] = "rnnlab_plugins.data.chars:CharsDataModule"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self, "max_chars", ge=1)
        check_range(self, "length", ge=2)
        check_fractions(self)
        check_range(self, "sample_chars", ge=0)
        check_range(self, "sample_temperature", ge=0)
        if self.path is not None:
            path = Path(self.path).expanduser()
            if path.is_dir():
                raise ConfigError("path", f"is a directory, not a text file: {str(path)!r}")
            if not path.is_file():
                raise ConfigError("path", f"file not found: {str(path)!r}")
