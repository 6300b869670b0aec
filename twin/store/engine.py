"""Build the one SQLAlchemy engine of a process: SQLite file (WAL) by default, PostgreSQL by URL.

Nothing here runs at import time; call :func:`make_engine` at start-up and pass the engine (or
sessions made from it) to the code that needs it.

* ``sqlite:///path/to/file.sqlite``: the folder is created, the journal is WAL (readers never
  block the writer), foreign keys are enforced, and a busy timeout makes a writer wait for a
  lock instead of failing at once.
* ``postgresql+psycopg://user@host:port/db``: psycopg 3; connections are checked before use
  (``pool_pre_ping``) so a restarted server or a terminated backend costs one reconnect.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

log = logging.getLogger(__name__)

DEFAULT_BUSY_TIMEOUT_MS = 5_000
"""How long a SQLite writer waits for a lock held by another connection before failing."""


def make_engine(
    url: str | None = None,
    *,
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    application_name: str = "jumeau",
    **engine_kwargs: Any,
) -> Engine:
    """Create the engine for ``url`` (default :func:`twin.settings.database_url`).

    ``busy_timeout_ms`` applies to SQLite; ``application_name`` labels PostgreSQL connections
    (visible in ``pg_stat_activity``) unless the URL sets its own. Extra keyword arguments go
    to ``sqlalchemy.create_engine``.
    """
    if url is None:
        from twin.settings import database_url

        url = database_url()
    if busy_timeout_ms < 0:
        raise ValueError(f"busy_timeout_ms={busy_timeout_ms!r} must be >= 0")
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url, busy_timeout_ms, **engine_kwargs)
    if backend == "postgresql":
        if parsed.get_driver_name() not in ("psycopg", "psycopg2"):
            log.info(
                "database URL uses driver %r; Jumeau is tested with postgresql+psycopg", parsed.drivername
            )
        connect_args = dict(engine_kwargs.pop("connect_args", {}))
        if "application_name" not in parsed.query:
            connect_args.setdefault("application_name", application_name)
        engine_kwargs.setdefault("pool_pre_ping", True)
        return sa.create_engine(url, connect_args=connect_args, **engine_kwargs)
    raise ValueError(
        f"database URL {parsed.render_as_string(hide_password=True)!r}: only sqlite:///FILE and "
        "postgresql+psycopg://... are supported"
    )


def _sqlite_engine(url: str, busy_timeout_ms: int, **engine_kwargs: Any) -> Engine:
    parsed = make_url(url)
    database = parsed.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    connect_args = dict(engine_kwargs.pop("connect_args", {}))
    connect_args.setdefault("timeout", busy_timeout_ms / 1000)
    engine = sa.create_engine(url, connect_args=connect_args, **engine_kwargs)

    @sa.event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    return engine


def describe(engine: Engine) -> str:
    """The engine's URL with any password hidden, for logs and summaries."""
    return engine.url.render_as_string(hide_password=True)
