"""User-facing errors: one line, naming the key and the valid choices."""

from __future__ import annotations

from collections.abc import Iterable


class RnnlabError(Exception):
    """An error caused by the user's input; the CLI prints it as one line, without a traceback."""

    exit_code = 2


class ConfigError(RnnlabError):
    """A config value is wrong. ``key`` is its dotted path; ``choices`` the values that would work."""

    def __init__(
        self, key: str, message: str, choices: Iterable[str] | None = None, label: str = "valid choices"
    ) -> None:
        self.key = key
        self.label = label
        self.message = message
        self.choices = sorted(choices) if choices is not None else None
        super().__init__(str(self))

    def __reduce__(self) -> tuple[type[ConfigError], tuple[str, str, list[str] | None, str]]:
        # A job run by submitit or Ray returns its exception pickled; the default would call
        # ConfigError(str(self)) and fail in the sweeper, losing the whole batch.
        return type(self), (self.key, self.message, self.choices, self.label)

    def with_prefix(self, prefix: str) -> ConfigError:
        """The same error with its key under ``prefix``: ``hidden_size`` -> ``backbone.hidden_size``."""
        if not prefix:
            return self
        key = f"{prefix}.{self.key}" if self.key else prefix
        return ConfigError(key, self.message, self.choices, self.label)

    def __str__(self) -> str:
        text = f"{self.key}: {self.message}" if self.key else self.message
        if self.choices is not None:
            text += f"; {self.label}: {', '.join(self.choices) if self.choices else '(none installed)'}"
        return text


def first_line(text: str) -> str:
    """The first non-blank line of ``text`` (messages from Hydra and OmegaConf run over several)."""
    return next((line.strip() for line in text.splitlines() if line.strip()), text)
