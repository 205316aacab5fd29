"""Idempotent records and a keyed audit chain.

Revision ID: 0003
Revises: 0001
Create Date: 2026-12-05

- ``inspections``: one row per (station, part sequence): a unique index, so a record delivered
  twice, or a part number reused after a crash, cannot be stored twice.
- ``ncrs``: at most one NCR per inspection (unique ``inspection_id``).
- ``audit_records``: ``key_id`` and ``mac`` (HMAC-SHA256 of ``row_hash`` with a key kept outside
  the database, see :mod:`vinspect.store.audit_key`), and ``state`` (the canonical JSON state of
  the audited row after the change, e.g. a user's active flag, role and password-hash digest).
  Existing rows keep NULL there and verify as before (reported as unkeyed).

A store written before this revision may already hold duplicates (the crash this revision
prevents). Those append-only rows cannot be removed, so there (only) the unique index is partial,
covering rows with an ``id`` above the newest duplicate found at upgrade time, and a plain index
on the same columns serves lookups (a partial index only serves queries that repeat its
condition). The old duplicates stay as they are, visible to the store's recount.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None


def _floor(table: str, columns: str) -> int:
    """The highest id among rows that share ``columns`` with another row (0 if none)."""
    found = (
        op.get_bind()
        .execute(
            sa.text(
                f"SELECT MAX(id) FROM {table} WHERE ({columns}) IN "
                f"(SELECT {columns} FROM {table} WHERE {columns.split(',')[-1].strip()} IS NOT NULL "
                f"GROUP BY {columns} HAVING COUNT(*) > 1)"
            )
        )
        .scalar()
    )
    return int(found or 0)


def _unique(name: str, table: str, columns: list[str], *, lookup: str) -> None:
    floor = _floor(table, ", ".join(columns))
    if floor == 0:
        op.create_index(name, table, columns, unique=True)
        return
    where = sa.text(f"id > {floor}")
    op.create_index(name, table, columns, unique=True, sqlite_where=where, postgresql_where=where)
    op.create_index(lookup, table, columns)


def upgrade() -> None:
    _unique(
        "uq_inspections_station_part", "inspections", ["station_id", "part_seq"], lookup="ix_inspections_station_part"
    )
    _unique("uq_ncrs_inspection", "ncrs", ["inspection_id"], lookup="ix_ncrs_inspection")
    with op.batch_alter_table("audit_records", recreate="never") as batch:
        batch.add_column(sa.Column("key_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("mac", sa.String(64), nullable=True))
        batch.add_column(sa.Column("state", sa.Text(), nullable=True))


def downgrade() -> None:
    raise NotImplementedError("the quality record store is never downgraded: restore a backup instead")
