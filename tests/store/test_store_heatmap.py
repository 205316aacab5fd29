"""Heatmap evidence (issue 13): fixed colour scale from the fail threshold, image resolution,
smooth, regions outlined, low scores transparent."""

from __future__ import annotations

import cv2
import numpy as np

from vinspect.store.evidence import HEATMAP_TOP_OVER_FAIL, heatmap_png


def _decode(png: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None and image.ndim == 3 and image.shape[2] == 4
    return image


def _peaked(peak: float) -> np.ndarray:
    amap = np.full((14, 14), 0.05, np.float32)
    amap[6:8, 6:8] = peak
    return amap


def test_heatmaps_of_different_parts_share_one_scale() -> None:
    fail_at = 0.7
    faint = _decode(heatmap_png(_peaked(0.6), fail_at=fail_at))
    strong = _decode(heatmap_png(_peaked(fail_at * HEATMAP_TOP_OVER_FAIL), fail_at=fail_at))
    faint_peak, strong_peak = faint[6, 6], strong[6, 6]
    assert tuple(strong_peak[:3]) != tuple(faint_peak[:3])  # per-image min-max would paint both dark red
    assert strong_peak[3] > faint_peak[3] > faint[0, 0][3] == 0  # weak scores fade out
    assert strong_peak[2] > 100 and strong_peak[0] < 50  # the top of the scale is red (BGR)


def test_heatmap_is_smooth_at_image_resolution_with_regions_outlined() -> None:
    image = _decode(heatmap_png(_peaked(0.9), fail_at=0.7, size_hw=(224, 320), boxes=[(100, 80, 200, 150)]))
    assert image.shape[:2] == (224, 320)
    assert tuple(image[80, 150]) == (255, 255, 255, 255)  # the box's top edge
    row = image[112, 0:160, 3].astype(int)  # alpha rising towards the peak: a ramp, not 23-px blocks
    ramp = [int(a) for a in row if 0 < a < 220]
    assert len(ramp) >= 10 and len(set(ramp)) >= 0.6 * len(ramp)


def test_heatmap_size_is_capped_for_large_images() -> None:
    image = _decode(heatmap_png(_peaked(0.9), fail_at=0.7, size_hw=(2048, 4096)))
    assert max(image.shape[:2]) == 1024 and image.shape[0] == 512
