"""Kept so that ``from rnnlab.config import compose, validate`` (rnnlab 0.1's documented import) still
works. Composition lives in :mod:`rnnlab.composition`, validation in :mod:`rnnlab.validation`; a
plugin's ``config.py`` holds its schemas."""

from rnnlab.composition import (
    CONFIG_MODULE,
    CONFIG_NAME,
    USER_GROUPS,
    Composer,
    compose,
    explain,
    list_groups,
    register_schemas,
)
from rnnlab.validation import Validated, monitors, returned_metrics, validate

__all__ = [
    "CONFIG_MODULE",
    "CONFIG_NAME",
    "USER_GROUPS",
    "Composer",
    "Validated",
    "compose",
    "explain",
    "list_groups",
    "monitors",
    "register_schemas",
    "returned_metrics",
    "validate",
]
