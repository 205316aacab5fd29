"""Recipe selection for a station (issue 18, OPC 40100-1 ``PrepareRecipe``): recipe = model version.

The recipes a station offers are the versions of its model that were **approved for this
station**: distributed to it (``vinspect models distribute``, so under the product's one approval
rule) and not refused by it, and installed in its registry. Preparing one points the local
``ACTIVE`` at it; the station's hot-swap watcher then gates it (golden self-test) and switches
between two parts, and the OPC UA ``InternalRecipeId`` shows the switch. Every selection, and
every refused one, is an audit row (``model.recipe_prepared`` / ``model.recipe_refused``) naming
the OPC UA user.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, select

from vinspect.errors import ModelError
from vinspect.models.registry import ModelRegistry
from vinspect.store.audit import AuditEntry, append_audit
from vinspect.store.canonical import canonical_json, content_sha256, format_utc
from vinspect.store.db import session_scope
from vinspect.store.distribution import REFUSED
from vinspect.store.promotion import entity_id
from vinspect.store.tables import ModelAssignmentRecord

__all__ = ["StationRecipes", "recipe_id"]


def recipe_id(name: str, version: str) -> str:
    """The recipe id of a model version, as ``InternalRecipeId`` shows it: ``<model>:<version>``."""
    return f"{name}:{version}"


class StationRecipes:
    """The recipe book of one station: its approved, installed model versions.

    Args:
        engine: the station's store.
        station_id: the station.
        registry: its local model registry.
        name: the model name its station file runs.
    """

    def __init__(self, engine: Engine, *, station_id: str, registry: ModelRegistry, name: str) -> None:
        self.engine, self.station_id, self.registry, self.name = engine, station_id, registry, name

    def recipes(self) -> list[str]:
        """Recipe ids approved for this station and installed here, oldest assignment first."""
        with session_scope(self.engine, readonly=True) as session:
            rows = session.execute(
                select(ModelAssignmentRecord.version, ModelAssignmentRecord.outcome)
                .where(ModelAssignmentRecord.station_id == self.station_id, ModelAssignmentRecord.name == self.name)
                .order_by(ModelAssignmentRecord.id)
            ).all()
        refused = {v for v, outcome in rows if outcome == REFUSED}
        installed = {e.version for e in self.registry.list() if e.name == self.name}
        out: list[str] = []
        for version, _ in rows:
            if version not in refused and version in installed and recipe_id(self.name, version) not in out:
                out.append(recipe_id(self.name, version))
        return out

    def prepare(self, recipe: str, *, by: str) -> tuple[bool, str]:
        """Select a recipe; returns (accepted, message). Audited either way."""
        name, _, version = recipe.partition(":")
        if recipe not in self.recipes():
            message = (
                f"recipe {recipe!r} is not approved for station {self.station_id} (approved here: "
                f"{', '.join(self.recipes()) or 'none'}; a version is approved for a station by "
                "vinspect models distribute)"
            )
            self._audit("model.recipe_refused", name or self.name, version or "?", by=by, message=message)
            return False, message
        try:
            self.registry.activate(name, version)
        except ModelError as exc:
            message = f"recipe {recipe!r} cannot be activated: {exc}"
            self._audit("model.recipe_refused", name, version, by=by, message=message)
            return False, message
        message = (
            f"recipe {recipe} prepared on station {self.station_id}: it runs after its golden self-test "
            "(InternalRecipeId shows the switch)"
        )
        self._audit("model.recipe_prepared", name, version, by=by, message=message)
        return True, message

    def _audit(self, action: str, name: str, version: str, *, by: str, message: str) -> None:
        at = datetime.now(UTC)
        content = {
            "station_id": self.station_id,
            "recipe": recipe_id(name, version),
            "by": by,
            "message": message,
            "at": format_utc(at),
        }
        actor = by[:128]
        with session_scope(self.engine) as session:
            append_audit(
                AuditEntry(
                    actor=actor,
                    action=action,
                    entity="model",
                    entity_id=entity_id(name, version),
                    field="recipe",
                    new_value=canonical_json(content).decode("utf-8"),
                    reason=message[:2000],
                    record_sha256=content_sha256(content),
                    source=actor,
                ),
                session=session,
                at=at,
            )
