"""Image encodings every layer shares (numpy + OpenCV): the one lossless PNG encoder.

Stored evidence, the HTML report and the inspect command's overlays all encode through
:func:`encode_png`, so every PNG vinspect writes uses the same settings.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

__all__ = ["PNG_PARAMS", "encode_png"]

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
