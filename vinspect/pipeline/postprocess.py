"""RawOutput -> Prediction: defect code, regions from the anomaly map. Pure."""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

from vinspect.models.manifest import ModelManifest
from vinspect.models.output import RawOutput
from vinspect.types import Prediction, Region

__all__ = ["EXPOSURE_CODE", "to_prediction"]

MAX_REGIONS = 16
EXPOSURE_CODE = "exposure_out_of_range"


def to_prediction(
    raw: RawOutput, *, manifest: ModelManifest, review_at: float, image_hw: tuple[int, int]
) -> Prediction:
    """Build the Prediction for an image of size ``image_hw`` (rows, cols).

    The defect code is the most probable labelled class when the part scores at or above
    ``review_at`` (the policy's, so the station's overrides apply as they do in ``decide``) and
    the model has a defect-type head; otherwise ``"unknown_anomaly"`` for a rejected part (the
    anomaly path caught something no label names) or None for a good one. A rejected part the
    bundle's exposure guard failed (its grey level or contrast outside every training good's) is
    :data:`EXPOSURE_CODE` whatever the defect-type head says: no labelled class was seen.
    """
    probs = {label: float(p) for label, p in zip(manifest.labels, raw.defect_probs, strict=False)}
    rejected = math.isfinite(raw.score) and raw.score >= review_at
    code = None
    if rejected and raw.regions:  # a model that measures its own regions names the worst one
        code = raw.regions[0].label
    elif rejected and _exposure_guard_fired(raw.anomaly_map, manifest):
        code = EXPOSURE_CODE
    elif rejected:
        code = max(probs, key=lambda k: probs[k]) if probs else "unknown_anomaly"
    if raw.regions is not None:
        return Prediction(
            score=raw.score, anomaly_map=raw.anomaly_map, regions=raw.regions, defect_probs=probs, defect_code=code
        )
    regions = _regions(raw.anomaly_map, level=manifest.thresholds.map_at, image_hw=image_hw, label=code or "anomaly")
    return Prediction(
        score=raw.score, anomaly_map=raw.anomaly_map, regions=regions, defect_probs=probs, defect_code=code
    )


def _exposure_guard_fired(amap: npt.NDArray[np.float32], manifest: ModelManifest) -> bool:
    """The exposure guard (``training/exposure.py``; a bundle with one states its ranges as
    ``training.metrics.exposure_*``) sets every map cell to 1.0; anomaly and fused map cells stay
    below 1, so a map at 1.0 everywhere is the guard's."""
    guarded = "exposure_mean_grey_min" in manifest.training.metrics
    return guarded and amap.size > 0 and bool(np.all(amap >= 1.0))


def _regions(
    amap: npt.NDArray[np.float32], *, level: float, image_hw: tuple[int, int], label: str
) -> tuple[Region, ...]:
    if amap.ndim != 2 or amap.size == 0 or not np.isfinite(amap).all():
        return ()
    mask = (amap >= level).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    sy, sx = image_hw[0] / amap.shape[0], image_hw[1] / amap.shape[1]
    regions = []
    for i in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[i])
        peak = float(amap[y : y + h, x : x + w].max())
        box = (int(x * sx), int(y * sy), math.ceil((x + w) * sx), math.ceil((y + h) * sy))
        regions.append(Region(label=label, score=peak, box_xyxy=box, area_px=int(area * sx * sy)))
    regions.sort(key=lambda r: r.score, reverse=True)
    return tuple(regions[:MAX_REGIONS])
