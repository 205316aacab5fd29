"""How a ``vinspect`` command opens the store: one context manager for every verb.

``with store_engine(args) as engine:`` yields the store that ``--data-dir`` (and ``--database-url``
where the verb has it) names, migrated (every entry point migrates, see
:func:`vinspect.store.migrations.upgrade`) and signing the audit rows it appends with the data
directory's audit key, as the station and the web app do: an unkeyed row after keyed ones reads as
a forgery. The engine is disposed of on the way out, whatever happens inside.

Two ways to open it:

- the default creates what is missing (the data directory, mode 0750, the SQLite file and the
  audit key), as ``vinspect serve`` does: verbs that sign or record (models, config, labelling,
  users);
- ``must_exist=True`` refuses a SQLite store that does not exist and never creates a data
  directory or an audit key (it signs with the key only when there is one): verbs that read or
  administer a store the station or the web app created (ncr, audit, backup, report, ...).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from vinspect.errors import StoreError
from vinspect.fileperms import private_dir
from vinspect.settings import Settings, load_settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

__all__ = ["missing_sqlite_store", "open_store_engine", "store_engine", "store_location"]


def store_location(data_dir: Path | None, database_url: str | None) -> tuple[Path, str]:
    """(data_dir, database URL): the options, else VINSPECT_DATA_DIR / VINSPECT_DATABASE_URL, else
    ``./vinspect-data`` and SQLite inside it (see :class:`vinspect.settings.Settings`)."""
    settings = load_settings(data_dir=data_dir, database_url=database_url)
    return settings.data_dir, settings.resolved_database_url


def missing_sqlite_store(url: str) -> Path | None:
    """The file a ``sqlite:///`` URL names when it does not exist; None when it exists or the
    URL names another database."""
    if not url.startswith("sqlite:///"):
        return None
    path = Path(url.removeprefix("sqlite:///"))
    return None if path.exists() else path


def open_store_engine(settings: Settings) -> Engine:
    """The migrated store of ``settings`` with its audit key attached, the data directory and the
    key created on first use (as ``vinspect serve`` opens it). The caller disposes of it."""
    from vinspect.store import make_engine, upgrade
    from vinspect.store.audit_key import ANCHOR_FILE, attach, open_keyring

    private_dir(settings.data_dir)
    engine = make_engine(settings.resolved_database_url)
    try:
        upgrade(engine)
        attach(engine, open_keyring(settings.data_dir), anchor_path=settings.data_dir / ANCHOR_FILE)
    except BaseException:
        engine.dispose()
        raise
    return engine


@contextmanager
def store_engine(args: argparse.Namespace, *, must_exist: bool = False) -> Iterator[Engine]:
    """The store the command's ``--data-dir`` / ``--database-url`` name (see the module doc),
    disposed of on the way out.

    Raises:
        StoreError: with ``must_exist``, the SQLite store does not exist (nothing is created).
    """
    settings = load_settings(data_dir=args.data_dir, database_url=getattr(args, "database_url", None))
    if not must_exist:
        engine = open_store_engine(settings)
    else:
        missing = missing_sqlite_store(settings.resolved_database_url)
        if missing is not None:
            raise StoreError(f"no store at {missing} (give --data-dir or --database-url)")
        engine = _open_existing(settings)
    try:
        yield engine
    finally:
        engine.dispose()


def _open_existing(settings: Settings) -> Engine:
    from vinspect.store import make_engine, upgrade
    from vinspect.store.audit_key import ANCHOR_FILE, KEY_FILE, attach, load_keyring

    engine = make_engine(settings.resolved_database_url)
    try:
        upgrade(engine)
        ring = load_keyring(settings.data_dir / KEY_FILE)  # rows this command appends are signed like the station's
        if ring is not None:
            attach(engine, ring, anchor_path=settings.data_dir / ANCHOR_FILE)
    except BaseException:
        engine.dispose()
        raise
    return engine
