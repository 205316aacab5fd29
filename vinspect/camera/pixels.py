"""PFNC pixel formats to owned numpy images, with row padding stripped.

:func:`convert` takes the raw bytes of one image as the producer delivered them (rows of
``row_bytes(format, width) + x_padding_bytes``) and returns a new, read-only array with exactly
one copy out of the input:

| input (PFNC)                                   | output               | delivered format |
| ---------------------------------------------- | -------------------- | ---------------- |
| Mono8                                          | uint8 H×W            | Mono8            |
| Mono10, Mono12, Mono16 (unpacked, LE)          | uint16 H×W           | same name        |
| Mono12p (LSB-first), Mono12Packed (GigE)       | uint16 H×W           | Mono12           |
| RGB8, BGR8, RGBa8                              | uint8 H×W×3, RGB     | RGB8             |
| Bayer{RG,GR,GB,BG}8                            | uint8 H×W×3, RGB     | RGB8             |
| Bayer{RG,GR,GB,BG}{10,12,16} (unpacked, LE)    | uint16 H×W×3, RGB    | RGB10/12/16      |

``x_padding_bytes`` is GenTL's ``BUFFER_INFO_PADDING_X``: bytes at the end of each line
(harvesters' docstring says pixels; the GenTL standard says bytes, and so do we).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from vinspect.errors import CameraError

__all__ = ["SUPPORTED_FORMATS", "ConvertedImage", "PixelFormatError", "convert", "row_bytes"]

Image = npt.NDArray[np.uint8] | npt.NDArray[np.uint16]


class PixelFormatError(CameraError):
    """A pixel format we cannot convert, or a buffer too small for the declared geometry."""


@dataclass(frozen=True, slots=True)
class _Layout:
    bits_per_pixel: int  # in the buffer, per pixel (12 for the packed 12-bit formats)
    kind: str  # mono8 | mono16 | packed12p | packed12gev | rgb | bgr | rgba | bayer8 | bayer16
    delivered: str
    bayer: str = ""  # the 2x2 pattern (RG, GR, GB, BG) of a Bayer format


# OpenCV >= 4.8 names Bayer conversions by the 2x2 pattern read from the top-left pixel, as PFNC
# does (BayerRG8 = R G / G B). The older two-letter constants are shifted by one pixel.
_BAYER_CODES = {
    "RG": cv2.COLOR_BayerRGGB2RGB,
    "GR": cv2.COLOR_BayerGRBG2RGB,
    "GB": cv2.COLOR_BayerGBRG2RGB,
    "BG": cv2.COLOR_BayerBGGR2RGB,
}


def _build_layouts() -> dict[str, _Layout]:
    layouts = {
        "Mono8": _Layout(8, "mono8", "Mono8"),
        "Mono10": _Layout(16, "mono16", "Mono10"),
        "Mono12": _Layout(16, "mono16", "Mono12"),
        "Mono16": _Layout(16, "mono16", "Mono16"),
        "Mono12p": _Layout(12, "packed12p", "Mono12"),
        "Mono12Packed": _Layout(12, "packed12gev", "Mono12"),
        "RGB8": _Layout(24, "rgb", "RGB8"),
        "BGR8": _Layout(24, "bgr", "RGB8"),
        "RGBa8": _Layout(32, "rgba", "RGB8"),
    }
    for order in _BAYER_CODES:
        layouts[f"Bayer{order}8"] = _Layout(8, "bayer8", "RGB8", order)
        for bits in (10, 12, 16):
            layouts[f"Bayer{order}{bits}"] = _Layout(16, "bayer16", f"RGB{bits}", order)
    return layouts


_LAYOUTS = _build_layouts()
SUPPORTED_FORMATS = frozenset(_LAYOUTS)


@dataclass(frozen=True, slots=True)
class ConvertedImage:
    """An owned, read-only image and the PFNC name of what it now holds."""

    image: Image
    pixel_format: str


def row_bytes(pixel_format: str, width: int) -> int:
    """Bytes of image data in one line of ``width`` pixels, padding excluded.

    Raises:
        PixelFormatError: unknown format, or a packed 12-bit line that ends mid-byte.
    """
    bits = _layout(pixel_format).bits_per_pixel * width
    if bits % 8:
        raise PixelFormatError(f"{pixel_format}: a line of {width} px is not a whole number of bytes")
    return bits // 8


def convert(
    data: npt.NDArray[np.uint8] | bytes | memoryview,
    *,
    pixel_format: str,
    width: int,
    height: int,
    x_padding_bytes: int = 0,
) -> ConvertedImage:
    """Copy one raw image out of ``data``, dropping line padding, into the delivered format.

    Args:
        data: The raw buffer (at least ``height`` padded lines; extra trailing bytes ignored).
        pixel_format: PFNC name of the raw data (see the module table).
        width: Pixels per line.
        height: Lines.
        x_padding_bytes: Padding bytes at the end of every line.

    Returns:
        A new, read-only array (never a view of ``data``) and its PFNC format.

    Raises:
        PixelFormatError: unsupported format, bad geometry, or ``data`` too short.
    """
    layout = _layout(pixel_format)
    if width <= 0 or height <= 0 or x_padding_bytes < 0:
        raise PixelFormatError(f"{pixel_format}: bad geometry {width}x{height}, padding {x_padding_bytes} B")
    raw = data.reshape(-1).view(np.uint8) if isinstance(data, np.ndarray) else np.frombuffer(data, np.uint8)
    image: Image
    if layout.bits_per_pixel == 12 and x_padding_bytes == 0:
        unpacked = _unpack12(_flat(raw, count=(width * height * 3 + 1) // 2, pixel_format=pixel_format), layout.kind)
        image = unpacked[: width * height].reshape(height, width)
    else:
        rows = _rows(raw, line=row_bytes(pixel_format, width), height=height, padding=x_padding_bytes)
        image = _from_rows(rows, layout=layout, width=width)
    image.flags.writeable = False
    return ConvertedImage(image=image, pixel_format=layout.delivered)


def _layout(pixel_format: str) -> _Layout:
    try:
        return _LAYOUTS[pixel_format]
    except KeyError:
        raise PixelFormatError(
            f"unsupported pixel format {pixel_format!r}; supported: {', '.join(sorted(_LAYOUTS))}"
        ) from None


def _flat(raw: npt.NDArray[np.uint8], *, count: int, pixel_format: str) -> npt.NDArray[np.uint8]:
    if raw.size < count:
        raise PixelFormatError(f"{pixel_format}: buffer holds {raw.size} B, image needs {count} B")
    return raw[:count]


def _rows(raw: npt.NDArray[np.uint8], *, line: int, height: int, padding: int) -> npt.NDArray[np.uint8]:
    """A (height, line) view of the data bytes of every line: padding is skipped, not copied."""
    stride = line + padding
    needed = stride * (height - 1) + line  # the last line's padding may be absent
    if raw.size < needed:
        raise PixelFormatError(f"buffer holds {raw.size} B, {height} lines of {line}+{padding} B need {needed} B")
    return np.lib.stride_tricks.as_strided(raw, shape=(height, line), strides=(stride, 1), writeable=False)


def _from_rows(rows: npt.NDArray[np.uint8], *, layout: _Layout, width: int) -> Image:
    height = rows.shape[0]
    kind = layout.kind
    if kind == "mono8":
        return np.array(rows, copy=True)
    if kind in ("mono16", "bayer16"):
        words = np.array(rows, copy=True).view("<u2").astype(np.uint16, copy=False)
        return _demosaic(words, layout) if kind == "bayer16" else words
    if kind == "bayer8":
        return _demosaic(rows, layout)
    if kind in ("packed12p", "packed12gev"):
        if width % 2:
            raise PixelFormatError(f"{layout.delivered}: packed 12-bit lines with padding need an even width")
        return _unpack12(rows.reshape(-1), kind).reshape(height, width)
    channels = rows.reshape(height, width, 4 if kind == "rgba" else 3)
    if kind == "rgb":
        return np.array(channels, copy=True)
    # OpenCV's SIMD channel shuffles are ~50x faster than numpy's strided copies here.
    code = cv2.COLOR_BGR2RGB if kind == "bgr" else cv2.COLOR_RGBA2RGB
    out: npt.NDArray[np.uint8] = cv2.cvtColor(channels, code)  # type: ignore[assignment]
    return out


def _demosaic(mosaic: Image, layout: _Layout) -> Image:
    out: Image = cv2.cvtColor(np.ascontiguousarray(mosaic), _BAYER_CODES[layout.bayer])  # type: ignore[assignment]
    return out


def _unpack12(packed: npt.NDArray[np.uint8], kind: str) -> npt.NDArray[np.uint16]:
    """Two pixels from every three bytes (PFNC Mono12p, or GigE Vision Mono12Packed)."""
    usable = packed.size - packed.size % 3
    triplets = packed[:usable].reshape(-1, 3).astype(np.uint16)
    b0, b1, b2 = triplets[:, 0], triplets[:, 1], triplets[:, 2]
    out = np.empty((triplets.shape[0], 2), dtype=np.uint16)
    if kind == "packed12p":  # p0 = b0 | (b1 & 0xF) << 8, p1 = b1 >> 4 | b2 << 4
        out[:, 0] = b0 | (b1 & 0xF) << 8
        out[:, 1] = (b1 >> 4) | (b2 << 4)
    else:  # Mono12Packed: p0 = b0 << 4 | (b1 & 0xF), p1 = b2 << 4 | b1 >> 4
        out[:, 0] = (b0 << 4) | (b1 & 0xF)
        out[:, 1] = (b2 << 4) | (b1 >> 4)
    flat = out.reshape(-1)
    if packed.size % 3:  # an odd pixel count leaves one pixel in the last byte and a half
        tail = packed[usable:].astype(np.uint16)
        last = tail[0] | (tail[1] & 0xF) << 8 if kind == "packed12p" else (tail[0] << 4) | (tail[1] & 0xF)
        flat = np.append(flat, np.uint16(last))
    return flat
