"""Backup and restore with verification (reliability goal D10).

SQLite: the online backup API copies a consistent snapshot while the line keeps writing.
PostgreSQL: ``pg_dump -Fc``; the dump is verified by restoring it into a scratch database on the
same server, which is dropped afterwards. Either way the copy must pass the integrity check, the
audit-chain verification and the record verification before a manifest
(``<file>.manifest.json``: file sha256, row counts, chain head, schema revision) is written next
to it. Restore checks the file against its manifest, restores into an empty target, verifies the
result against the manifest's counts and chain head, and only then appends a ``store.restore``
audit link. Backups and restores are audited in the store they touch.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from glob import glob
from pathlib import Path

from sqlalchemy import Engine, inspect
from sqlalchemy.engine import URL, make_url

from vinspect.errors import StoreError
from vinspect.files import replace_atomically, sha256_file, write_atomically
from vinspect.store.audit import AuditEntry, ChainAnchor, append_audit
from vinspect.store.audit_key import AuditKeyring, attach
from vinspect.store.db import is_sqlite, make_engine, session_scope, sqlite_path
from vinspect.store.migrations import head_revision
from vinspect.store.verify import StoreReport, verify_store

__all__ = ["BackupManifest", "backup_store", "restore_store"]


@dataclass(frozen=True, slots=True, kw_only=True)
class BackupManifest:
    """What a verified backup contains; stored as JSON beside the backup file."""

    format: str
    created_at: str
    file_sha256: str
    size_bytes: int
    counts: dict[str, int]
    chain_seq: int
    chain_hash: str
    schema_revision: str

    @staticmethod
    def path_for(backup: Path) -> Path:
        return backup.with_name(backup.name + ".manifest.json")

    def write(self, backup: Path) -> None:
        write_atomically(self.path_for(backup), json.dumps(dataclasses.asdict(self), indent=2), durable=True)

    @classmethod
    def read(cls, backup: Path) -> BackupManifest:
        try:
            return cls(**json.loads(cls.path_for(backup).read_text("utf-8")))
        except (OSError, ValueError, TypeError) as exc:
            raise StoreError(f"backup manifest for {backup}: {exc}") from exc


def _verify_url(url: str, *, anchor: ChainAnchor | None = None, keyring: AuditKeyring | None = None) -> StoreReport:
    engine = make_engine(url)
    try:
        with session_scope(engine, readonly=True) as session:
            return verify_store(session=session, anchor=anchor, keyring=keyring)
    finally:
        engine.dispose()


def _require_ok(report: StoreReport, what: str) -> None:
    if not report.ok:
        first = report.chain.problem if not report.chain.ok else (report.problems or (report.integrity,))[0]
        raise StoreError(f"{what} failed verification: {first}")


def _manifest(path: Path, *, fmt: str, report: StoreReport) -> BackupManifest:
    head = report.chain.head
    return BackupManifest(
        format=fmt,
        created_at=datetime.now(UTC).isoformat(),
        file_sha256=sha256_file(path),
        size_bytes=path.stat().st_size,
        counts=dict(report.counts),
        chain_seq=head.seq if head else 0,
        chain_hash=head.row_hash if head else "",
        schema_revision=head_revision(),
    )


def _audit(engine: Engine, *, action: str, path: Path, digest: str, actor: str) -> None:
    with session_scope(engine) as session:
        append_audit(
            AuditEntry(
                actor=actor,
                action=action,
                entity="store",
                entity_id=path.name[:64],
                new_value=digest,
                source=str(path)[:128],
            ),
            session=session,
        )


def _sqlite_copy(source: str, dest: str) -> None:
    src = sqlite3.connect(source)
    dst = sqlite3.connect(dest)
    try:
        src.backup(dst)
    except sqlite3.Error as exc:
        raise StoreError(f"SQLite backup {source} -> {dest}: {exc}") from exc
    finally:
        dst.close()
        src.close()


def _drop_sidecars(path: Path) -> None:
    for suffix in ("-wal", "-shm", "-journal"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def backup_store(engine: Engine, dest: Path, *, actor: str = "system:cli") -> BackupManifest:
    """Back up the store to ``dest``, verify the copy, write its manifest, audit the backup.

    Raises:
        StoreError: the copy could not be made or failed verification (nothing is left at ``dest``).
    """
    dest = dest.resolve()
    with replace_atomically(dest, durable=True) as tmp:  # a refused copy leaves nothing at dest
        try:
            if is_sqlite(engine):
                _sqlite_copy(sqlite_path(engine), str(tmp))
                report = _verify_url(f"sqlite:///{tmp}")
                _drop_sidecars(tmp)
                fmt = "sqlite"
            else:
                _pg_dump(engine.url, tmp)
                report = _verify_pg_dump(engine.url, tmp)
                fmt = "pg_dump"
            _require_ok(report, f"backup copy {dest}")
        finally:
            _drop_sidecars(tmp)
    manifest = _manifest(dest, fmt=fmt, report=report)
    manifest.write(dest)
    _audit(engine, action="store.backup", path=dest, digest=manifest.file_sha256, actor=actor)
    return manifest


def restore_store(
    source: Path,
    *,
    url: str,
    actor: str = "system:cli",
    keyring: AuditKeyring | None = None,
    anchor_path: Path | None = None,
) -> StoreReport:
    """Restore a verified backup into an empty target store and verify it against the manifest.

    Args:
        source: a backup file with its ``.manifest.json``.
        url: target database; a SQLite file must not exist, a PostgreSQL database must be empty.
        actor: who restores (audited in the restored store).
        keyring: the audit key the restore's own audit row is signed with (and MACs checked with).
        anchor_path: where that row's signed anchor is written.

    Raises:
        StoreError: manifest mismatch, non-empty target, or a restored store that fails verification.
    """
    manifest = BackupManifest.read(source)
    if sha256_file(source) != manifest.file_sha256:
        raise StoreError(f"{source}: sha256 differs from its manifest (altered or truncated)")
    target = make_url(url)
    if target.get_backend_name() == "sqlite":
        if manifest.format != "sqlite":
            raise StoreError(f"{source} is a {manifest.format} backup, the target is SQLite")
        path = Path(target.database or "")
        if path.exists():
            raise StoreError(f"{path} exists: restore only into a new file (move the old one aside)")
        path.parent.mkdir(parents=True, exist_ok=True)
        _sqlite_copy(str(source), str(path))
    else:
        if manifest.format != "pg_dump":
            raise StoreError(f"{source} is a {manifest.format} backup, the target is PostgreSQL")
        _pg_restore(target, source, require_empty=True)
    anchor = ChainAnchor(seq=manifest.chain_seq, row_hash=manifest.chain_hash) if manifest.chain_seq else None
    report = _verify_url(url, anchor=anchor, keyring=keyring)
    _require_ok(report, f"restored store {target.render_as_string(hide_password=True)}")
    if report.counts != manifest.counts:
        raise StoreError(f"restored counts {report.counts} differ from the manifest {manifest.counts}")
    engine = make_engine(url)
    if keyring is not None:
        attach(engine, keyring, anchor_path=anchor_path)
    try:
        _audit(engine, action="store.restore", path=source, digest=manifest.file_sha256, actor=actor)
    finally:
        engine.dispose()
    return report


def _pg_tool(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        raise StoreError(f"{name} not found on PATH or in /usr/lib/postgresql/*/bin")
    return found


def _pg_args(url: URL) -> tuple[list[str], Mapping[str, str]]:
    args = ["--host", url.host or "localhost", "--port", str(url.port or 5432)]
    if url.username:
        args += ["--username", url.username]
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    return args, env


def _run(cmd: list[str], *, env: Mapping[str, str], what: str) -> None:
    try:
        subprocess.run(cmd, env=dict(env), check=True, capture_output=True, text=True, timeout=3600)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or ""
        raise StoreError(f"{what}: {exc} {detail.strip()}") from exc


def _pg_dump(url: URL, dest: Path) -> None:
    args, env = _pg_args(url)
    _run(
        [
            _pg_tool("pg_dump"),
            *args,
            "--format=custom",
            "--no-owner",
            "--file",
            str(dest),
            "--dbname",
            url.database or "postgres",
        ],
        env=env,
        what=f"pg_dump of {url.database}",
    )


def _pg_restore(url: URL, source: Path, *, require_empty: bool) -> None:
    if require_empty:
        engine = make_engine(url.render_as_string(hide_password=False))
        try:
            tables = inspect(engine).get_table_names()
        finally:
            engine.dispose()
        if tables:
            raise StoreError(f"database {url.database} is not empty ({len(tables)} tables): restore into a new one")
    args, env = _pg_args(url)
    _run(
        [
            _pg_tool("pg_restore"),
            *args,
            "--no-owner",
            "--exit-on-error",
            "--single-transaction",
            "--dbname",
            url.database or "postgres",
            str(source),
        ],
        env=env,
        what=f"pg_restore into {url.database}",
    )


def _verify_pg_dump(url: URL, dump: Path) -> StoreReport:
    scratch = f"{url.database}_verify_{uuid.uuid4().hex[:8]}"
    admin = make_engine(url.render_as_string(hide_password=False)).execution_options(isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{scratch}"')
        target = url.set(database=scratch)
        _pg_restore(target, dump, require_empty=False)
        return _verify_url(target.render_as_string(hide_password=False))
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
        admin.engine.dispose()
