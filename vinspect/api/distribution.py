"""Model distribution from the reviewer app (issue 18): a quality engineer or admin assigns an
installed, approved version to chosen stations, signing with their password.

The rules are the CLI's (:mod:`vinspect.store.distribution`): a version under promotion control
must have been promoted; any other version is a plain activation, and one whose stated rates carry
warnings needs the signer's explicit acceptance and a reason (recorded as the same
``MODEL_PROMOTION`` risk acceptance the models page records). Refusals become HTTP answers that
name the rule.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import HTTPException

from vinspect.api.auth import AuthUser
from vinspect.api.deps import Services
from vinspect.api.workflow import check_signing_password, installed_manifest, invalid
from vinspect.errors import ModelError, StateError
from vinspect.models.archive import archive_sha256, pack_bundle
from vinspect.models.risk import activation_warnings, stated_rates
from vinspect.store import session_scope
from vinspect.store.distribution import Assignment, approval_of, distribute, resolve_stations
from vinspect.store.model_acceptance import record_model_activation

__all__ = ["distribute_model"]


def distribute_model(
    services: Services,
    user: AuthUser,
    name: str,
    version: str,
    *,
    stations: Sequence[str],
    password: str,
    reason: str,
    accept_risk: bool,
    source: str,
) -> list[Assignment]:
    """Assign ``name`` ``version`` to ``stations`` (password re-entry); 404 not installed, 409 refused by a
    rule or an unknown station, 422 no station or a missing reason, 403 wrong password."""
    manifest = installed_manifest(services, name, version)
    if not stations:
        raise invalid("stations", "choose at least one station")
    try:
        with session_scope(services.store.engine, readonly=True) as session:
            controlled = approval_of(session=session, name=name, version=version, sha256=manifest.sha256)
    except StateError as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from exc
    warnings = activation_warnings(manifest) if controlled is None else ()
    if warnings and not accept_risk:
        raise HTTPException(
            status_code=409,
            detail=f"{name} {version} cannot meet its targets: "
            + "; ".join(warnings)
            + ". Accept the stated rates to distribute it anyway.",
        )
    if warnings and not reason.strip():
        raise invalid("reason", "accepting a model's stated risk needs a reason")
    check_signing_password(services, user, password, source=source, what=f"model {name}@{version}")
    try:
        archive = pack_bundle(services.registry.resolve(name, version))
        actor = f"user:{user.user_id}"
        with session_scope(services.store.engine) as session:
            approval = approval_of(session=session, name=name, version=version, sha256=manifest.sha256)
            if approval is None:
                record = record_model_activation(
                    session=session,
                    user_id=user.user_id,
                    actor=actor,
                    name=name,
                    version=version,
                    sha256=manifest.sha256,
                    warnings=warnings,
                    rates=stated_rates(manifest),
                    reason=reason.strip() or None,
                    source=source,
                    accept_risk=accept_risk,
                )
                approval = (
                    f"activation with the stated risk accepted by {user.display_name} (signature {record.signature_id})"
                    if warnings
                    else f"activation by {user.display_name} (no promotion criteria fixed; the bundle meets "
                    "its stated targets)"
                )
            chosen = resolve_stations(session=session, station_ids=stations)
            return distribute(
                session=session,
                name=name,
                version=version,
                sha256=manifest.sha256,
                archive=archive,
                archive_sha256=archive_sha256(archive),
                station_ids=chosen,
                approval=approval,
                actor=actor,
                reason=reason.strip() or None,
            )
    except StateError as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from exc
    except ModelError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc
