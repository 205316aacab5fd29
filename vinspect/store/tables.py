"""SQLAlchemy 2 models of the store. Schema changes go through a new Alembic revision.

Append-only tables (database triggers raise on UPDATE and DELETE): ``inspections``, ``ncrs``,
``ncr_evidence``, ``ncr_events``, ``signatures``, ``audit_records``. The NCR's current status,
review and disposition are derived from its latest events; corrections are events too.
Mutable by design: ``users`` (active flag, role, password hash; every change audited with the
resulting state, which ``audit verify`` compares) and ``outbox`` (a delivery
queue, not a quality record). JSON-valued columns hold canonical JSON text so that what is
hashed is exactly what is stored.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from vinspect.errors import StoreError

__all__ = [
    "APPEND_ONLY_TABLES",
    "LABEL_TABLES",
    "AuditRecord",
    "Base",
    "CapaLinkRecord",
    "CapaRecord",
    "CapaStepRecord",
    "EvidenceRecord",
    "InspectionHourRecord",
    "InspectionMonthRecord",
    "InspectionRecord",
    "JudgementHourRecord",
    "JudgementMonthRecord",
    "LabelEventRecord",
    "LabelImageRecord",
    "LabelScoreRecord",
    "LabelSetRecord",
    "ModelAssignmentRecord",
    "ModelBundleRecord",
    "NcrEvent",
    "NcrRecord",
    "OutboxRecord",
    "PassEvidenceRecord",
    "QualityAlarmRecord",
    "ShadowDisagreementRecord",
    "ShadowStatsRecord",
    "SignatureRecord",
    "SpcBaselineRecord",
    "StationConfigRecord",
    "StationRow",
    "UserRecord",
    "WatermarkRecord",
]

APPEND_ONLY_TABLES = (
    "inspections",
    "ncrs",
    "ncr_evidence",
    "ncr_events",
    "signatures",
    "audit_records",
    "spc_baselines",
    "capa_links",
    "pass_evidence",
    "station_configs",
    "shadow_disagreements",
)
# Labelling (migration 0007): sets, their images, label events and model scores, append-only too.
LABEL_TABLES = ("label_sets", "label_images", "label_events", "label_scores")

BigId = BigInteger().with_variant(Integer, "sqlite")  # SQLite only autoincrements INTEGER keys


def _unique(name: str, *columns: str) -> Index:
    """A unique key (migration 0003; partial, plus a lookup index, only in stores with older duplicates)."""
    return Index(name, *columns, unique=True)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in, timezone-aware UTC out, on both databases (µs precision)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise StoreError(f"naive datetime {value!r}: store times must be timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UtcDateTime()}


def table_of(model: type[Base]) -> Table:
    """The Core table of a model (for the hot-path Core INSERTs)."""
    return Base.metadata.tables[model.__tablename__]


class UserRecord(Base):
    """A person who can review, disposition or administer; ids are never reused."""

    __tablename__ = "users"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(32))
    password_hash: Mapped[str] = mapped_column(String(512))
    active: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime]


class InspectionRecord(Base):
    """One row per inspected part (every verdict), compact."""

    __tablename__ = "inspections"
    __table_args__ = (
        Index("ix_inspections_station_recorded", "station_id", "recorded_at"),
        Index("ix_inspections_recorded_verdict", "recorded_at", "verdict"),
        Index("ix_inspections_part", "part_id", "id"),
        _unique("uq_inspections_station_part", "station_id", "part_seq"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    inspection_id: Mapped[str] = mapped_column(String(64), unique=True)
    station_id: Mapped[str] = mapped_column(String(64))
    part_seq: Mapped[int] = mapped_column(BigInteger)
    verdict: Mapped[str] = mapped_column(String(8))
    reasons: Mapped[str] = mapped_column(Text)
    policy_id: Mapped[str] = mapped_column(String(64))
    fail_at: Mapped[float] = mapped_column(Float)
    review_at: Mapped[float] = mapped_column(Float)
    score: Mapped[float | None] = mapped_column(Float)
    model_name: Mapped[str | None] = mapped_column(String(128))
    model_version: Mapped[str | None] = mapped_column(String(64))
    model_sha256: Mapped[str | None] = mapped_column(String(64))
    source_id: Mapped[str | None] = mapped_column(String(64))
    frame_id: Mapped[int | None] = mapped_column(BigInteger)
    captured_at: Mapped[datetime | None]
    part_id: Mapped[str | None] = mapped_column(String(128))
    error: Mapped[str | None] = mapped_column(Text)
    recorded_at: Mapped[datetime]
    part_number: Mapped[str | None] = mapped_column(String(64))  # migration 0008; None before it
    config_sha256: Mapped[str | None] = mapped_column(String(64))  # migration 0010: station configuration version


class NcrRecord(Base):
    """The original nonconformance report as the station created it; never updated."""

    __tablename__ = "ncrs"
    __table_args__ = (
        Index("ix_ncrs_detected", "detected_at"),
        _unique("uq_ncrs_inspection", "inspection_id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ncr_uuid: Mapped[str] = mapped_column(String(36), unique=True)
    ncr_seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    ncr_number: Mapped[str] = mapped_column(String(32), unique=True)
    schema_version: Mapped[str] = mapped_column(String(16))
    detected_at: Mapped[datetime]
    created_at: Mapped[datetime]
    site_id: Mapped[str] = mapped_column(String(64))
    line_id: Mapped[str] = mapped_column(String(64))
    station_id: Mapped[str] = mapped_column(String(64), index=True)
    camera_id: Mapped[str] = mapped_column(String(64))
    detection_point: Mapped[str] = mapped_column(String(16))
    detected_by_kind: Mapped[str] = mapped_column(String(8))
    detected_by_id: Mapped[str] = mapped_column(String(128))
    part_number: Mapped[str] = mapped_column(String(64))
    part_revision: Mapped[str] = mapped_column(String(32))
    part_name: Mapped[str] = mapped_column(String(200))
    serial_number: Mapped[str | None] = mapped_column(String(128))
    lot_number: Mapped[str | None] = mapped_column(String(128))
    work_order: Mapped[str | None] = mapped_column(String(128))
    operation: Mapped[str | None] = mapped_column(String(128))
    quantity_affected: Mapped[int] = mapped_column(Integer)
    uom: Mapped[str] = mapped_column(String(16))
    requirement_ref: Mapped[str] = mapped_column(String(200))
    defect_code: Mapped[str] = mapped_column(String(64), index=True)
    severity: Mapped[str | None] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text)
    machine_verdict: Mapped[str] = mapped_column(String(16))
    inference: Mapped[str] = mapped_column(Text)
    containment: Mapped[str] = mapped_column(Text)
    related_ncr_uuids: Mapped[str] = mapped_column(Text)
    inspection_id: Mapped[str | None] = mapped_column(ForeignKey("inspections.inspection_id"))

    evidence: Mapped[list[EvidenceRecord]] = relationship(order_by="EvidenceRecord.ordinal", viewonly=True)
    events: Mapped[list[NcrEvent]] = relationship(order_by="NcrEvent.revision", viewonly=True)


class EvidenceRecord(Base):
    """An image or heatmap referenced by an NCR, stored content-addressed by sha256."""

    __tablename__ = "ncr_evidence"
    __table_args__ = (UniqueConstraint("ncr_id", "ordinal"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ncr_id: Mapped[int] = mapped_column(BigId, ForeignKey("ncrs.id"))
    ordinal: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    media_type: Mapped[str] = mapped_column(String(64))
    uri: Mapped[str] = mapped_column(String(256))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    captured_at: Mapped[datetime | None]
    camera_settings: Mapped[str] = mapped_column(Text)


class SignatureRecord(Base):
    """An electronic signature bound to the SHA-256 of the canonical signed content."""

    __tablename__ = "signatures"
    __table_args__ = (Index("ix_signatures_entity", "entity", "entity_id"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    entity: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(64))
    signer_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    printed_name: Mapped[str] = mapped_column(String(200))
    meaning: Mapped[str] = mapped_column(String(32))
    signed_at: Mapped[datetime]
    record_sha256: Mapped[str] = mapped_column(String(64))
    auth_method: Mapped[str] = mapped_column(String(32))


class NcrEvent(Base):
    """One appended change of an NCR: lifecycle step, review, disposition, correction, link."""

    __tablename__ = "ncr_events"
    __table_args__ = (
        UniqueConstraint("ncr_id", "revision"),
        # migration 0012: the few NCRs a second person judged (reviewer-vs-reviewer agreement)
        Index(
            "ix_ncr_events_superseded",
            "ncr_id",
            postgresql_where=text("kind = 'SUPERSEDED'"),
            sqlite_where=text("kind = 'SUPERSEDED'"),
        ),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ncr_id: Mapped[int] = mapped_column(BigId, ForeignKey("ncrs.id"))
    revision: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text)
    signature_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("signatures.id"))


class AuditRecord(Base):
    """One link of the hash chain: ``row_hash = sha256(prev_hash ‖ canonical(row))``.

    ``mac`` is HMAC-SHA256(key ``key_id``, ``row_hash``) with a key kept outside the database
    (NULL on rows written before the store had a key); ``state`` is the audited row's state
    after the change, as canonical JSON, where the row is mutable (users).
    """

    __tablename__ = "audit_records"
    __table_args__ = (
        Index("ix_audit_entity", "entity", "entity_id"),
        Index("ix_audit_action_at", "action", "at"),  # migration 0008: blind audits by time
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    entity: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(64))
    field: Mapped[str | None] = mapped_column(String(64))
    old_value: Mapped[str | None] = mapped_column(Text)
    new_value: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(String(128))
    record_sha256: Mapped[str | None] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    row_hash: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str | None] = mapped_column(String(32))
    mac: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str | None] = mapped_column(Text)


class OutboxRecord(Base):
    """A payload to deliver to the QMS, written in the same transaction as the NCR change."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_state_due", "state", "next_attempt_at"),
        UniqueConstraint("target", "idempotency_key"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ncr_uuid: Mapped[str] = mapped_column(String(36), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    target: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str] = mapped_column(String(80))
    payload: Mapped[str] = mapped_column(Text)
    payload_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime]
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]


