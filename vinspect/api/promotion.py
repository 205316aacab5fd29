"""Model promotion from the reviewer app: what blocks a candidate, signing it, promoting it.

The rules live in :mod:`vinspect.store.promotion` (criteria before evidence, two signers other
than the trainer, every step audited); this module adds the web's password re-entry and turns
refusals into HTTP answers. Criteria are fixed here too (a quality engineer's or admin's
signature, password re-entry), and the evaluation on a frozen set runs in a background thread
(:mod:`vinspect.api.model_evaluation`), as ``vinspect models criteria`` / ``evaluate`` do from
the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException
from pydantic import ValidationError

from vinspect.api.auth import AuthUser
from vinspect.api.deps import Services
from vinspect.api.model_evaluation import EvaluationJob, frozen_choices
from vinspect.api.shadow_review import candidate_stats
from vinspect.api.workflow import check_signing_password, installed_manifest, invalid
from vinspect.errors import StateError
from vinspect.models.evaluation_images import evaluation_dir, read_changed
from vinspect.models.promotion_criteria import Criteria
from vinspect.store import promotion as promo
from vinspect.store import session_scope
from vinspect.store.shadow_judgements import judgement_counts

__all__ = [
    "PromotionView",
    "candidate_shadow_stats",
    "fix_model_criteria",
    "promote_model",
    "promotion_views",
    "sign_model_promotion",
    "start_evaluation",
]


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
    job: EvaluationJob | None = None  # the newest evaluation started from the app
    # reviewers' judgements of its shadow disagreements: judged, candidate_right, active_right
    shadow_judged: dict[str, int] | None = None


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
                job=services.evaluations.state(name, version),
                shadow_judged=judgement_counts(session=session, candidate=f"{name}@{version}"),
            )
    return out


def _share(form: dict[str, str], key: str, *, percent: bool) -> float | None:
    text = form.get(key, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError as exc:
        raise invalid(key, f"{text!r} is not a number") from exc
    return value / 100.0 if percent else value


def fix_model_criteria(
    services: Services,
    user: AuthUser,
    name: str,
    version: str,
    form: dict[str, str],
    *,
    password: str,
    reason: str,
    source: str,
) -> promo.Candidate:
    """Fix a candidate's acceptance criteria from the Models page, signed (password re-entry).

    ``form`` holds the page's fields as text: rates in percent (``max_false_reject_pct``,
    ``max_escape_pct``, ``min_golden_detection_pct``), ``min_auroc``, ``max_latency_ms``,
    ``min_shadow_parts`` and ``allow_more_false_rejects`` ("yes"). 422 names a bad field; 409 the
    rule that refused (already evaluated, already fixed, the candidate is active).
    """
    manifest = installed_manifest(services, name, version)
    if not reason.strip():
        raise invalid("reason", "fixing acceptance criteria needs a reason")
    if services.registry.active_version(name) == version:
        raise HTTPException(status_code=409, detail=f"{name} {version} is already the active version")
    shadow_text = form.get("min_shadow_parts", "").strip() or "0"
    if not shadow_text.isdigit():
        raise invalid("min_shadow_parts", f"{shadow_text!r} is not a whole number of parts")
    golden = _share(form, "min_golden_detection_pct", percent=True)
    try:
        criteria = Criteria(
            min_golden_detection=1.0 if golden is None else golden,
            max_false_reject_rate=_share(form, "max_false_reject_pct", percent=True),
            max_escape_rate=_share(form, "max_escape_pct", percent=True),
            min_auroc=_share(form, "min_auroc", percent=False),
            no_worse_false_reject_than_champion=form.get("allow_more_false_rejects") != "yes",
            max_latency_p99_ms=_share(form, "max_latency_ms", percent=False),
            min_shadow_parts=int(shadow_text),
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "criteria"
        raise invalid(field, f"{field}: {first['msg']}") from exc
    check_signing_password(services, user, password, source=source, what=f"model {name}@{version} criteria")
    try:
        with session_scope(services.store.engine) as session:
            promo.fix_criteria(
                session=session,
                name=name,
                version=version,
                sha256=manifest.sha256,
                trained_by=manifest.training.trained_by,
                criteria=criteria,
                actor=f"user:{user.user_id}",
                reason=reason.strip(),
                signer_user_id=user.user_id,
            )
            return promo.candidate_state(session=session, name=name, version=version)
    except StateError as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from exc


def candidate_shadow_stats(services: Services, name: str, version: str) -> dict[str, Any] | None:
    """The candidate's shadow statistics as the evaluation records them: every store-backed station's and
    this data directory's, summed (None: it never ran in shadow)."""
    with session_scope(services.store.engine, readonly=True) as session:
        return candidate_stats(services.data_dir, session, f"{name}@{version}")


