"""Reviewers' judgements of shadow disagreements: which model was right about a part they disagreed on.

A candidate in shadow (:mod:`vinspect.pipeline.shadow`) and the active model gave a part different
verdicts. A reviewer looks at the frame and says what the part is: good, or defective with a
defect code. That settles who was right: for a good part the verdict nearer PASS, for a
defective one the verdict nearer FAIL (PASS < REVIEW < FAIL), and the two verdicts differ, so
exactly one of them is. The judgement is an e-signature (meaning ``REVIEW``, like an
adjudication) by a reviewer or quality engineer over the content kept in its ``shadow.judged``
audit row (:func:`~vinspect.store.signed_records.sign_record`), which names the candidate, the
inspection, both verdicts and scores, the label, who was right and the frame's evidence hash
(the frame is kept in the evidence store, so ``dataset from-reviews`` can train on it).

A part is judged once per candidate; :func:`judgement_counts` is what the candidate's
promotion section shows ("of N judged disagreements the candidate was right in M").
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vinspect.errors import StateError
from vinspect.store.canonical import format_utc
from vinspect.store.db import lock_writers
from vinspect.store.ncr import SignatureMeaning
from vinspect.store.signed_records import sign_record
from vinspect.store.tables import AuditRecord, UserRecord

__all__ = [
    "ENTITY",
    "GOOD",
    "JUDGED",
    "ShadowJudgement",
    "judge_disagreement",
    "judged_shadow_parts",
    "judgement_counts",
    "judgements",
    "right_side",
]

ENTITY = "shadow"
JUDGED = "shadow.judged"
GOOD = "good"
_RANK = {"PASS": 0, "REVIEW": 1, "FAIL": 2}


def right_side(*, good: bool, active: str, candidate: str) -> str:
    """``"active"`` or ``"candidate"``: whose verdict is nearer the truth (the verdicts differ).

    Raises:
        StateError: an unknown verdict, or the two verdicts agree (nothing to judge).
    """
    if active not in _RANK or candidate not in _RANK:
        raise StateError(f"unknown verdict in a shadow disagreement: {active!r} / {candidate!r}")
    if active == candidate:
        raise StateError("the active model and the candidate agreed about this part: nothing to judge")
    target = 0 if good else 2
    return "active" if abs(_RANK[active] - target) < abs(_RANK[candidate] - target) else "candidate"


@dataclass(frozen=True, slots=True, kw_only=True)
class ShadowJudgement:
    """One signed judgement, read back from its audit row."""

    candidate: str  # name@version
    inspection_id: str
    station_id: str | None
    label: str  # "good" or the defect code
    right: str  # "active" or "candidate"
    active: dict[str, Any]
    shadow: dict[str, Any]
    image_sha256: str | None
    judged_by: str
    judged_at: datetime
    signature_sha256: str
    seq: int

    def provenance(self) -> dict[str, object]:
        """The provenance file's content for ``dataset from-reviews`` (JSON-ready)."""
        return {
            "source": "shadow-judgement",
            "candidate": self.candidate,
            "inspection_id": self.inspection_id,
            "station_id": self.station_id,
            "label": self.label,
            "right": self.right,
            "active": self.active,
            "shadow": self.shadow,
            "reviewer": self.judged_by,
            "reviewed_at": format_utc(self.judged_at),
            "signature_sha256": self.signature_sha256,
            "audit_seq": self.seq,
            "image_sha256": self.image_sha256,
        }


def _rows(session: Session, inspection_id: str | None = None) -> Iterator[tuple[AuditRecord, dict[str, Any]]]:
    stmt = select(AuditRecord).where(
        AuditRecord.action == JUDGED, AuditRecord.entity == ENTITY, AuditRecord.field == "signed_content"
    )
    if inspection_id is not None:
        stmt = stmt.where(AuditRecord.entity_id == inspection_id[:64])
    for row in session.scalars(stmt.order_by(AuditRecord.seq)):
        try:
            content = json.loads(row.new_value or "")
        except ValueError:
            continue
        if isinstance(content, dict):
            yield row, content


