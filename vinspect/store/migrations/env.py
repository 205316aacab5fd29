"""Alembic environment: always run programmatically with a connection handed in.

``vinspect.store.migrations.upgrade(engine)`` puts an open connection into
``config.attributes["connection"]``; there is no alembic.ini and no offline (SQL script) mode.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from vinspect.errors import StoreError
from vinspect.store.tables import Base


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


_connection = context.config.attributes.get("connection")
if not isinstance(_connection, Connection):
    raise StoreError("vinspect migrations run only through vinspect.store.migrations.upgrade(engine)")
_run(_connection)