# ---- quality analytics and CAPA (migration 0005) ------------------------------------------------


class SpcBaselineRecord(Base):
    """Frozen p-chart limits of one station's chart; a new baseline is a new row (the newest is in force)."""

    __tablename__ = "spc_baselines"
    __table_args__ = (Index("ix_spc_baselines_station_chart", "station_id", "chart"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    station_id: Mapped[str] = mapped_column(String(64))
    chart: Mapped[str] = mapped_column(String(32))
    window_from: Mapped[datetime]
    window_to: Mapped[datetime]
    subgroup_minutes: Mapped[int] = mapped_column(Integer)
    subgroup_parts: Mapped[int | None] = mapped_column(Integer)  # set: subgroups of this many consecutive parts
    p_bar: Mapped[float] = mapped_column(Float)
    subgroups: Mapped[int] = mapped_column(Integer)
    parts: Mapped[int] = mapped_column(BigInteger)
    defects: Mapped[int] = mapped_column(BigInteger)
    sigma_z: Mapped[float | None] = mapped_column(Float)  # migration 0008: set for a Laney p'-chart
    approved_by: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class QualityAlarmRecord(Base):
    """An SPC rule violation or a drift alarm; acknowledged once, with a signed reason."""

    __tablename__ = "quality_alarms"
    __table_args__ = (
        UniqueConstraint("kind", "station_id", "chart", "rule", "first_at", name="uq_quality_alarms_run"),
        Index("ix_quality_alarms_open", "acknowledged_at", "raised_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    station_id: Mapped[str] = mapped_column(String(64))
    chart: Mapped[str] = mapped_column(String(64))
    rule: Mapped[int] = mapped_column(Integer)
    first_at: Mapped[datetime]
    last_at: Mapped[datetime]
    detail: Mapped[str] = mapped_column(Text)
    raised_at: Mapped[datetime]
    acknowledged_at: Mapped[datetime | None]
    ack_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    ack_reason: Mapped[str | None] = mapped_column(Text)
    ack_signature_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("signatures.id"))


class CapaRecord(Base):
    """A corrective action (8D); status and closure change in place, every change audited."""

    __tablename__ = "capas"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    capa_number: Mapped[str] = mapped_column(String(32), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), index=True)
    source: Mapped[str] = mapped_column(String(16))
    source_ref: Mapped[str] = mapped_column(String(128))
    station_id: Mapped[str | None] = mapped_column(String(64))
    defect_codes: Mapped[str] = mapped_column(Text)
    opened_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    opened_at: Mapped[datetime]
    baseline: Mapped[str] = mapped_column(Text)
    closed_at: Mapped[datetime | None]
    closed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    closure_signature_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("signatures.id"))

    steps: Mapped[list[CapaStepRecord]] = relationship(order_by="CapaStepRecord.step", viewonly=True)
    links: Mapped[list[CapaLinkRecord]] = relationship(order_by="CapaLinkRecord.id", viewonly=True)


class CapaStepRecord(Base):
    """One 8D step (D0-D7) of a CAPA: owner, due date, content; signed by its owner."""

    __tablename__ = "capa_steps"
    __table_args__ = (UniqueConstraint("capa_id", "step"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    capa_id: Mapped[int] = mapped_column(BigId, ForeignKey("capas.id"))
    step: Mapped[str] = mapped_column(String(4))
    owner_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    due_at: Mapped[datetime]
    content: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime]
    signed_at: Mapped[datetime | None]
    signature_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("signatures.id"))


class CapaLinkRecord(Base):
    """An NCR linked to a CAPA (never removed)."""

    __tablename__ = "capa_links"
    __table_args__ = (UniqueConstraint("capa_id", "ncr_uuid"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    capa_id: Mapped[int] = mapped_column(BigId, ForeignKey("capas.id"))
    ncr_uuid: Mapped[str] = mapped_column(String(36), index=True)
    linked_at: Mapped[datetime]
    linked_by: Mapped[str] = mapped_column(String(128))


class PassEvidenceRecord(Base):
    """Image and heatmap kept for a PASS part drawn into the blind audit sample (the escape-rate evidence)."""

    __tablename__ = "pass_evidence"
    __table_args__ = (UniqueConstraint("inspection_id", "ordinal"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    inspection_id: Mapped[str] = mapped_column(String(64))
    ordinal: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    media_type: Mapped[str] = mapped_column(String(64))
    uri: Mapped[str] = mapped_column(String(256))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    captured_at: Mapped[datetime | None]
    recorded_at: Mapped[datetime]


class StationRow(Base):
    """A station's registration and its latest report (issue 18): mutable, one row per station.

    Operational status, not a quality record: upserted every few seconds by the running station
    (``vinspect.store.stations``), not under the audit chain. ``heartbeat_at`` older than three
    report periods means the station stopped reporting.
    """

    __tablename__ = "stations"

    station_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site_id: Mapped[str | None] = mapped_column(String(64))
    line_id: Mapped[str | None] = mapped_column(String(64))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    software_version: Mapped[str] = mapped_column(String(32))
    model_name: Mapped[str | None] = mapped_column(String(128))
    model_version: Mapped[str | None] = mapped_column(String(64))
    model_sha256: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]
    period_s: Mapped[float] = mapped_column(Float)
    triggers: Mapped[int] = mapped_column(BigInteger)
    passed: Mapped[int] = mapped_column(BigInteger)
    review: Mapped[int] = mapped_column(BigInteger)
    failed_defect: Mapped[int] = mapped_column(BigInteger)
    failed_fault: Mapped[int] = mapped_column(BigInteger)
    parts_per_s: Mapped[float | None] = mapped_column(Float)
    reject_rate: Mapped[float | None] = mapped_column(Float)
    p50_ms: Mapped[float | None] = mapped_column(Float)
    p99_ms: Mapped[float | None] = mapped_column(Float)
    opcua_endpoint: Mapped[str | None] = mapped_column(String(255))
    config_sha256: Mapped[str | None] = mapped_column(String(64))  # migration 0010: the version it runs


class StationConfigRecord(Base):
    """An approved station configuration version (migration 0010; ``vinspect.store.station_configs``)."""

    __tablename__ = "station_configs"
    __table_args__ = (UniqueConstraint("station_id", "config_sha256"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    station_id: Mapped[str] = mapped_column(String(64))
    config_sha256: Mapped[str] = mapped_column(String(64))
    config_text: Mapped[str] = mapped_column(Text)
    source_path: Mapped[str] = mapped_column(String(1024))
    previous_sha256: Mapped[str | None] = mapped_column(String(64))
    approved_by_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    approved_by: Mapped[str] = mapped_column(String(200))
    approved_at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(Text)
    signature_id: Mapped[int] = mapped_column(BigId, ForeignKey("signatures.id"))


class LabelSetRecord(Base):
    """A labelling set: images imported together, labelled openly or blind by ``blind_labellers`` people."""

    __tablename__ = "label_sets"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    model_name: Mapped[str | None] = mapped_column(String(128))  # the product model whose catalogue applies
    blind_labellers: Mapped[int] = mapped_column(Integer)  # 0 or 1: open labelling; 2+: blind, compared
    source: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]


class LabelImageRecord(Base):
    """One image of a set, stored content-addressed (``sha256`` of its bytes) in the data directory."""

    __tablename__ = "label_images"
    __table_args__ = (
        UniqueConstraint("set_id", "sha256"),
        UniqueConstraint("set_id", "ordinal"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    set_id: Mapped[int] = mapped_column(ForeignKey("label_sets.id"))
    ordinal: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    suffix: Mapped[str] = mapped_column(String(8))
    file_name: Mapped[str] = mapped_column(String(255))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    imported_at: Mapped[datetime]


class LabelEventRecord(Base):
    """One label given to an image (or an undo, or a settlement): who, when, under which catalogue."""

    __tablename__ = "label_events"
    __table_args__ = (
        Index("ix_label_events_image_user", "image_id", "user_id"),
        Index("ix_label_events_set", "set_id", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    set_id: Mapped[int] = mapped_column(ForeignKey("label_sets.id"))
    image_id: Mapped[int] = mapped_column(BigId, ForeignKey("label_images.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(16))  # label | undo | settle
    label: Mapped[str | None] = mapped_column(String(64))  # None: back to unlabelled (undo of a first label)
    regions: Mapped[str] = mapped_column(Text)  # canonical JSON list
    catalogue_version: Mapped[str] = mapped_column(String(16))
    previous_event_id: Mapped[int | None] = mapped_column(BigId)
    previous_label: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[datetime]


class LabelScoreRecord(Base):
    """A model's score of a set's image, for putting the images it is least sure of first."""

    __tablename__ = "label_scores"
    __table_args__ = (Index("ix_label_scores_set", "set_id", "model_sha256"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    set_id: Mapped[int] = mapped_column(ForeignKey("label_sets.id"))
    image_id: Mapped[int] = mapped_column(BigId, ForeignKey("label_images.id"))
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(64))
    model_sha256: Mapped[str] = mapped_column(String(64))
    uncertainty: Mapped[float] = mapped_column(Float)  # 0 = on a threshold; larger = surer
    score: Mapped[float] = mapped_column(Float)
    scored_at: Mapped[datetime]


# ---- analytics roll-up (migration 0008) ----------------------------------------------------------


class InspectionHourRecord(Base):
    """Counts of one UTC hour, station, part number, model version, verdict and first fault reason
    (derived from ``inspections``, maintained by :mod:`vinspect.store.analytics_rollup`)."""

    __tablename__ = "inspection_hourly"

    hour: Mapped[str] = mapped_column(String(13), primary_key=True)  # "YYYY-MM-DD HH" (UTC)
    station_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    part_number: Mapped[str] = mapped_column(String(64), primary_key=True)  # "" for none
    model_version: Mapped[str] = mapped_column(String(64), primary_key=True)  # "" for none
    verdict: Mapped[str] = mapped_column(String(8), primary_key=True)
    fault: Mapped[str] = mapped_column(String(64), primary_key=True)  # "" for none
    parts: Mapped[int] = mapped_column(BigInteger)
    model_rejects: Mapped[int] = mapped_column(BigInteger)
    first_parts: Mapped[int] = mapped_column(BigInteger)
    first_passed: Mapped[int] = mapped_column(BigInteger)


class InspectionMonthRecord(Base):
    """:class:`InspectionHourRecord` summed per UTC month and hour of the day (``hour`` is
    ``YYYY-MM-01 HH``); kept equal to those sums by the same roll-up transaction (migration 0012)."""

    __tablename__ = "inspection_monthly"

    hour: Mapped[str] = mapped_column(String(13), primary_key=True)  # "YYYY-MM-01 HH": month, hour of day
    station_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    part_number: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_version: Mapped[str] = mapped_column(String(64), primary_key=True)
    verdict: Mapped[str] = mapped_column(String(8), primary_key=True)
    fault: Mapped[str] = mapped_column(String(64), primary_key=True)
    parts: Mapped[int] = mapped_column(BigInteger)
    model_rejects: Mapped[int] = mapped_column(BigInteger)
    first_parts: Mapped[int] = mapped_column(BigInteger)
    first_passed: Mapped[int] = mapped_column(BigInteger)


class JudgementHourRecord(Base):
    """Human judgements of one UTC hour, station, part number, model version, machine verdict and answer:
    each NCR's standing review (hour of detection) and blind PASS audit answers (hour of the audited
    part's record); derived, maintained by :mod:`vinspect.store.judgement_rollup` (migration 0012)."""

    __tablename__ = "judgement_hourly"

    hour: Mapped[str] = mapped_column(String(13), primary_key=True)  # "YYYY-MM-DD HH" (UTC)
    station_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    part_number: Mapped[str] = mapped_column(String(64), primary_key=True)  # "" for none
    model_version: Mapped[str] = mapped_column(String(64), primary_key=True)  # "" for none
    machine: Mapped[str] = mapped_column(String(16), primary_key=True)  # the vision verdict
    human: Mapped[str] = mapped_column(String(32), primary_key=True)  # the review decision or audit answer
    n: Mapped[int] = mapped_column(BigInteger)


class JudgementMonthRecord(Base):
    """:class:`JudgementHourRecord` summed per UTC month and hour of the day (``hour`` is
    ``YYYY-MM-01 HH``); kept equal to those sums by the same roll-up transaction (migration 0012)."""

    __tablename__ = "judgement_monthly"

    hour: Mapped[str] = mapped_column(String(13), primary_key=True)  # "YYYY-MM-01 HH": month, hour of day
    station_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    part_number: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_version: Mapped[str] = mapped_column(String(64), primary_key=True)
    machine: Mapped[str] = mapped_column(String(16), primary_key=True)
    human: Mapped[str] = mapped_column(String(32), primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger)


class WatermarkRecord(Base):
    """The highest id already counted by a roll-up: inspections (``inspection_hourly``), review events and
    audit rows (``judgement_reviews``, ``judgement_audits``: ``judgement_hourly``)."""

    __tablename__ = "analytics_watermark"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]


class ModelBundleRecord(Base):
    """A model bundle's archive kept in the store for distribution to stations (issue 18, migration 0009).

    ``archive`` is a deterministic tar of the bundle folder; ``archive_sha256`` is its SHA-256 and
    ``sha256`` the model's own (the manifest's, which every inspection row carries). A station
    verifies both before it installs the bundle, so altered bytes are refused, never run.
    """

    __tablename__ = "model_bundles"
    __table_args__ = (UniqueConstraint("name", "version"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))
    archive_sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    archive: Mapped[bytes] = mapped_column(LargeBinary)
    stored_by: Mapped[str] = mapped_column(String(128))
    stored_at: Mapped[datetime]


class ModelAssignmentRecord(Base):
    """One station told to run one model version (issue 18, migration 0009); the newest row per
    station is its current assignment. The assigner's part is audited (``model.distribute``); the
    station fills ``outcome`` (``SWITCHED`` or ``REFUSED``), its reason and time, audited too."""

    __tablename__ = "model_assignments"
    __table_args__ = (Index("ix_model_assignments_station", "station_id", "id"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    station_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))
    archive_sha256: Mapped[str] = mapped_column(String(64))
    approval: Mapped[str] = mapped_column(Text)
    assigned_by: Mapped[str] = mapped_column(String(128))
    assigned_at: Mapped[datetime]
    outcome: Mapped[str | None] = mapped_column(String(16))
    outcome_reason: Mapped[str | None] = mapped_column(Text)
    outcome_at: Mapped[datetime | None]


class ShadowStatsRecord(Base):
    """A shadow candidate's latest statistics on one station (issue 20, migration 0011): upserted by
    the station at most once a second, like its ``stations`` row; operational, not a quality record."""

    __tablename__ = "shadow_stats"

    station_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    candidate: Mapped[str] = mapped_column(String(130), primary_key=True)  # name@version
    candidate_sha256: Mapped[str] = mapped_column(String(64))
    active_model: Mapped[str | None] = mapped_column(String(256))
    parts: Mapped[int] = mapped_column(BigInteger)
    stats_json: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime]


class ShadowDisagreementRecord(Base):
    """A part a shadow candidate judged differently from the active model (issue 20, migration 0011;
    append-only): both verdicts and scores, and the frame kept in the evidence store by hash."""

    __tablename__ = "shadow_disagreements"
    __table_args__ = (
        UniqueConstraint("candidate", "inspection_id"),
        Index("ix_shadow_disagreements_candidate", "candidate", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    station_id: Mapped[str] = mapped_column(String(64))
    candidate: Mapped[str] = mapped_column(String(130))
    inspection_id: Mapped[str] = mapped_column(String(64))
    part_seq: Mapped[int | None] = mapped_column(BigInteger)
    part_id: Mapped[str | None] = mapped_column(String(128))
    captured_at: Mapped[datetime]
    active_model: Mapped[str | None] = mapped_column(String(256))
    active_verdict: Mapped[str] = mapped_column(String(16))
    active_score: Mapped[float | None] = mapped_column(Float)
    active_reasons: Mapped[str] = mapped_column(Text)  # JSON list
    shadow_verdict: Mapped[str] = mapped_column(String(16))
    shadow_score: Mapped[float | None] = mapped_column(Float)
    image_sha256: Mapped[str | None] = mapped_column(String(64))
    recorded_at: Mapped[datetime]
