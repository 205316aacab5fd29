"""Safe image decoding for datasets, `vinspect inspect` and replay sources.

Images are checked before their pixels are decoded: the header's size must stay under
``MAX_PIXELS`` (a decompression bomb never allocates), and only 8-bit greyscale or 8-bit colour
images are accepted. Everything else raises :class:`ImageDecodeError` naming the file and the
problem. Decoding uses Pillow, which reads every format we allow (PNG, JPEG, BMP, TIFF).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from vinspect.errors import ImageDecodeError

__all__ = ["IMAGE_SUFFIXES", "MAX_PIXELS", "decode_image", "read_image"]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
MAX_PIXELS = 1 << 26  # 64 Mpx: larger than any line-scan tile we expect, far below a bomb
MAX_FILE_BYTES = 256 << 20
_FORMATS = ("PNG", "JPEG", "BMP", "TIFF")
_MODES_8BIT = {"L": 1, "RGB": 3, "P": 3, "1": 1}


def read_image(path: Path) -> npt.NDArray[np.uint8]:
    """Read an 8-bit greyscale (H×W) or RGB (H×W×3) image file.

    Raises:
        ImageDecodeError: the file is missing, empty, too large, truncated, corrupt, not an
            allowed format, 16-bit, or has an alpha/extra channel.
    """
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageDecodeError(f"{path}: cannot read file ({exc.strerror or exc})") from exc
    if size == 0:
        raise ImageDecodeError(f"{path}: empty file (0 bytes)")
    if size > MAX_FILE_BYTES:
        raise ImageDecodeError(f"{path}: file is {size} bytes, over the {MAX_FILE_BYTES}-byte limit")
    return decode_image(path.read_bytes(), name=str(path))


def decode_image(data: bytes, *, name: str) -> npt.NDArray[np.uint8]:
    """Decode image bytes; ``name`` is used in error messages. See :func:`read_image`."""
    if not data:
        raise ImageDecodeError(f"{name}: empty file (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=_FORMATS) as img:
                _check_header(img, name)
                img.load()
                return _to_array(img, name)
        except ImageDecodeError:
            raise
        except UnidentifiedImageError as exc:
            raise ImageDecodeError(f"{name}: not a PNG, JPEG, BMP or TIFF image") from exc
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageDecodeError(f"{name}: image header declares too many pixels ({exc})") from exc
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise ImageDecodeError(f"{name}: corrupt or truncated image ({exc})") from exc


def _check_header(img: Image.Image, name: str) -> None:
    width, height = img.size
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"{name}: image has no pixels ({width}x{height})")
    if width * height > MAX_PIXELS:
        raise ImageDecodeError(
            f"{name}: image header declares {width}x{height} = {width * height} pixels, "
            f"over the {MAX_PIXELS}-pixel limit (decompression bomb?)"
        )
    if img.mode not in _MODES_8BIT:
        raise ImageDecodeError(f"{name}: unsupported pixel mode {img.mode!r}: {_mode_advice(img.mode)}")


def _mode_advice(mode: str) -> str:
    if mode.startswith("I;16") or mode in {"I", "F"}:
        return "16-bit or float image; vinspect models take 8-bit pixels, convert it to 8-bit first"
    if mode in {"RGBA", "LA", "PA", "RGBa", "La"}:
        return "image has an alpha channel (4 channels); save it as 8-bit greyscale or RGB"
    return "only 8-bit greyscale (L) and RGB images are supported"


def _to_array(img: Image.Image, name: str) -> npt.NDArray[np.uint8]:
    if img.mode == "P":
        if "transparency" in img.info:
            raise ImageDecodeError(f"{name}: palette image with transparency; save it as greyscale or RGB")
        img = img.convert("RGB")
    elif img.mode == "1":
        img = img.convert("L")
    array = np.asarray(img, dtype=np.uint8)
    if array.ndim == 3 and array.shape[2] != 3:
        raise ImageDecodeError(f"{name}: {array.shape[2]} channels; expected 1 or 3")
    out = np.ascontiguousarray(array)
    out.flags.writeable = False
    return out
