"""Engines and transactions with the durability the quality records need, asserted per connection.

SQLite (the embedded default): every connection is switched to WAL, ``synchronous=FULL`` and
foreign keys on, and each setting is read back; a connection that does not report exactly these
is refused. Write transactions start with ``BEGIN IMMEDIATE`` so that the audit chain head and the
gap-free NCR number are read and extended under the database write lock (two processes, the
runtime and the API, share the file). Read-only scopes use a deferred ``BEGIN`` and never block
the line.

PostgreSQL (a plant with many stations, chosen by URL): every connection checks ``fsync``,
``synchronous_commit`` and ``full_page_writes`` are ``on``; writers serialise on a
transaction-scoped advisory lock (:func:`lock_writers`) for the same two sequences.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from vinspect.errors import StoreError

__all__ = ["is_sqlite", "lock_writers", "make_engine", "session_scope", "sqlite_path"]

_SQLITE_PRAGMAS = (
    ("journal_mode", "WAL", "wal"),
    ("synchronous", "FULL", 2),
    ("foreign_keys", "ON", 1),
)
_PG_SETTINGS = ("fsync", "synchronous_commit", "full_page_writes")
_WRITER_LOCK_KEY = 0x76696E73  # "vins": one advisory lock shared by every vinspect writer
_READONLY_OPTION = "vinspect_readonly"


def make_engine(
    url: str, *, busy_timeout_ms: int = 30_000, echo: bool = False, application_name: str | None = None
) -> Engine:
    """Create an engine whose every connection is checked for durable settings.

    Args:
        url: ``sqlite:///path/to/vinspect.db`` or ``postgresql+psycopg://user@host:port/db``.
        busy_timeout_ms: how long a SQLite writer waits for the write lock.
        echo: log SQL (debugging only).
        application_name: PostgreSQL only: how this process shows in ``pg_stat_activity``
            (default ``vinspect pid <pid>``), so a lock holder can be named.

    Raises:
        StoreError: unsupported URL, in-memory SQLite, or a database that cannot be opened
            with WAL + FULL (SQLite) or with fsync/synchronous_commit off (PostgreSQL).
    """
    try:
        parsed = make_url(url)
    except SQLAlchemyError as exc:
        raise StoreError(f"database URL {url!r}: {exc}") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise StoreError("in-memory SQLite cannot hold quality records: give a file path")
        engine = create_engine(parsed, echo=echo)
        _install_sqlite_hooks(engine, busy_timeout_ms=busy_timeout_ms)
    elif backend == "postgresql":
        name = application_name or f"vinspect pid {os.getpid()}"
        engine = create_engine(parsed, echo=echo, pool_pre_ping=True, connect_args={"application_name": name[:63]})
        event.listen(engine, "connect", _check_postgres)
    else:
        raise StoreError(f"database URL {url!r}: only sqlite and postgresql are supported")
    return engine


def is_sqlite(engine: Engine | Connection) -> bool:
    """True for a SQLite engine or connection."""
    return engine.dialect.name == "sqlite"


def sqlite_path(engine: Engine) -> str:
    """The database file of a SQLite engine."""
    if not is_sqlite(engine) or not engine.url.database:
        raise StoreError(f"{engine.url!r} is not a SQLite file database")
    return engine.url.database


def _install_sqlite_hooks(engine: Engine, *, busy_timeout_ms: int) -> None:
    def on_connect(dbapi_connection: Any, _record: object) -> None:
        # The driver's own implicit transactions are off; BEGIN is issued by on_begin below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            for name, wanted, expected in _SQLITE_PRAGMAS:
                cursor.execute(f"PRAGMA {name} = {wanted}")
                got = cursor.execute(f"PRAGMA {name}").fetchone()[0]
                if got != expected:
                    raise StoreError(
                        f"SQLite {engine.url.database}: PRAGMA {name} is {got!r}, "
                        f"need {expected!r}; refusing to store quality records"
                    )
        finally:
            cursor.close()

    def on_begin(conn: Connection) -> None:
        readonly = conn.get_execution_options().get(_READONLY_OPTION, False)
        conn.exec_driver_sql("BEGIN DEFERRED" if readonly else "BEGIN IMMEDIATE")

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", on_begin)


def _check_postgres(dbapi_connection: Any, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    try:
        for name in _PG_SETTINGS:
            cursor.execute(f"SHOW {name}")
            got = cursor.fetchone()[0]
            if got != "on":
                raise StoreError(f"PostgreSQL setting {name} is {got!r}, need 'on'; refusing to store quality records")
    finally:
        cursor.close()
        dbapi_connection.rollback()


def lock_writers(session: Session) -> None:
    """Serialise writers for this transaction (PostgreSQL advisory lock; SQLite already is)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _WRITER_LOCK_KEY})


@contextmanager
def session_scope(engine: Engine, *, readonly: bool = False) -> Iterator[Session]:
    """One transaction: committed on normal exit, rolled back on any exception.

    Args:
        engine: from :func:`make_engine`.
        readonly: take no write lock (SQLite deferred BEGIN; PostgreSQL READ ONLY transaction).

    Raises:
        StoreError: any database error, chained from the driver's exception.
    """
    options: dict[str, bool] = {}
    if readonly:
        options = {_READONLY_OPTION: True} if is_sqlite(engine) else {"postgresql_readonly": True}
    bind = engine.execution_options(**options) if options else engine
    factory = sessionmaker(bind=bind, expire_on_commit=False, autoflush=False)
    session = factory()
    try:
        yield session
        session.commit()
    except SQLAlchemyError as exc:
        session.rollback()
        raise StoreError(f"{engine.url.render_as_string(hide_password=True)}: {exc}") from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
