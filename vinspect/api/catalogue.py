"""The defect-code catalogue a reviewer picks from: one per product (its model's defect classes
followed by the plant's own codes), in a fixed order so key 1..9 always means the same code."""

from __future__ import annotations

from collections.abc import Sequence

from vinspect.errors import VinspectError
from vinspect.models.manifest import read_manifest
from vinspect.models.registry import ModelRegistry

__all__ = ["KEYED", "defect_catalogue", "review_codes"]

KEYED = 9  # codes reachable by the digit keys 1..9


def defect_catalogue(
    registry: ModelRegistry, plant_codes: Sequence[str], *, model_name: str | None, model_version: str | None
) -> tuple[str, ...]:
    """The model's labels (from the bundle that judged the part, else the active one) then the plant's codes."""
    labels: tuple[str, ...] = ()
    if model_name:
        for version in (model_version, "active"):
            if not version:
                continue
            try:
                labels = tuple(read_manifest(registry.resolve(model_name, version)).labels)
            except (VinspectError, OSError, ValueError):
                continue
            break
    return tuple(dict.fromkeys([*labels, *plant_codes]))


def review_codes(catalogue: Sequence[str], machine_code: str | None) -> list[str]:
    """The catalogue, plus the machine's code at the end when the catalogue lacks it (the numbers
    of the catalogue's own codes never move)."""
    codes = list(catalogue)
    if machine_code and machine_code not in codes:
        codes.append(machine_code)
    return codes
