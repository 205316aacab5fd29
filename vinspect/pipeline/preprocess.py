"""Frame pixels -> the graph's uint8 ``image`` input. Pure.

Resizing and normalisation live inside the ONNX graph (one place, so exported and trained models
score alike); this step only adapts the pixel container: channel count to the model's, deeper
camera formats down to 8 bits by their declared bit depth.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from vinspect.errors import ModelError
from vinspect.models.manifest import InputSpec

__all__ = ["to_model_input"]

_BITS = {"Mono10": 10, "Mono12": 12, "Mono14": 14, "Mono16": 16, "Mono12p": 12, "Mono12Packed": 12}


def to_model_input(
    image: npt.NDArray[np.uint8] | npt.NDArray[np.uint16], *, spec: InputSpec, pixel_format: str = "Mono8"
) -> npt.NDArray[np.uint8]:
    """Return a contiguous H×W×C uint8 array with ``C == spec.channels``.

    Raises:
        ModelError: the image shape or size cannot be fed to the model.
    """
    if image.ndim not in (2, 3) or image.size == 0:
        raise ModelError(f"image of shape {image.shape} cannot be inspected (expected H×W or H×W×C)")
    if max(image.shape[:2]) > spec.max_side_px:
        raise ModelError(f"image {image.shape[1]}x{image.shape[0]} exceeds the model's {spec.max_side_px}px limit")
    pixels = _to_uint8(image, pixel_format)
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        pixels = pixels[:, :, :3]
    if pixels.ndim == 3 and pixels.shape[2] not in (1, 3):
        raise ModelError(f"image has {pixels.shape[2]} channels; expected 1, 3 or 4")
    if spec.channels == 1:
        if pixels.ndim == 3 and pixels.shape[2] == 3:
            pixels = np.asarray(cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2GRAY), dtype=np.uint8)
        pixels = pixels.reshape(pixels.shape[0], pixels.shape[1], 1)
    elif pixels.ndim == 2 or pixels.shape[2] == 1:
        pixels = np.repeat(pixels.reshape(pixels.shape[0], pixels.shape[1], 1), 3, axis=2)
    return np.ascontiguousarray(pixels, dtype=np.uint8)


def _to_uint8(image: npt.NDArray[np.uint8] | npt.NDArray[np.uint16], pixel_format: str) -> npt.NDArray[np.uint8]:
    if image.dtype == np.uint8:
        return image.astype(np.uint8, copy=False)
    if image.dtype != np.uint16:
        raise ModelError(f"pixel dtype {image.dtype} is not supported (uint8 or uint16)")
    bits = _BITS.get(pixel_format, 16)
    return (image >> (bits - 8)).clip(0, 255).astype(np.uint8)
