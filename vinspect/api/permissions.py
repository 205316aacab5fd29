"""The one role → permission map every route checks (quality-domain.md §6).

Admins administer; they cannot adjudicate or sign unless also granted quality engineer (a
separate account: one role per account). Operators never read the audit trail (S10).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from vinspect.store.ncr import Role

__all__ = ["ROLE_PERMISSIONS", "Permission", "allowed"]


class Permission(enum.StrEnum):
    VIEW = "view"  # station status, models, NCR list/detail, evidence images
    DISPUTE = "dispute"  # ask for a FAIL to be reviewed
    ADJUDICATE = "adjudicate"  # confirm / false reject / MRB, PASS-sample audits
    DISPOSITION = "disposition"  # disposition + signature
    EXPORT = "export"  # NCR exports
    AUDIT = "audit"  # read the audit trail
    USERS = "users"  # accounts and roles
    MODELS = "models"  # activate a model version (signed; accepts its stated risk)
    ACKNOWLEDGE = "acknowledge"  # acknowledge quality alarms, own and sign CAPA steps (signed)
    CAPA = "capa"  # open CAPAs, link NCRs, close a CAPA (quality engineer's signature)
    LABEL = "label"  # label images of labelling sets, settle others' blind disagreements
    LABEL_SETS = "label_sets"  # import images as labelling sets


ROLE_PERMISSIONS: Mapping[str, frozenset[Permission]] = {
    Role.OPERATOR: frozenset({Permission.VIEW, Permission.DISPUTE, Permission.ACKNOWLEDGE}),
    Role.REVIEWER: frozenset(
        {Permission.VIEW, Permission.DISPUTE, Permission.ADJUDICATE, Permission.ACKNOWLEDGE, Permission.LABEL}
    ),
    Role.QUALITY_ENGINEER: frozenset(
        {
            Permission.VIEW,
            Permission.DISPUTE,
            Permission.ADJUDICATE,
            Permission.DISPOSITION,
            Permission.EXPORT,
            Permission.AUDIT,
            Permission.MODELS,
            Permission.ACKNOWLEDGE,
            Permission.CAPA,
            Permission.LABEL,
            Permission.LABEL_SETS,
        }
    ),
    Role.ADMIN: frozenset({Permission.VIEW, Permission.AUDIT, Permission.USERS}),
}


def allowed(role: str, permission: Permission) -> bool:
    """True when ``role`` holds ``permission`` (unknown roles hold nothing)."""
    return permission in ROLE_PERMISSIONS.get(role, frozenset())
