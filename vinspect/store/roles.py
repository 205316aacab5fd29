"""PostgreSQL: a least-privilege role for the station and the web app (goal D5, defence in depth).

The append-only triggers (migration 0001) refuse UPDATE, DELETE and TRUNCATE of quality records
for every role, but the tables' owner could drop them. A plant therefore runs migrations as the
owner and the station / API as a separate role that may only read and append quality records:
for that role a change is refused by the permission system itself ("permission denied"), and it
cannot drop a trigger because it owns nothing. Only the export outbox (delivery state), the
user table (activation), the station registry (each station's latest report, issue 18) and the
model assignments (the station's reported outcome) and a shadow candidate's latest statistics per
station (issue 20; its disagreements are append-only) take updates, and so do the analytics roll-up's
counts and watermark (derived, rebuilt from the records by the owner with
``analytics_rollup.rebuild``); distributed bundle archives are read and inserted only. SQLite has
no roles: there the triggers are the guard.
"""

from __future__ import annotations

import re

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from vinspect.errors import StoreError
from vinspect.store.db import is_sqlite
from vinspect.store.tables import APPEND_ONLY_TABLES as _APPEND_ONLY
from vinspect.store.tables import LABEL_TABLES

__all__ = ["APPEND_ONLY_TABLES", "INSERT_ONLY_TABLES", "UPDATABLE_TABLES", "grant_app_role"]

APPEND_ONLY_TABLES = (*_APPEND_ONLY, *LABEL_TABLES)  # one list (store.tables), the label tables too
UPDATABLE_TABLES = (
    "outbox",
    "users",
    "quality_alarms",
    "capas",
    "capa_steps",
    "stations",
    "model_assignments",
    "inspection_hourly",
    "analytics_watermark",
    "judgement_hourly",
    "inspection_monthly",
    "judgement_monthly",
    "shadow_stats",
)  # inspection_hourly ... judgement_monthly: derived counts (issue 17); shadow_stats: a shadow's latest counts
INSERT_ONLY_TABLES = ("model_bundles",)  # no trigger: the stations verify each archive's sha256
_ROLE = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def grant_app_role(engine: Engine, role: str) -> list[str]:
    """Grant ``role`` read + append on quality records, read + update on outbox and users.

    Run as the owner of the schema (after ``upgrade``). The role must exist (``CREATE ROLE ...
    LOGIN``: passwords and authentication are the DBA's, not ours). Returns the statements run.

    Raises:
        StoreError: SQLite, a role name that is not a plain lower-case identifier, or a database
            error (unknown role, not the owner).
    """
    if is_sqlite(engine):
        raise StoreError("SQLite has no roles: its append-only triggers are the guard")
    if not _ROLE.fullmatch(role):
        raise StoreError(f"role {role!r}: use a plain lower-case identifier (letters, digits, _)")
    statements = [
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}",
        f"GRANT SELECT, INSERT ON {', '.join(APPEND_ONLY_TABLES)} TO {role}",
        f"GRANT SELECT, INSERT, UPDATE ON {', '.join(UPDATABLE_TABLES)} TO {role}",
        f"GRANT SELECT, INSERT ON {', '.join(INSERT_ONLY_TABLES)} TO {role}",
        f"GRANT SELECT ON alembic_version TO {role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
    ]
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
    except SQLAlchemyError as exc:
        raise StoreError(f"granting {role} on {engine.url.render_as_string(hide_password=True)}: {exc}") from exc
    return statements
