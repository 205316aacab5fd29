"""``reference.json``: the golden-reference task of a bundle (task ``reference``).

A reference bundle is a directory::

    manifest.json         task "reference"; its ``sha256`` pins reference.json
    reference.json        this schema: parts, registration bounds, comparison limits, region codes
    reference/<pn>.png    the golden image of each part number (sha256 pinned here)
    reference/<pn>_ignore.png, reference/<pn>_tight.png   optional tolerance masks (pinned)
    anomaly/model.onnx    optional anomaly model judged beside the reference (pinned here)
    golden/*.png          golden samples for the start-up self-test

The manifest pins this file and this file pins every image, so an edited or missing golden image
or mask refuses to load, exactly like an edited ``model.onnx``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vinspect.strict import Strict

__all__ = [
    "REFERENCE_NAME",
    "AnomalyCompanion",
    "CompareLimits",
    "PartReference",
    "PinnedFile",
    "ReferenceSpec",
    "RegionCodes",
    "RegistrationBounds",
]

REFERENCE_NAME = "reference.json"


class PinnedFile(Strict):
    """A bundle file and the sha256 its bytes must have."""

    file: str = Field(pattern=r"^reference/[A-Za-z0-9_.-]+\.png$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class PartReference(Strict):
    """The golden image of one part number and its tolerance masks (non-zero = inside)."""

    part_number: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    image: PinnedFile
    ignore_mask: PinnedFile | None = None
    tight_mask: PinnedFile | None = None


class RegistrationBounds(Strict):
    """How far a frame may sit from its reference (beyond: FAIL, reason ``alignment``)."""

    max_shift_px: float = Field(default=20.0, gt=0)
    max_rotation_deg: float = Field(default=2.0, gt=0)
    min_correlation: float = Field(default=0.6, ge=0.0, le=1.0)


class CompareLimits(Strict):
    """Comparison limits; contrast is a fraction of the reference's dark-to-bright contrast."""

    jitter_px: int = Field(default=1, ge=0, le=4, description="edge tolerance radius (min/max window)")
    contrast_at: float = Field(default=0.3, gt=0.0, le=1.0, description="pixel excess that may belong to a defect")
    open_px: int = Field(default=0, ge=0, le=3, description="morphological opening radius on the defect pixels")
    min_area_px: int = Field(default=3, ge=1, description="smaller blobs are noise")
    group_px: int = Field(default=0, ge=0, le=16, description="defect pixels this close form one region")
    box_pad_px: int = Field(default=0, ge=0, le=32, description="margin added around each region's box")
    local_grid: int = Field(default=0, ge=0, le=8, description="non-rigid touch-up tiles per side (0: rigid only)")
    mass_at: float = Field(gt=0.0, description="blob mass (sum of excess contrast, contrast*px) scoring 0.5")
    tight_factor: float = Field(default=0.5, gt=0.0, le=1.0, description="limits scale by this inside tight masks")
    max_dark_fraction: float = Field(default=0.98, gt=0.0, le=1.0, description="blank-frame limit")
    max_bright_fraction: float = Field(default=0.98, gt=0.0, le=1.0, description="saturated-frame limit")


class RegionCodes(Strict):
    """Nearest-neighbour defect codes per region, over standardised blob features."""

    labels: tuple[str, ...]
    feature_mean: tuple[float, ...]
    feature_scale: tuple[float, ...]
    points: tuple[tuple[float, ...], ...]
    point_labels: tuple[int, ...]
    k: int = Field(default=5, ge=1)


class AnomalyCompanion(Strict):
    """An anomaly model carried beside the reference (a part fails on either signal)."""

    file: str = Field(pattern=r"^anomaly/model\.onnx$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    channels: Literal[1, 3]
    fail_at: float = Field(gt=0.0, description="the anomaly model's own calibrated FAIL level")
    map_at: float = Field(gt=0.0, description="the anomaly model's own region level")
    source: str = Field(description="name@version of the anomaly bundle it came from")


class ReferenceSpec(Strict):
    """Everything the runtime needs to inspect parts against their golden references."""

    schema_version: Literal[1] = 1
    parts: tuple[PartReference, ...] = Field(min_length=1)
    registration: RegistrationBounds = RegistrationBounds()
    limits: CompareLimits
    codes: RegionCodes | None = None
    anomaly: AnomalyCompanion | None = None

    def part(self, part_number: str | None) -> PartReference:
        """The reference for ``part_number``; with None, the bundle's only reference.

        Raises:
            KeyError: no such part number, or None while the bundle carries several.
        """
        if part_number is None:
            if len(self.parts) == 1:
                return self.parts[0]
            names = ", ".join(p.part_number for p in self.parts[:10])
            raise KeyError(f"the bundle carries {len(self.parts)} references ({names}, ...): name the part number")
        for p in self.parts:
            if p.part_number == part_number:
                return p
        raise KeyError(f"no reference for part number {part_number!r} in the bundle")
