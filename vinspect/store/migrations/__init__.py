"""Alembic environment and revisions shipped inside the package; no alembic.ini is needed.

:func:`upgrade` is called by every entry point that opens the store, so a fresh data directory
gets the current schema and an older one is migrated before the first write.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from vinspect.errors import StoreError

__all__ = ["check_current", "head_revision", "upgrade"]


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
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except SQLAlchemyError as exc:
        raise StoreError(f"migrating {engine.url.render_as_string(hide_password=True)}: {exc}") from exc


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
        raise StoreError(f"{engine.url.render_as_string(hide_password=True)}: schema revision "
                         f"{current!r}, this vinspect needs {head_revision()!r} (run upgrade)")
