"""Defect codes for reference-inspection regions: blob features + k-nearest-neighbour vote.

The features describe what a defect does to the board, not how it looks in a resized image:
polarity (material added or missing), size, mass, fill, elongation, and the change in the
number of bright and dark connected components in the blob's neighbourhood (an open splits a
trace, a short joins two, a pin-hole opens a hole, spurious copper adds an island). The model is
a handful of standardised points learnt from labelled boxes (``training/reference.py``); numpy
only, no pickle: it lives in ``reference.json``.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

from vinspect.models.reference_spec import RegionCodes

__all__ = ["FEATURE_NAMES", "CodeTable", "classify", "region_features"]

FEATURE_NAMES = ("polarity", "log_area", "log_mass", "fill", "elongation", "d_bright", "d_dark", "on_bright")
_PAD = 4


def _components(binary: npt.NDArray[np.uint8]) -> int:
    count, _ = cv2.connectedComponents(binary, connectivity=8)
    return int(count) - 1


def region_features(
    *,
    box: tuple[int, int, int, int],
    blob: npt.NDArray[np.bool_],
    pos: npt.NDArray[np.uint8],
    neg: npt.NDArray[np.uint8],
    ref_bright: npt.NDArray[np.uint8],
    test_bright: npt.NDArray[np.uint8],
) -> list[float]:
    """Features of one blob; ``blob`` is its mask over the ``box`` crop, the rest full images.

    ``ref_bright``/``test_bright`` are 0/1 images of the reference and the registered frame
    (bright = 1); ``pos``/``neg`` the excess where the frame is brighter/darker than allowed.
    """
    x0, y0, x1, y1 = box
    p = float(pos[y0:y1, x0:x1][blob].sum())
    n = float(neg[y0:y1, x0:x1][blob].sum())
    area = float(blob.sum())
    w, h = max(x1 - x0, 1), max(y1 - y0, 1)
    h_img, w_img = ref_bright.shape
    cy0, cy1, cx0, cx1 = max(y0 - _PAD, 0), min(y1 + _PAD, h_img), max(x0 - _PAD, 0), min(x1 + _PAD, w_img)
    ref = np.ascontiguousarray(ref_bright[cy0:cy1, cx0:cx1])
    test = np.ascontiguousarray(test_bright[cy0:cy1, cx0:cx1])
    d_bright = _components(test) - _components(ref)
    d_dark = _components(1 - test) - _components(1 - ref)
    on_bright = float(ref_bright[y0:y1, x0:x1][blob].mean())
    return [
        p / max(p + n, 1e-6),
        math.log1p(area),
        math.log1p((p + n) / 255.0),
        area / (w * h),
        abs(math.log(w / h)),
        float(np.clip(d_bright, -2, 2)),
        float(np.clip(d_dark, -2, 2)),
        on_bright,
    ]


class CodeTable:
    """``RegionCodes`` as arrays, built once per loaded model."""

    def __init__(self, codes: RegionCodes) -> None:
        self.labels = codes.labels
        self.k = codes.k
        self.mean = np.asarray(codes.feature_mean, dtype=np.float64)
        self.scale = np.asarray(codes.feature_scale, dtype=np.float64)
        self.points = np.asarray(codes.points, dtype=np.float64)
        self.point_labels = np.asarray(codes.point_labels, dtype=np.int64)


def classify(features: list[float], table: CodeTable) -> tuple[str, npt.NDArray[np.float32]]:
    """The code of one region and the vote share of every label (in ``table.labels`` order)."""
    x = (np.asarray(features, dtype=np.float64) - table.mean) / table.scale
    d = np.sqrt(((table.points - x) ** 2).sum(axis=1))
    nearest = np.argsort(d)[: table.k]
    votes = np.bincount(table.point_labels[nearest], weights=1.0 / (1e-3 + d[nearest]), minlength=len(table.labels))
    probs = (votes / votes.sum()).astype(np.float32)
    return table.labels[int(np.argmax(probs))], probs
