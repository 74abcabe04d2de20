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


# ----------------------------------------------------------------------------- credentials

# Where each client documents that it reads credentials from the environment.
MLFLOW_CREDENTIALS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")  # MLflow's HTTP client
POSTGRES_PASSWORD = "PGPASSWORD"  # libpq, under psycopg2 / psycopg and so SQLAlchemy's postgresql


def split_credentials(uri: str, key: str) -> tuple[str, dict[str, str]]:
    """``uri`` without its password, and the environment variables that carry the credentials the way
    the client documents it: ``MLFLOW_TRACKING_USERNAME`` / ``_PASSWORD`` for an MLflow server,
    ``PGPASSWORD`` for PostgreSQL (the user name stays in the URI: it is not a secret). A password in
    any other kind of URI cannot be kept out of the records: ConfigError naming ``key``."""
    from urllib.parse import unquote, urlsplit, urlunsplit

    try:
        parts = urlsplit(uri)
        password = parts.password
    except ValueError:
        return uri, {}
    if password is None:
        return uri, {}
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    kind = scheme(uri)
    if kind in ("http", "https"):
        env = {MLFLOW_CREDENTIALS[0]: unquote(parts.username or ""), MLFLOW_CREDENTIALS[1]: unquote(password)}
        return urlunsplit(parts._replace(netloc=host)), env
    if kind == "postgresql":
        user = f"{parts.username}@" if parts.username else ""
        return urlunsplit(parts._replace(netloc=user + host)), {POSTGRES_PASSWORD: unquote(password)}
    raise ConfigError(
        key,
        f"a password in a {kind} URI would be written to every record; give it to the driver outside "
        "the URI (e.g. an option file) or use a server whose credentials rnnlab passes by environment",
        ("http(s): MLFLOW_TRACKING_PASSWORD", "postgresql: PGPASSWORD"),
        label="supported",
    )


def export_credentials(env: dict[str, str], key: str, environ: Any = None) -> None:
    """Put ``env`` into the process environment (inherited by DDP ranks, sweep workers and jobs);
    a different value already there for the same variable is a ConfigError naming ``key``."""
    import os

    target = os.environ if environ is None else environ
    for name, value in env.items():
        if target.get(name) not in (None, value):
            raise ConfigError(key, f"{name} is already set to another value; give one password per variable")
        target[name] = value


# ----------------------------------------------------------------------------- reachability


def check_database(uri: str, key: str, timeout: float = 5.0) -> None:
    """Fail fast, in one line, when a SQL database does not answer (one try, ``timeout`` seconds), or
    a SQLite file cannot be written. Nothing for other schemes."""
    import os

    path = sqlite_path(uri)
    if path is not None:
        path = path.expanduser()
        if path.exists() and not os.access(path, os.W_OK):
            raise ConfigError(key, f"{path} is read-only; make it writable or pick another file")
        parent = next((p for p in (path.parent, *path.parent.parents) if p.exists()), None)
        if parent is not None and not os.access(parent, os.W_OK):
            raise ConfigError(key, f"cannot create {path}: {parent} is not writable")
        return
    if scheme(uri) not in ("postgresql", "mysql", "mssql", "oracle"):
        return
    import sqlalchemy

    args: dict[str, Any] = {"connect_timeout": int(timeout)} if scheme(uri) in ("postgresql", "mysql") else {}
    try:
        engine = sqlalchemy.create_engine(normalize_url(uri), connect_args=args, poolclass=sqlalchemy.pool.NullPool)
        with engine.connect():
            pass
    except Exception as e:  # the driver's own error, first line, password-free
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(key, f"cannot connect to {redact(uri)}: {redact(reason)}") from None
