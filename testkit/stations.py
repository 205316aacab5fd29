"""Approve a station file the way ``vinspect config approve`` does, for tests and benchmarks that
start store-backed stations (a store-backed ``vinspect run`` refuses an unapproved configuration).

The approver is a quality engineer account created on first use (``cfg-approver``); the approval
goes through :func:`vinspect.store.station_configs.approve_config` in the data directory's store,
signed with its audit key, exactly as the CLI writes it (the CLI adds only the password prompt).
"""

from __future__ import annotations

from pathlib import Path

from vinspect.station_file import load_station
from vinspect.store import make_engine, session_scope, upgrade
from vinspect.store.audit_key import ANCHOR_FILE, attach, open_keyring
from vinspect.store.ncr import Role
from vinspect.store.station_configs import approve_config, approved
from vinspect.store.users import create_user, get_user

__all__ = ["APPROVER", "approve_station"]

APPROVER = "cfg-approver"


def approve_station(
    station: Path, data_dir: Path, *, database_url: str | None = None, reason: str = "test station configuration"
) -> str:
    """Approve ``station`` in the store of ``data_dir`` (idempotent); returns the configuration hash."""
    config = load_station(station)
    digest = config.config_sha256()
    data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(database_url or f"sqlite:///{(data_dir / 'vinspect.db').resolve()}")
    try:
        upgrade(engine)
        attach(engine, open_keyring(data_dir), anchor_path=data_dir / ANCHOR_FILE)
        with session_scope(engine) as session:
            if approved(session=session, station_id=config.station_id, config_sha256=digest) is not None:
                return digest
            user = get_user(session=session, username=APPROVER)
            if user is None:
                user = create_user(
                    APPROVER,
                    session=session,
                    display_name="Configuration Approver",
                    role=Role.QUALITY_ENGINEER,
                    password_hash="not-a-login",
                    actor="system:test",
                )
            approve_config(
                session=session,
                station_id=config.station_id,
                config_text=config.config_text(),
                source_path=str(station.resolve()),
                signer_user_id=user.id,
                reason=reason,
            )
    finally:
        engine.dispose()
    return digest
