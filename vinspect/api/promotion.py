"""Model promotion from the reviewer app: what blocks a candidate, signing it, promoting it.

The rules live in :mod:`vinspect.store.promotion` (criteria before evidence, two signers other
than the trainer, every step audited); this module adds the web's password re-entry and turns
refusals into HTTP answers. Criteria and evaluation are recorded from the CLI
(``vinspect models criteria`` / ``evaluate``), which runs the comparison on a frozen set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException

from vinspect.api.auth import AuthUser
from vinspect.api.deps import Services
from vinspect.api.workflow import check_signing_password, installed_manifest, invalid
from vinspect.errors import StateError
from vinspect.models.evaluation_images import evaluation_dir, read_changed
from vinspect.store import promotion as promo
from vinspect.store import session_scope

__all__ = ["PromotionView", "promote_model", "promotion_views", "sign_model_promotion"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PromotionView:
    """What the models page shows about one version's promotion."""

    under_control: bool  # criteria fixed: activation goes through promotion
    criteria: dict[str, Any] | None
    trained_by: str | None
    evaluation: dict[str, Any] | None
    signers: tuple[str, ...]
    signer_ids: tuple[int, ...]
    blockers: tuple[str, ...]
    promoted: bool
    # the current evaluation's changed verdicts with their images (``models evaluate``), None: none written
    changed: list[dict[str, Any]] | None = None
    evaluation_sha256: str | None = None


def promotion_views(services: Services, names: list[tuple[str, str]]) -> dict[tuple[str, str], PromotionView]:
    """The promotion state of each (name, version)."""
    out = {}
    with session_scope(services.store.engine, readonly=True) as session:
        for name, version in names:
            c = promo.candidate_state(session=session, name=name, version=version)
            out[(name, version)] = PromotionView(
                under_control=c.criteria is not None,
                criteria=None if c.criteria is None else c.criteria.model_dump(mode="json"),
                trained_by=c.trained_by,
                evaluation=None if c.evaluation is None else c.evaluation.model_dump(mode="json"),
                signers=c.signers,
                signer_ids=c.signer_ids,
                blockers=tuple(c.blockers),
                promoted=c.promoted,
                evaluation_sha256=c.evaluation_sha256,
                changed=None
                if c.evaluation_sha256 is None
                else read_changed(evaluation_dir(services.data_dir, name, version, c.evaluation_sha256)),
            )
    return out


def sign_model_promotion(
    services: Services, user: AuthUser, name: str, version: str, *, password: str, reason: str, source: str
) -> promo.Candidate:
    """Sign the candidate's current evaluation (password re-entry); 409 with the rule that refused it."""
    installed_manifest(services, name, version)
    if not reason.strip():
        raise invalid("reason", "a promotion signature needs a reason")
    check_signing_password(services, user, password, source=source, what=f"model {name}@{version}")
    try:
        with session_scope(services.store.engine) as session:
            promo.sign_promotion(
                session=session, user_id=user.user_id, name=name, version=version, reason=reason.strip()
            )
            return promo.candidate_state(session=session, name=name, version=version)
    except StateError as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from exc


def promote_model(
    services: Services, user: AuthUser, name: str, version: str, *, password: str, source: str
) -> promo.Candidate:
    """Promote (password re-entry): the audit row and the ACTIVE switch share one transaction."""
    installed_manifest(services, name, version)
    check_signing_password(services, user, password, source=source, what=f"model {name}@{version}")
    previous = services.registry.active_version(name)
    try:
        with session_scope(services.store.engine) as session:
            state = promo.promote(
                session=session, name=name, version=version, previous=previous, actor=f"user:{user.user_id}"
            )
            services.registry.activate(name, version)
            return state
    except StateError as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from exc
