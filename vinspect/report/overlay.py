"""Heatmap overlays: the anomaly map coloured over the inspected image, regions boxed."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from vinspect.types import Prediction

__all__ = ["render_overlay"]


def render_overlay(
    image: npt.NDArray[np.uint8], prediction: Prediction, *, level: float, alpha: float = 0.45
) -> npt.NDArray[np.uint8]:
    """Return a BGR image: the part with its anomaly map (JET, scaled so ``level`` = mid-range)."""
    code = cv2.COLOR_GRAY2BGR if image.ndim == 2 else cv2.COLOR_RGB2BGR
    bgr: npt.NDArray[np.uint8] = np.asarray(cv2.cvtColor(image, code), dtype=np.uint8)
    amap = prediction.anomaly_map
    if amap is None or amap.size == 0 or not np.isfinite(amap).all():
        return bgr
    scale = max(level, 1e-6) * 2.0
    heat = np.clip(amap / scale * 255.0, 0, 255).astype(np.uint8)
    heat = cv2.resize(heat, (bgr.shape[1], bgr.shape[0]), interpolation=cv2.INTER_LINEAR)
    coloured = cv2.applyColorMap(heat, cv2.COLORMAP_JET)
    out: npt.NDArray[np.uint8] = np.asarray(cv2.addWeighted(bgr, 1.0 - alpha, coloured, alpha, 0.0), np.uint8)
    for region in prediction.regions:
        x0, y0, x1, y1 = region.box_xyxy
        cv2.rectangle(out, (x0, y0), (x1, y1), (255, 255, 255), 1)
    return out
