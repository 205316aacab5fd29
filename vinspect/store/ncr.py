"""The NCR vocabulary of the store: enums, inputs and small result values (no database access).

Names and codes follow ``docs/quality-domain.md`` §2–§7; enum values are what exports carry.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

__all__ = [
    "SCHEMA_VERSION",
    "CloseInput",
    "ContainmentInput",
    "CorrectionInput",
    "DispositionCode",
    "DispositionInput",
    "NcrDefaults",
    "NcrFilter",
    "NcrRef",
    "NcrStatus",
    "ReviewDecision",
    "ReviewInput",
    "Role",
    "SignatureMeaning",
]

SCHEMA_VERSION = "1.1.0"  # 1.1.0: documents list their CAPAs (additive)


class NcrStatus(enum.StrEnum):
    OPEN = "OPEN"
    CONTAINED = "CONTAINED"
    UNDER_REVIEW = "UNDER_REVIEW"
    DISPOSITIONED = "DISPOSITIONED"
    CLOSED = "CLOSED"
    VOID = "VOID"


class ReviewDecision(enum.StrEnum):
    CONFIRMED_DEFECT = "CONFIRMED_DEFECT"
    FALSE_REJECT = "FALSE_REJECT"
    NEEDS_MRB = "NEEDS_MRB"


class DispositionCode(enum.StrEnum):
    USE_AS_IS = "USE_AS_IS"
    REWORK = "REWORK"
    REPAIR = "REPAIR"
    SCRAP = "SCRAP"
    RETURN_TO_SUPPLIER = "RETURN_TO_SUPPLIER"
    REGRADE = "REGRADE"


class SignatureMeaning(enum.StrEnum):
    AUTHORSHIP = "AUTHORSHIP"
    REVIEW = "REVIEW"
    DISPOSITION = "DISPOSITION"
    APPROVAL = "APPROVAL"
    MODEL_PROMOTION = "MODEL_PROMOTION"
    CONFIG_APPROVAL = "CONFIG_APPROVAL"  # a station configuration version (store.station_configs)


class Role(enum.StrEnum):
    OPERATOR = "operator"
    REVIEWER = "reviewer"
    QUALITY_ENGINEER = "quality_engineer"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True, kw_only=True)
class NcrDefaults:
    """What the station cannot see in the image: product and plant identification."""

    part_number: str
    part_revision: str
    part_name: str
    requirement_ref: str
    site_id: str
    line_id: str
    quantity_affected: int = 1
    uom: str = "EA"
    severity: str | None = None
    containment_location: str | None = None
    lot_number: str | None = None
    work_order: str | None = None
    operation: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NcrRef:
    """Identity of a committed NCR."""

    ncr_uuid: str
    ncr_number: str
    revision: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NcrFilter:
    """Selection for listing and export; None means "any". Times are UTC, until exclusive."""

    since: datetime | None = None
    until: datetime | None = None
    station_id: str | None = None
    status: NcrStatus | None = None
    defect_code: str | None = None
    site_id: str | None = None
    line_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviewInput:
    """An adjudication by a reviewer (who also signs it, meaning REVIEW)."""

    user_id: int
    decision: ReviewDecision
    reason: str
    defect_code: str | None = None
    investigation_required: bool = False
    investigation_notes: str = ""
    notify: Sequence[str] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class DispositionInput:
    """A disposition by a quality engineer (who also signs it, meaning DISPOSITION)."""

    user_id: int
    code: DispositionCode
    quantity: int
    justification: str
    design_authority_approval_ref: str | None = None
    customer_concession_ref: str | None = None
    rework_instruction_ref: str | None = None


TERMINAL = frozenset({NcrStatus.CLOSED, NcrStatus.VOID})
LINK_FIELDS = frozenset({"capa_ref", "eight_d_ref", "scar_ref", "cause_code", "corrective_action_ref"})
CORRECTABLE_FIELDS = frozenset(
    {
        "defect_code",
        "description",
        "serial_number",
        "lot_number",
        "work_order",
        "operation",
        "part_number",
        "part_revision",
        "part_name",
        "requirement_ref",
        "severity",
        "quantity_affected",
    }
)
SIGNING_ROLES: Mapping[SignatureMeaning, frozenset[Role]] = {
    SignatureMeaning.AUTHORSHIP: frozenset(Role) - {Role.ADMIN},
    SignatureMeaning.REVIEW: frozenset({Role.REVIEWER, Role.QUALITY_ENGINEER}),
    SignatureMeaning.DISPOSITION: frozenset({Role.QUALITY_ENGINEER}),
    SignatureMeaning.APPROVAL: frozenset({Role.QUALITY_ENGINEER}),
    SignatureMeaning.MODEL_PROMOTION: frozenset({Role.QUALITY_ENGINEER}),
    SignatureMeaning.CONFIG_APPROVAL: frozenset({Role.QUALITY_ENGINEER, Role.ADMIN}),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainmentInput:
    """Containment confirmed or changed (OPEN -> CONTAINED); actor may be ``system:<station>``."""

    actor: str
    reject_actuation_confirmed: bool
    action: str = "SEGREGATED"
    location: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseInput:
    """Closure by a quality engineer (signed, meaning APPROVAL) with the §3 gate evidence."""

    user_id: int
    reason: str
    reinspection_result: str | None = None
    scrap_verified_unusable: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CorrectionInput:
    """A correction of an original field: appended, signed (AUTHORSHIP), original kept."""

    user_id: int
    field: str
    value: str | int | None
    reason: str
