"""Image encodings every layer shares (numpy + OpenCV): the one lossless PNG encoder and the one
heatmap colour scale.

Stored evidence, capture datasets, the HTML report and the inspect command's overlays all encode
through :func:`encode_png`, so every PNG vinspect writes uses the same settings. Every heatmap
(the NCR evidence the reviewer sees, the report/compare/inspect overlays) colours an anomaly map
through :func:`heat_fraction` and :func:`heat_colours`: the scale runs from
``HEAT_LOW_OVER_LEVEL`` to ``HEAT_TOP_OVER_LEVEL`` times the threshold, so the threshold sits
mid-scale and the same colour is the same score in every picture.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

__all__ = ["HEAT_LOW_OVER_LEVEL", "HEAT_TOP_OVER_LEVEL", "PNG_PARAMS", "encode_png", "heat_colours", "heat_fraction"]

# Lossless either way. Camera frames are mostly sensor texture, where deflate's match search
# buys almost nothing: the "up" filter with Huffman-only coding encodes 2.5-3x faster than
# level-1 deflate with adaptive filters and, on the magnetic-tile images, gives 11 % smaller
# files (0.557 vs 0.628 bytes/px; see bench/results/store.json for the line-rate effect).
PNG_PARAMS = [
    cv2.IMWRITE_PNG_COMPRESSION,
    1,
    cv2.IMWRITE_PNG_FILTER,
    cv2.IMWRITE_PNG_FILTER_UP,
    cv2.IMWRITE_PNG_STRATEGY,
    cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY,
]


def encode_png(image: npt.NDArray[Any], *, pixel_format: str = "Mono8") -> bytes:
    """Lossless PNG of an image: greyscale, BGR(A) as OpenCV holds it, or an RGB frame
    (``pixel_format`` ``RGB...``), which is written in true colour.

    Raises:
        ValueError: OpenCV cannot encode this array (shape or dtype).
    """
    pixels: npt.NDArray[Any] = np.ascontiguousarray(image)
    if pixels.ndim == 3 and pixels.shape[2] == 3 and pixel_format.upper().startswith("RGB"):
        pixels = np.asarray(cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
    ok, buffer = cv2.imencode(".png", pixels, PNG_PARAMS)
    if not ok:
        raise ValueError(f"cannot encode a {pixels.shape} {pixels.dtype} image as PNG")
    return bytes(buffer)


HEAT_LOW_OVER_LEVEL = 0.5  # the colour scale runs from 0.5 x to 1.5 x the threshold, so the threshold
HEAT_TOP_OVER_LEVEL = 1.5  # sits mid-scale (the reviewer UI's legend reads the same constants)


def heat_fraction(anomaly_map: npt.NDArray[Any], *, level: float | None) -> npt.NDArray[np.float32]:
    """Where each value of an anomaly map sits on the heatmap colour scale, 0 to 1 (float32).

    With a finite positive ``level`` (the threshold the picture is judged against) the scale is
    fixed, ``HEAT_LOW_OVER_LEVEL`` to ``HEAT_TOP_OVER_LEVEL`` times ``level``, so maps of different
    parts compare; without one, the map's own min-max. A ``(1, H, W)`` map is read as ``(H, W)``;
    NaN and infinities count as zero; an empty map gives one zero pixel.
    """
    values = np.nan_to_num(np.asarray(anomaly_map, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if values.ndim == 3:
        values = values.reshape(values.shape[-2], values.shape[-1])
    if values.size == 0:
        values = np.zeros((1, 1), np.float32)
    if level is not None and math.isfinite(level) and level > 0:
        low, high = HEAT_LOW_OVER_LEVEL * level, HEAT_TOP_OVER_LEVEL * level
    else:
        low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, np.float32)
    return np.asarray(np.clip((values - low) / (high - low), 0.0, 1.0), dtype=np.float32)


def heat_colours(fraction: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    """BGR colours (OpenCV's JET) of :func:`heat_fraction` values: blue at 0, red at 1."""
    levels = np.round(np.clip(fraction, 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.asarray(cv2.applyColorMap(levels, cv2.COLORMAP_JET), dtype=np.uint8)