def start_evaluation(services: Services, user: AuthUser, name: str, version: str, *, frozen: str) -> EvaluationJob:
    """Start the candidate's evaluation on a frozen set of ``<data dir>/frozen/`` in the background.

    409: no criteria fixed yet, the candidate is the active version, or an evaluation of it is
    already running; 422: no such frozen set.
    """
    installed_manifest(services, name, version)
    if frozen not in {c.folder for c in frozen_choices(services.data_dir)}:
        raise invalid("frozen", f"no frozen set {frozen!r} under {services.data_dir / 'frozen'}")
    if services.registry.active_version(name) == version:
        raise HTTPException(status_code=409, detail=f"{name} {version} is already the active version")
    with session_scope(services.store.engine, readonly=True) as session:
        if not promo.under_promotion_control(session=session, name=name, version=version):
            raise HTTPException(
                status_code=409,
                detail=f"{name} {version}: fix the acceptance criteria before evaluating (they are fixed first)",
            )

    job = services.evaluations.start(
        engine=services.store.engine,
        registry=services.registry,
        data_dir=services.data_dir,
        name=name,
        version=version,
        frozen=frozen,
        user_id=user.user_id,
        user_name=user.display_name,
        shadow=lambda: candidate_shadow_stats(services, name, version),
    )
    if job is None:
        raise HTTPException(status_code=409, detail=f"an evaluation of {name} {version} is already running")
    return job


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


def rollback_targets(services: Services, active: list[tuple[str, str]]) -> dict[str, str]:
    """For each active ``(name, version)``: the version a rollback would put back (absent: none)."""
    out = {}
    with session_scope(services.store.engine, readonly=True) as session:
        for name, version in active:
            target = promo.rollback_target(session=session, name=name, current=version)
            if target is not None:
                out[name] = target
    return out


def rollback_model(
    services: Services, user: AuthUser, name: str, *, password: str, reason: str, source: str
) -> tuple[str, str]:
    """Put back the version the active one replaced: one signed action (password re-entry), audited,
    and the ACTIVE switch in the same transaction; a running station follows after its golden
    self-test. Returns ``(from_version, to_version)``; 409 when there is nothing to go back to."""
    current = services.registry.active_version(name)
    if current is None:
        raise HTTPException(status_code=409, detail=f"{name}: no active version to roll back")
    if not reason.strip():
        raise invalid("reason", "a rollback needs a reason")
    with session_scope(services.store.engine, readonly=True) as session:
        target = promo.rollback_target(session=session, name=name, current=current)
    if target is None:
        raise HTTPException(status_code=409, detail=f"{name} {current}: {promo.NO_ROLLBACK_TARGET}")
    manifest = installed_manifest(services, name, target)
    check_signing_password(services, user, password, source=source, what=f"model {name}@{target}")
    try:
        with session_scope(services.store.engine) as session:
            promo.record_rollback(
                session=session,
                user_id=user.user_id,
                name=name,
                from_version=current,
                to_version=target,
                sha256=manifest.sha256,
                reason=reason.strip(),
            )
            services.registry.activate(name, target)
    except StateError as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from exc
    return current, target
