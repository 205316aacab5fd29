"""The drift reference: each installed model version's validation good-part scores (from its bundle)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from vinspect.models.manifest import read_manifest
from vinspect.models.registry import ModelRegistry

__all__ = ["validation_scores"]

logger = logging.getLogger(__name__)


def validation_scores(registry: ModelRegistry) -> dict[str, Sequence[float]]:
    """Model version -> validation good-part scores of every installed bundle that recorded them."""
    found: dict[str, Sequence[float]] = {}
    for entry in registry.list():
        try:
            scores = read_manifest(entry.path).thresholds.evidence.scores_good
        except Exception as exc:  # boundary: an unreadable bundle must not take the dashboard down
            logger.warning("no validation scores from %s %s: %s", entry.name, entry.version, exc)
            continue
        if scores:
            found[entry.version] = scores
    return found
