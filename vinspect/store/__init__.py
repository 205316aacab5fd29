"""The NCR / inspection store: SQLAlchemy 2 + Alembic on SQLite (WAL, FULL) or PostgreSQL.

Entry points: :func:`make_engine` + :func:`upgrade` to open a store, :func:`session_scope` for a
transaction, :mod:`vinspect.store.repository` for records, :class:`StoreSink` for the pipeline,
:mod:`vinspect.store.export` / :mod:`vinspect.store.outbox` to get NCRs out,
:func:`verify_store`, :func:`backup_store`, :func:`restore_store`, :func:`scrub` to check them.
Only this package imports sqlalchemy; callers get plain values and dicts back.
"""

from __future__ import annotations

from vinspect.store.audit import ChainAnchor, ChainReport, verify_chain
from vinspect.store.backup import BackupManifest, backup_store, restore_store
from vinspect.store.db import make_engine, session_scope
from vinspect.store.evidence import EvidenceBlob, EvidenceStore, PendingEvidence, ScrubReport, StoredEvidence, scrub
from vinspect.store.export import ExportFormat, ExportSummary, export_ncrs, export_to_path
from vinspect.store.migrations import check_current, upgrade
from vinspect.store.ncr import (
    CloseInput,
    ContainmentInput,
    CorrectionInput,
    DispositionCode,
    DispositionInput,
    NcrDefaults,
    NcrFilter,
    NcrRef,
    NcrStatus,
    ReviewDecision,
    ReviewInput,
    Role,
    SignatureMeaning,
)
from vinspect.store.outbox import DrainSummary, OutboxRelay, RelayConfig
from vinspect.store.sink import StoreSink
from vinspect.store.users import User
from vinspect.store.verify import StoreReport, verify_store

__all__ = [
    "BackupManifest",
    "ChainAnchor",
    "ChainReport",
    "CloseInput",
    "ContainmentInput",
    "CorrectionInput",
    "DispositionCode",
    "DispositionInput",
    "DrainSummary",
    "EvidenceBlob",
    "EvidenceStore",
    "ExportFormat",
    "ExportSummary",
    "NcrDefaults",
    "NcrFilter",
    "NcrRef",
    "NcrStatus",
    "OutboxRelay",
    "PendingEvidence",
    "RelayConfig",
    "ReviewDecision",
    "ReviewInput",
    "Role",
    "ScrubReport",
    "SignatureMeaning",
    "StoreReport",
    "StoreSink",
    "StoredEvidence",
    "User",
    "backup_store",
    "check_current",
    "export_ncrs",
    "export_to_path",
    "make_engine",
    "restore_store",
    "scrub",
    "session_scope",
    "upgrade",
    "verify_chain",
    "verify_store",
]
