"""One heatmap colour scale (issue 15): the report/compare/inspect overlays and the NCR evidence
heatmaps colour a score the same way, with the threshold mid-scale."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vinspect.imaging import HEAT_LOW_OVER_LEVEL, HEAT_TOP_OVER_LEVEL, heat_colours, heat_fraction
from vinspect.report.overlay import render_overlay
from vinspect.store.evidence import heatmap_png
from vinspect.types import Prediction


def _jet(level: int) -> tuple[int, int, int]:
    bgr = cv2.applyColorMap(np.array([[level]], np.uint8), cv2.COLORMAP_JET)[0, 0]
    return int(bgr[0]), int(bgr[1]), int(bgr[2])


def test_the_threshold_sits_mid_scale_and_the_ends_are_fixed() -> None:
    level = 0.4
    amap = np.array([[0.0, HEAT_LOW_OVER_LEVEL * level, level, HEAT_TOP_OVER_LEVEL * level, 9.0]], np.float32)
    assert heat_fraction(amap, level=level)[0].tolist() == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.0])


def test_without_a_level_the_map_is_scaled_by_its_own_range_and_nan_counts_as_zero() -> None:
    amap = np.array([[np.nan, 2.0, 4.0]], np.float32)
    assert heat_fraction(amap, level=None)[0].tolist() == pytest.approx([0.0, 0.5, 1.0])
    assert heat_fraction(np.full((2, 2), 3.0, np.float32), level=0.0).tolist() == [[0.0, 0.0], [0.0, 0.0]]


@pytest.mark.parametrize("over_level", [HEAT_LOW_OVER_LEVEL, 1.0, HEAT_TOP_OVER_LEVEL])
def test_overlay_and_evidence_paint_one_score_one_colour(over_level: float) -> None:
    level = 0.6
    amap = np.full((8, 8), over_level * level, np.float32)
    evidence = cv2.imdecode(np.frombuffer(heatmap_png(amap, fail_at=level), np.uint8), cv2.IMREAD_UNCHANGED)
    alpha = 0.45
    overlay = render_overlay(
        np.zeros((8, 8), np.uint8), Prediction(score=0.5, anomaly_map=amap), level=level, alpha=alpha
    )  # over black, the overlay is alpha x the heat colour
    expected = _jet(round((over_level - HEAT_LOW_OVER_LEVEL) / (HEAT_TOP_OVER_LEVEL - HEAT_LOW_OVER_LEVEL) * 255))
    assert tuple(int(c) for c in evidence[4, 4, :3]) == expected
    assert tuple(int(c) for c in overlay[4, 4]) == pytest.approx(tuple(alpha * c for c in expected), abs=1)
    assert tuple(int(c) for c in heat_colours(np.full((1, 1), 0.5, np.float32))[0, 0]) == _jet(128)
