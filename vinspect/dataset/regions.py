"""Defect regions drawn on a labelled image: boxes, polygons and brush strokes, each with a code.

A region is plain data (what the browser sends and the label event stores, as canonical JSON):

* ``{"kind": "box", "code": c, "xyxy": [x1, y1, x2, y2]}``
* ``{"kind": "polygon", "code": c, "points": [[x, y], ...]}`` (3 points or more)
* ``{"kind": "brush", "code": c, "radius": r, "points": [[x, y], ...]}`` (a stroke of round dabs)

Coordinates are image pixels. :func:`parse_regions` checks every region against the image size
and the catalogue and names the first problem (which region, which point, which code);
:func:`region_mask` rasterises them into an MVTec-style 0/255 mask and :func:`region_boxes` gives
the DeepPCB-style ``x1 y1 x2 y2 code`` box of each region.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from vinspect.errors import DatasetError

__all__ = ["MAX_POINTS", "MAX_REGIONS", "Region", "parse_regions", "region_boxes", "region_mask", "regions_json"]

MAX_REGIONS = 64
MAX_POINTS = 4096
RegionKind = Literal["box", "polygon", "brush"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Region:
    """One checked region (points as integer pixels)."""

    kind: RegionKind
    code: str
    points: tuple[tuple[int, int], ...]
    radius: int = 0

    def as_json(self) -> dict[str, Any]:
        if self.kind == "box":
            (x1, y1), (x2, y2) = self.points
            return {"kind": "box", "code": self.code, "xyxy": [x1, y1, x2, y2]}
        out: dict[str, Any] = {"kind": self.kind, "code": self.code, "points": [list(p) for p in self.points]}
        if self.kind == "brush":
            out["radius"] = self.radius
        return out


def _number(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise DatasetError(f"{where}: {value!r} is not a number")
    return round(value)


def _point(raw: object, where: str, width: int, height: int) -> tuple[int, int]:
    if not isinstance(raw, list | tuple) or len(raw) != 2:
        raise DatasetError(f"{where}: a point is [x, y], got {raw!r}")
    x, y = _number(raw[0], where), _number(raw[1], where)
    if not (0 <= x <= width and 0 <= y <= height):
        raise DatasetError(f"{where}: point ({x}, {y}) lies outside the {width}x{height} image")
    return x, y


def _one(raw: object, where: str, width: int, height: int, catalogue: Collection[str]) -> Region:
    if not isinstance(raw, dict):
        raise DatasetError(f"{where}: a region is an object with kind, code and coordinates")
    kind, code = raw.get("kind"), raw.get("code")
    if kind not in ("box", "polygon", "brush"):
        raise DatasetError(f"{where}: kind {kind!r} is not box, polygon or brush")
    if not isinstance(code, str) or code not in catalogue:
        raise DatasetError(
            f"{where} ({kind}): defect code {code!r} is not in the product's catalogue ({', '.join(catalogue)})"
        )
    where = f"{where} ({kind}, {code})"
    if kind == "box":
        xyxy = raw.get("xyxy")
        if not isinstance(xyxy, list | tuple) or len(xyxy) != 4:
            raise DatasetError(f"{where}: a box is xyxy [x1, y1, x2, y2], got {xyxy!r}")
        p1 = _point(xyxy[:2], where, width, height)
        p2 = _point(xyxy[2:], where, width, height)
        (x1, y1), (x2, y2) = (min(p1[0], p2[0]), min(p1[1], p2[1])), (max(p1[0], p2[0]), max(p1[1], p2[1]))
        if x2 - x1 < 1 or y2 - y1 < 1:
            raise DatasetError(f"{where}: the box is empty ({x1} {y1} {x2} {y2})")
        return Region(kind="box", code=code, points=((x1, y1), (x2, y2)))
    points = raw.get("points")
    if not isinstance(points, list | tuple) or not points or len(points) > MAX_POINTS:
        raise DatasetError(f"{where}: points must be a list of 1-{MAX_POINTS} [x, y] pairs")
    checked = tuple(_point(p, f"{where} point {i + 1}", width, height) for i, p in enumerate(points))
    if kind == "polygon":
        if len(checked) < 3:
            raise DatasetError(f"{where}: a polygon needs at least 3 points, got {len(checked)}")
        return Region(kind="polygon", code=code, points=checked)
    radius = _number(raw.get("radius"), f"{where} radius")
    if not 1 <= radius <= 256:
        raise DatasetError(f"{where}: brush radius {radius} is not between 1 and 256 pixels")
    return Region(kind="brush", code=code, points=checked, radius=radius)


def parse_regions(raw: object, *, width: int, height: int, catalogue: Collection[str]) -> tuple[Region, ...]:
    """Check regions sent for a ``width`` x ``height`` image; the first problem raises.

    Raises:
        DatasetError: not a list, too many regions, a point outside the image, an empty box, a
            polygon under 3 points, a code not in ``catalogue``.
    """
    if not isinstance(raw, list):
        raise DatasetError("regions must be a list")
    if len(raw) > MAX_REGIONS:
        raise DatasetError(f"{len(raw)} regions: at most {MAX_REGIONS} per image")
    return tuple(_one(r, f"region {i + 1}", width, height, catalogue) for i, r in enumerate(raw))


def regions_json(regions: Sequence[Region]) -> list[dict[str, Any]]:
    """The stored form of checked regions."""
    return [r.as_json() for r in regions]


def region_mask(regions: Sequence[Region], *, width: int, height: int) -> npt.NDArray[np.uint8]:
    """The union of all regions as a 0/255 mask (MVTec ground truth)."""
    mask = np.zeros((height, width), np.uint8)
    for r in regions:
        pts = np.array(r.points, np.int32)
        if r.kind == "box":
            (x1, y1), (x2, y2) = r.points
            mask[y1:y2, x1:x2] = 255
        elif r.kind == "polygon":
            cv2.fillPoly(mask, [pts], 255)
        else:
            for x, y in r.points:
                cv2.circle(mask, (x, y), r.radius, 255, -1)
            if len(pts) > 1:
                cv2.polylines(mask, [pts], False, 255, thickness=2 * r.radius)
    return mask


def region_boxes(regions: Sequence[Region], *, width: int, height: int) -> list[tuple[int, int, int, int, str]]:
    """Each region's bounding box ``(x1, y1, x2, y2, code)`` clipped to the image (DeepPCB files)."""
    out = []
    for r in regions:
        xs = [p[0] for p in r.points]
        ys = [p[1] for p in r.points]
        x1, y1 = max(0, min(xs) - r.radius), max(0, min(ys) - r.radius)
        x2, y2 = min(width, max(xs) + r.radius), min(height, max(ys) + r.radius)
        out.append((x1, y1, x2, y2, r.code))
    return out
