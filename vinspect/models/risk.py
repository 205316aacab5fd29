"""What a person must accept before a bundle runs: the warnings its stated operating point carries.

A bundle meets its targets when its validation parts showed zero escapes within the false-reject
ceiling. Otherwise (overlap, escapes, or no defective validation parts: escape rate unknown) it
may be activated only with a signed acceptance of the stated rates (``vinspect models
install|activate --accept-risk`` or the web app's models page). Bundles trained before the rates
were recorded state nothing, which is a risk of its own.
"""

from __future__ import annotations

from typing import Any

from vinspect.models.calibration import describe_operating_point
from vinspect.models.manifest import ModelManifest

__all__ = ["NO_STATEMENT", "activation_warnings", "stated_lines", "stated_rates"]

NO_STATEMENT = (
    "this bundle states no expected false-reject, review or escape rates (it was trained before "
    "they were recorded): its risk on the line is unknown; retrain it to have them stated"
)


def activation_warnings(manifest: ModelManifest) -> tuple[str, ...]:
    """Plain-words warnings; empty when the bundle meets its targets."""
    point = manifest.thresholds.evidence.operating_point
    return (NO_STATEMENT,) if point is None else point.warnings


def stated_rates(manifest: ModelManifest) -> dict[str, Any] | None:
    """The operating point as JSON (what an acceptance signs), or None when none is stated."""
    point = manifest.thresholds.evidence.operating_point
    return None if point is None else point.model_dump(mode="json")


def stated_lines(manifest: ModelManifest) -> list[str]:
    """The stated rates and warnings as lines for a terminal or a page."""
    point = manifest.thresholds.evidence.operating_point
    return [f"WARNING: {NO_STATEMENT}"] if point is None else describe_operating_point(point)
