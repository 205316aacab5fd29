"""Region features and the kNN defect code (issue 11)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vinspect.models.reference_spec import RegionCodes
from vinspect.models.region_codes import FEATURE_NAMES, CodeTable, classify, region_features


def _features(ref: np.ndarray, test: np.ndarray) -> dict[str, float]:
    diff = (ref != test).astype(np.uint8)
    ys, xs = np.nonzero(diff)
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    blob = diff[box[1] : box[3], box[0] : box[2]] > 0
    pos = ((test > ref) * 200).astype(np.uint8)
    neg = ((test < ref) * 200).astype(np.uint8)
    values = region_features(box=box, blob=blob, pos=pos, neg=neg, ref_bright=ref, test_bright=test)
    return dict(zip(FEATURE_NAMES, values, strict=True))


@pytest.fixture
def traces() -> np.ndarray:
    ref = np.zeros((64, 64), np.uint8)
    ref[20:24, 4:60] = 1
    ref[40:44, 4:60] = 1
    return ref


def test_open_splits_a_trace_and_short_joins_two(traces: np.ndarray) -> None:
    opened = traces.copy()
    opened[19:25, 30:33] = 0
    f = _features(traces, opened)
    assert f["d_bright"] == 1 and f["polarity"] == 0.0 and f["on_bright"] == 1.0
    shorted = traces.copy()
    shorted[24:40, 30:33] = 1
    f = _features(traces, shorted)
    assert f["d_bright"] == -1 and f["polarity"] == 1.0 and f["on_bright"] == 0.0


def test_pin_hole_opens_a_hole_and_copper_adds_an_island(traces: np.ndarray) -> None:
    pad = traces.copy()
    pad[4:16, 4:16] = 1
    holed = pad.copy()
    holed[9:11, 9:11] = 0
    assert _features(pad, holed)["d_dark"] == 1
    island = traces.copy()
    cv2.circle(island, (30, 52), 2, 1, -1)
    assert _features(traces, island)["d_bright"] == 1


def test_knn_votes_for_the_nearest_labelled_points() -> None:
    codes = RegionCodes(
        labels=("open", "short"),
        feature_mean=(0.0, 0.0),
        feature_scale=(1.0, 1.0),
        points=((0.0, 0.0), (0.1, 0.0), (5.0, 5.0), (5.1, 5.0), (5.0, 5.1)),
        point_labels=(0, 0, 1, 1, 1),
        k=3,
    )
    label, probs = classify([4.9, 5.0], CodeTable(codes))
    assert label == "short" and probs[1] > 0.9
    assert classify([0.05, 0.0], CodeTable(codes))[0] == "open"
