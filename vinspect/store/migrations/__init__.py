"""Alembic environment and revisions shipped inside the package; no alembic.ini is needed.

:func:`upgrade` is called by every entry point that opens the store, so a fresh data directory
gets the current schema and an older one is migrated before the first write.

On PostgreSQL the upgrade runs under a transaction-scoped advisory lock, so several stations
started together against a fresh database migrate one after the other: the first creates the
schema, the others wait (saying who holds the lock) and then find it current. SQLite needs no
lock: its write transaction already excludes other writers.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from vinspect.errors import StoreError

__all__ = ["MIGRATION_LOCK_KEY", "check_current", "head_revision", "upgrade"]

MIGRATION_LOCK_KEY = 0x76696E6D  # "vinm": held by the one process migrating a PostgreSQL schema
_log = logging.getLogger(__name__)


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).resolve().parent))
    return config


def head_revision() -> str:
    """The newest schema revision this package ships."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships revisions
        raise StoreError("no store migrations shipped")
    return head


def upgrade(engine: Engine) -> None:
    """Bring the database schema to the newest revision (idempotent).

    Raises:
        StoreError: the migration failed; the database is left at its previous revision.
    """
    config = _config()
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                _lock_migrations(connection, engine)
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except SQLAlchemyError as exc:
        raise StoreError(f"migrating {engine.url.render_as_string(hide_password=True)}: {exc}") from exc


def _lock_migrations(connection: Connection, engine: Engine) -> None:
    """Take the migration advisory lock for this transaction; say who holds it while waiting."""
    if connection.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY}).scalar():
        return
    holder = connection.execute(
        text(
            "SELECT a.pid, a.application_name, a.client_addr FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid = :k LIMIT 1"
        ),
        {"k": MIGRATION_LOCK_KEY},
    ).first()
    who = (
        "another process"
        if holder is None
        else f"PostgreSQL backend pid {holder.pid} ({holder.application_name or 'no application name'}, "
        f"from {holder.client_addr or 'local socket'})"
    )
    _log.warning(
        "%s: waiting for %s to finish migrating the schema", engine.url.render_as_string(hide_password=True), who
    )
    connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
    _log.warning("%s: schema migration lock acquired", engine.url.render_as_string(hide_password=True))


def check_current(engine: Engine) -> None:
    """Refuse a database whose schema is not at :func:`head_revision`.

    Raises:
        StoreError: schema missing, older or newer than this package.
    """
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    except SQLAlchemyError as exc:
        raise StoreError(f"reading schema revision: {exc}") from exc
    if current != head_revision():
        raise StoreError(
            f"{engine.url.render_as_string(hide_password=True)}: schema revision "
            f"{current!r}, this vinspect needs {head_revision()!r} (run upgrade)"
        )
