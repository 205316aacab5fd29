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
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from vinspect.errors import StoreError

__all__ = [
    "APPEND_ONLY_TABLES",
    "LABEL_TABLES",
    "AuditRecord",
    "Base",
    "EvidenceRecord",
    "InspectionRecord",
    "LabelEventRecord",
    "LabelImageRecord",
    "LabelScoreRecord",
    "LabelSetRecord",
    "NcrEvent",
    "NcrRecord",
    "OutboxRecord",
    "SignatureRecord",
    "UserRecord",
]

APPEND_ONLY_TABLES = ("inspections", "ncrs", "ncr_evidence", "ncr_events", "signatures", "audit_records")
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
    __table_args__ = (Index("ix_inspections_station_recorded", "station_id", "recorded_at"),
                      _unique("uq_inspections_station_part", "station_id", "part_seq"),
                      {"sqlite_autoincrement": True})

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


class NcrRecord(Base):
    """The original nonconformance report as the station created it; never updated."""

    __tablename__ = "ncrs"
    __table_args__ = (Index("ix_ncrs_detected", "detected_at"), _unique("uq_ncrs_inspection", "inspection_id"),
                      {"sqlite_autoincrement": True})

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

    evidence: Mapped[list[EvidenceRecord]] = relationship(order_by="EvidenceRecord.ordinal",
                                                          viewonly=True)
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
    __table_args__ = (UniqueConstraint("ncr_id", "revision"), {"sqlite_autoincrement": True})

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
    __table_args__ = (Index("ix_audit_entity", "entity", "entity_id"), {"sqlite_autoincrement": True})

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
    __table_args__ = (Index("ix_outbox_state_due", "state", "next_attempt_at"),
                      UniqueConstraint("target", "idempotency_key"), {"sqlite_autoincrement": True})

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
    __table_args__ = (UniqueConstraint("set_id", "sha256"), UniqueConstraint("set_id", "ordinal"),
                      {"sqlite_autoincrement": True})

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
    __table_args__ = (Index("ix_label_events_image_user", "image_id", "user_id"),
                      Index("ix_label_events_set", "set_id", "id"), {"sqlite_autoincrement": True})

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
