"""Request and response bodies of the JSON API (``<Thing>Public`` / ``<Thing>Create``).

Every request body forbids unknown fields, so mass assignment (``status``, ``signed_by``,
``role`` smuggled into a review) is a 422, never a silent change.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from vinspect.store.canonical import format_utc
from vinspect.store.ncr import Role
from vinspect.store.users import USERNAME_PATTERN

__all__ = [
    "AuditRecordPublic",
    "AuditRecordsPublic",
    "DispositionCreate",
    "DisputeCreate",
    "LoginCreate",
    "ModelActivate",
    "ModelPublic",
    "ModelsPublic",
    "NcrPublic",
    "NcrSummaryPublic",
    "NcrsPublic",
    "QueueItemPublic",
    "QueuePublic",
    "ReviewCreate",
    "SampleReviewCreate",
    "SessionPublic",
    "SignaturePublic",
    "StationStatusPublic",
    "UserCreate",
    "UserPasswordCreate",
    "UserPublic",
    "UserRoleCreate",
    "UserUnlockCreate",
    "UsersPublic",
]


def _not_blank(value: str) -> str:
    if not value.strip():  # Python's notion of whitespace, the same test the store applies
        raise ValueError("must not be blank")
    return value


Reason = Annotated[str, AfterValidator(_not_blank)]
Text = Field(min_length=1, max_length=2000)
Password = Field(default="", max_length=256)  # empty -> 403 "signature refused", audited
Ref = Field(default=None, max_length=200)
# Idempotency key of a signed request (or the Idempotency-Key header): a replay signs nothing new.
IdempotencyKey = Field(default=None, min_length=8, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _Out(BaseModel):
    model_config = ConfigDict(extra="ignore")


class LoginCreate(_In):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class UserPublic(_Out):
    id: int
    username: str
    display_name: str
    role: str
    active: bool


class UsersPublic(_Out):
    data: list[UserPublic]


class SessionPublic(_Out):
    authenticated: bool
    csrf_token: str
    user: UserPublic | None = None


class UserCreate(_In):
    username: str = Field(min_length=2, max_length=64, pattern=USERNAME_PATTERN)
    display_name: str = Field(min_length=1, max_length=200)
    role: Role
    password: str = Field(min_length=1, max_length=256)


class UserUnlockCreate(_In):
    """An admin clears an account's failed sign-ins, signed with the admin's own password."""

    reason: Reason = Text
    password: str = Password


class UserPasswordCreate(UserUnlockCreate):
    """An admin sets a new password for an account (its sessions end)."""

    new_password: str = Field(min_length=1, max_length=256)


class UserRoleCreate(UserUnlockCreate):
    """An admin gives an account another role (its sessions end)."""

    role: Role


class ReviewCreate(_In):
    """An adjudication, signed (meaning REVIEW) by re-entering the password."""

    decision: Literal["CONFIRMED_DEFECT", "FALSE_REJECT", "NEEDS_MRB"]
    reason: Reason = Text
    defect_code: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    investigation_required: bool = False
    investigation_notes: str = Field(default="", max_length=2000)
    password: str = Password
    idempotency_key: str | None = IdempotencyKey

    @model_validator(mode="after")
    def _no_code_on_false_reject(self) -> ReviewCreate:
        if self.decision == "FALSE_REJECT" and self.defect_code:
            raise ValueError("defect_code: a false reject records no defect code (the part is good)")
        return self


class DispositionCreate(_In):
    """A disposition, signed (meaning DISPOSITION) by re-entering the password."""

    code: Literal["USE_AS_IS", "REWORK", "REPAIR", "SCRAP", "RETURN_TO_SUPPLIER", "REGRADE"]
    quantity: int = Field(ge=1, le=1_000_000)
    justification: str = Field(default="", max_length=2000)
    design_authority_approval_ref: str | None = Ref
    customer_concession_ref: str | None = Ref
    rework_instruction_ref: str | None = Ref
    password: str = Password
    idempotency_key: str | None = IdempotencyKey


class DisputeCreate(_In):
    reason: Reason = Text


class SampleReviewCreate(_In):
    """Blind audit of a sampled PASS part: did the machine let a defect through?"""

    decision: Literal["CONFORMS", "ESCAPE"]
    reason: Reason = Text
    defect_code: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    password: str = Password
    idempotency_key: str | None = IdempotencyKey


class SignaturePublic(_Out):
    id: int
    signer_user_id: int
    printed_name: str
    meaning: str
    signed_at: str
    record_sha256: str
    auth_method: str
    valid: bool | None = None


class NcrSummaryPublic(_Out):
    ncr_uuid: str
    ncr_number: str
    status: str
    revision: int
    detected_at: str
    station_id: str
    part_number: str
    serial_number: str | None
    defect_code: str
    machine_verdict: str
    review: dict[str, Any] | None
    disposition: dict[str, Any] | None


class NcrsPublic(_Out):
    data: list[NcrSummaryPublic]
    count: int


class NcrPublic(NcrSummaryPublic):
    schema_version: str
    inference: dict[str, Any]
    containment: dict[str, Any]
    evidence: list[dict[str, Any]]
    history: list[dict[str, Any]]
    corrections: list[dict[str, Any]]
    signatures: list[SignaturePublic]
    content_sha256: str
    description: str


class QueueItemPublic(_Out):
    kind: Literal["ncr", "pass_sample"]
    id: str
    reason: str
    station_id: str
    part_id: str | None
    detected_at: str | None
    ncr_number: str | None = None
    score: float | None = None
    defect_code: str | None = None


class QueuePublic(_Out):
    data: list[QueueItemPublic]


class AuditRecordPublic(_Out):
    seq: int
    at: str
    actor: str
    action: str
    entity: str
    entity_id: str
    field: str | None
    old_value: str | None
    new_value: str | None
    reason: str | None
    source: str | None
    record_sha256: str | None
    row_hash: str

    @classmethod
    def from_row(cls, row: Any) -> AuditRecordPublic:
        """The public form of one audit row (an NCR's trail and the admin's audit page)."""
        return cls(
            seq=row.seq,
            at=format_utc(row.at),
            actor=row.actor,
            action=row.action,
            entity=row.entity,
            entity_id=row.entity_id,
            field=row.field,
            old_value=row.old_value,
            new_value=row.new_value,
            reason=row.reason,
            source=row.source,
            record_sha256=row.record_sha256,
            row_hash=row.row_hash,
        )


class AuditRecordsPublic(_Out):
    data: list[AuditRecordPublic]


class ModelPublic(_Out):
    name: str
    version: str
    sha256: str
    active: bool
    stated: list[str] = Field(default=[], description="expected rates with intervals, from the bundle's validation")
    warnings: list[str] = Field(
        default=[], description="targets the bundle cannot meet; activating it needs accept_risk"
    )


class ModelActivate(_In):
    """Activate an installed version, signed by password re-entry; ``accept_risk`` accepts its warnings."""

    password: str = Password
    accept_risk: bool = False
    reason: str = Field(default="", max_length=2000)


class ModelsPublic(_Out):
    data: list[ModelPublic]


class StationStatusPublic(_Out):
    running: bool
    state: str
    stale: bool
    age_s: float | None
    snapshot: dict[str, Any]
