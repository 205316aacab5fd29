"""Heatmap overlays: the anomaly map coloured over the inspected image, regions boxed.

The colours are the one scale of :func:`vinspect.imaging.heat_fraction` (the NCR evidence
heatmaps use it too), so a colour in a report means the same score as in the reviewer app.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from vinspect.imaging import heat_colours, heat_fraction
from vinspect.types import Prediction

__all__ = ["render_overlay"]


def render_overlay(
    image: npt.NDArray[np.uint8], prediction: Prediction, *, level: float, alpha: float = 0.45
) -> npt.NDArray[np.uint8]:
    """Return a BGR image: the part with its anomaly map (JET, the one heat scale: ``level`` mid-range)."""
    code = cv2.COLOR_GRAY2BGR if image.ndim == 2 else cv2.COLOR_RGB2BGR
    bgr: npt.NDArray[np.uint8] = np.asarray(cv2.cvtColor(image, code), dtype=np.uint8)
    amap = prediction.anomaly_map
    if amap is None or amap.size == 0 or not np.isfinite(amap).all():
        return bgr
    fraction = cv2.resize(
        heat_fraction(amap, level=level), (bgr.shape[1], bgr.shape[0]), interpolation=cv2.INTER_LINEAR
    )
    coloured = heat_colours(np.asarray(fraction, dtype=np.float32))
    out: npt.NDArray[np.uint8] = np.asarray(cv2.addWeighted(bgr, 1.0 - alpha, coloured, alpha, 0.0), np.uint8)
    for region in prediction.regions:
        x0, y0, x1, y1 = region.box_xyxy
        cv2.rectangle(out, (x0, y0), (x1, y1), (255, 255, 255), 1)
    return out