def _judgement(row: AuditRecord, c: dict[str, Any]) -> ShadowJudgement:
    return ShadowJudgement(
        candidate=str(c.get("candidate")),
        inspection_id=str(c.get("inspection_id")),
        station_id=c.get("station_id"),
        label=str(c.get("label")),
        right=str(c.get("right")),
        active=dict(c.get("active") or {}),
        shadow=dict(c.get("shadow") or {}),
        image_sha256=c.get("image_sha256"),
        judged_by=str(c.get("printed_name")),
        judged_at=row.at,
        signature_sha256=str(row.record_sha256),
        seq=row.seq,
    )


def judgements(*, session: Session, candidate: str | None = None) -> list[ShadowJudgement]:
    """Every judgement (of one candidate, when given), oldest first."""
    return [_judgement(row, c) for row, c in _rows(session) if candidate is None or c.get("candidate") == candidate]


def judgement_counts(*, session: Session, candidate: str) -> dict[str, int]:
    """``judged``, ``candidate_right`` and ``active_right`` for one candidate."""
    js = judgements(session=session, candidate=candidate)
    right = sum(1 for j in js if j.right == "candidate")
    return {"judged": len(js), "candidate_right": right, "active_right": len(js) - right}


def judge_disagreement(
    *,
    session: Session,
    signer_user_id: int,
    candidate: str,
    inspection_id: str,
    station_id: str | None,
    active: dict[str, Any],
    shadow: dict[str, Any],
    good: bool,
    defect_code: str | None,
    image_sha256: str | None,
    reason: str,
    source: str | None,
    at: datetime | None = None,
) -> ShadowJudgement:
    """Sign a reviewer's judgement of one disagreement inside the caller's transaction.

    Args:
        active: the active model's ``verdict`` and ``score`` (and its name when known).
        shadow: the candidate's ``verdict`` and ``score``.
        good: the part is good; else ``defect_code`` names the defect.

    Raises:
        StateError: no reason, a defective part without a defect code, a signer who may not sign
            a review, verdicts that agree, or the part already judged for this candidate.
    """
    lock_writers(session)
    if not reason.strip():
        raise StateError("judging a shadow disagreement needs a reason")
    code = (defect_code or "").strip()
    if not good and not code:
        raise StateError("a defective part needs its defect code")
    right = right_side(good=good, active=str(active.get("verdict")), candidate=str(shadow.get("verdict")))
    for _row, c in _rows(session, inspection_id):
        if c.get("candidate") == candidate and c.get("inspection_id") == inspection_id:
            raise StateError(
                f"part {inspection_id} was already judged for {candidate} by {c.get('printed_name')} "
                f"at {c.get('signed_at')}"
            )
    signer = session.get(UserRecord, signer_user_id)
    if signer is None or not signer.active:
        raise StateError("judging a shadow disagreement needs an active signing user")
    when = at or datetime.now(UTC)
    content = {
        "candidate": candidate,
        "inspection_id": inspection_id,
        "station_id": station_id,
        "active": {k: active.get(k) for k in ("verdict", "score", "model")},
        "shadow": {k: shadow.get(k) for k in ("verdict", "score")},
        "label": GOOD if good else code,
        "right": right,
        "image_sha256": image_sha256,
        "reason": reason.strip(),
    }
    sign_record(
        session=session,
        entity=ENTITY,
        entity_id=inspection_id,
        signer=signer,
        meaning=SignatureMeaning.REVIEW,
        content=content,
        action=JUDGED,
        reason=reason.strip(),
        source=source,
        at=when,
    )
    row, c = list(_rows(session, inspection_id))[-1]
    return _judgement(row, c)


def judged_shadow_parts(
    *, session: Session, since: datetime | None = None, until: datetime | None = None
) -> Iterator[ShadowJudgement]:
    """Judgements whose frame is kept in the evidence store (the input of ``dataset from-reviews``),
    oldest first; ``since``/``until`` bound the judgement's time (UTC)."""
    for j in judgements(session=session):
        if j.image_sha256 is None:
            continue
        if (since is not None and j.judged_at < since) or (until is not None and j.judged_at >= until):
            continue
        yield j
