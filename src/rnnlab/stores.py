"""Store URIs, in one place: MLflow tracking URIs and Optuna storage URLs.

Parsing, making relative file paths absolute, choosing the PostgreSQL driver, hiding passwords and
checking schemes all live here, so the CLI, tracking, pruning and the sweeper agree. No heavy imports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rnnlab.errors import ConfigError

SQLITE = "sqlite:///"
JOURNAL = "journal:///"

# MLflow tracking backends that rnnlab can log to. ``file:`` is left out: MLflow 3 refuses a file
# store unless MLFLOW_ALLOW_FILE_STORE is set, and its error comes after the data is built.
TRACKING_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks")
# Optuna storages: any SQLAlchemy URL Optuna's RDBStorage takes, and its journal file storage.
STORAGE_SCHEMES = ("sqlite", "postgresql", "mysql", "oracle", "mssql", "journal")


def scheme(uri: str) -> str:
    """``postgresql`` for ``postgresql+psycopg2://...``; "" when the URI has no scheme."""
    head, sep, _ = uri.partition("://")
    if not sep:
        head, sep, _ = uri.partition(":")
    return head.split("+", 1)[0].lower() if sep else ""


def check_scheme(uri: str, key: str, allowed: tuple[str, ...]) -> None:
    """Raise ConfigError naming ``key`` unless ``uri``'s scheme is one of ``allowed``."""
    if not uri:
        raise ConfigError(key, "must not be empty", allowed, label="valid schemes")
    if scheme(uri) not in allowed:
        raise ConfigError(key, f"unsupported URI {redact(uri)!r}", allowed, label="valid schemes")


def file_path(uri: str) -> Path | None:
    """The file behind a ``sqlite:///`` or ``journal:///`` URI (relative or absolute), else None."""
    for prefix in (SQLITE, JOURNAL):
        if uri.startswith(prefix):
            path = uri[len(prefix) :]
            return Path(path) if path and not path.startswith(":memory:") else None
    return None


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else None."""
    return file_path(uri) if uri.startswith(SQLITE) else None


def absolute(uri: str, base: str | Path | None = None) -> str:
    """``sqlite:///rel.db`` -> ``sqlite:////abs/rel.db`` (likewise ``journal:///``), relative to
    ``base`` (default: the working directory), so records land where the user ran the command.
    Other URIs come back unchanged."""
    path = file_path(uri)
    if path is None or path.is_absolute():
        return uri
    prefix = SQLITE if uri.startswith(SQLITE) else JOURNAL
    return prefix + str((Path(base) if base is not None else Path.cwd()).joinpath(path).resolve())


def normalize_url(url: str) -> str:
    """``postgresql://`` means psycopg (v3) to SQLAlchemy 2.1; use psycopg2 when only it is installed."""
    if url.startswith("postgresql://"):
        import importlib.util

        if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
            return "postgresql+psycopg2://" + url[len("postgresql://") :]
    return url


def redact(url: Any) -> str:
    """The URI with any password replaced by ``***`` (safe to log, print or tag)."""
    text = str(url)
    if "@" not in text or "://" not in text:
        return text
    head, rest = text.split("://", 1)
    userinfo, at, host = rest.rpartition("@")
    if not at or "/" in userinfo:
        return text
    user = userinfo.split(":", 1)[0]
    return f"{head}://{user}:***@{host}" if ":" in userinfo else text
