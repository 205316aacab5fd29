"""Pixel-format conversion and padding removal on hand-built buffers (issue #3)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from vinspect.camera.pixels import PixelFormatError, convert, row_bytes


def _padded(rows: npt.NDArray[np.uint8], pad: int) -> bytes:
    """Append ``pad`` bytes of 0xEE to every line, as a producer with line padding does."""
    filler = np.full((rows.shape[0], pad), 0xEE, dtype=np.uint8)
    return np.hstack([rows, filler]).tobytes()


def _pack12p(pixels: npt.NDArray[np.uint16]) -> bytes:
    p0, p1 = pixels[0::2].astype(np.uint32), pixels[1::2].astype(np.uint32)
    out = np.stack([p0 & 0xFF, (p0 >> 8) | ((p1 & 0xF) << 4), p1 >> 4], axis=1)
    return out.astype(np.uint8).tobytes()


def _pack12_gev(pixels: npt.NDArray[np.uint16]) -> bytes:
    p0, p1 = pixels[0::2].astype(np.uint32), pixels[1::2].astype(np.uint32)
    out = np.stack([p0 >> 4, (p0 & 0xF) | ((p1 & 0xF) << 4), p1 >> 4], axis=1)
    return out.astype(np.uint8).tobytes()


@pytest.mark.parametrize("pad", [0, 1, 7, 64])
def test_convert_mono8_strips_padding_into_owned_readonly_copy(pad: int) -> None:
    image = np.arange(6 * 10, dtype=np.uint8).reshape(6, 10)
    raw = np.frombuffer(_padded(image, pad), dtype=np.uint8)
    out = convert(raw, pixel_format="Mono8", width=10, height=6, x_padding_bytes=pad)
    assert out.pixel_format == "Mono8"
    np.testing.assert_array_equal(out.image, image)
    assert not out.image.flags.writeable
    assert not np.shares_memory(out.image, raw)


def test_convert_padding_is_counted_in_bytes_not_pixels() -> None:
    """GenTL BUFFER_INFO_PADDING_X is bytes per line: 2 bytes after 4 RGB8 pixels (12 bytes)."""
    rgb = np.arange(3 * 4 * 3, dtype=np.uint8).reshape(3, 4, 3)
    raw = _padded(rgb.reshape(3, 12), 2)
    assert len(raw) == 3 * 14
    out = convert(raw, pixel_format="RGB8", width=4, height=3, x_padding_bytes=2)
    np.testing.assert_array_equal(out.image, rgb)


def test_convert_accepts_a_buffer_without_the_last_lines_padding() -> None:
    image = np.arange(12, dtype=np.uint8).reshape(3, 4)
    raw = _padded(image, 4)[:-4]
    np.testing.assert_array_equal(convert(raw, pixel_format="Mono8", width=4, height=3, x_padding_bytes=4).image, image)


@pytest.mark.parametrize(("fmt", "bits"), [("Mono10", 10), ("Mono12", 12), ("Mono16", 16)])
@pytest.mark.parametrize("pad", [0, 6])
def test_convert_unpacked_mono16_keeps_values_little_endian(fmt: str, bits: int, pad: int) -> None:
    rng = np.random.default_rng(bits)
    image = rng.integers(0, 1 << bits, size=(5, 7), dtype=np.uint16)
    raw = _padded(image.astype("<u2").view(np.uint8).reshape(5, 14), pad)
    out = convert(raw, pixel_format=fmt, width=7, height=5, x_padding_bytes=pad)
    assert out.pixel_format == fmt
    assert out.image.dtype == np.uint16
    np.testing.assert_array_equal(out.image, image)


@pytest.mark.parametrize(
    ("fmt", "packed"),
    [("Mono12p", bytes([0x23, 0x61, 0x45])), ("Mono12Packed", bytes([0x12, 0x63, 0x45]))],
)
def test_convert_packed12_matches_spec_vectors(fmt: str, packed: bytes) -> None:
    """PFNC Mono12p and GigE Vision Mono12Packed layouts of the pixel pair 0x123, 0x456."""
    out = convert(packed, pixel_format=fmt, width=2, height=1)
    assert out.pixel_format == "Mono12"
    assert out.image.tolist() == [[0x123, 0x456]]


@pytest.mark.parametrize(("fmt", "pack"), [("Mono12p", _pack12p), ("Mono12Packed", _pack12_gev)])
@pytest.mark.parametrize("pad", [0, 5])
def test_convert_packed12_round_trips_random_images(fmt: str, pack: object, pad: int) -> None:
    rng = np.random.default_rng(12)
    image = rng.integers(0, 4096, size=(4, 8), dtype=np.uint16)
    lines = np.frombuffer(b"".join(pack(row) for row in image), dtype=np.uint8).reshape(4, 12)  # type: ignore[operator]
    out = convert(_padded(lines, pad), pixel_format=fmt, width=8, height=4, x_padding_bytes=pad)
    np.testing.assert_array_equal(out.image, image)


def test_convert_mono12p_odd_pixel_count_without_padding() -> None:
    image = np.array([[0x123, 0x456, 0x789]], dtype=np.uint16)
    packed = _pack12p(np.append(image.ravel(), np.uint16(0)))[:5]  # 3 px = 4.5 bytes, rounded up
    np.testing.assert_array_equal(convert(packed, pixel_format="Mono12p", width=3, height=1).image, image)


@pytest.mark.parametrize("pad", [0, 5])
def test_convert_rgb8_bgr8_rgba8_deliver_rgb(pad: int) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, size=(3, 5, 3), dtype=np.uint8)
    rgba = np.concatenate([rgb, np.full((3, 5, 1), 99, np.uint8)], axis=2)
    cases = {"RGB8": rgb, "BGR8": rgb[..., ::-1], "RGBa8": rgba}
    for fmt, source in cases.items():
        lines = np.ascontiguousarray(source).reshape(3, -1)
        out = convert(_padded(lines, pad), pixel_format=fmt, width=5, height=3, x_padding_bytes=pad)
        assert out.pixel_format == "RGB8", fmt
        assert out.image.shape == (3, 5, 3) and out.image.flags.c_contiguous
        np.testing.assert_array_equal(out.image, rgb, err_msg=fmt)


def _mosaic(rgb: tuple[int, int, int], order: str, *, shape: tuple[int, int], dtype: type) -> npt.NDArray[np.generic]:
    """A Bayer mosaic of a flat colour: ``order`` is the 2x2 pattern read from the top left."""
    value = dict(zip("RGB", rgb, strict=True))
    mosaic = np.empty(shape, dtype=dtype)
    pattern = [order[0:2], order[2:4]]
    for dy in range(2):
        for dx in range(2):
            mosaic[dy::2, dx::2] = value[pattern[dy][dx]]
    return mosaic


@pytest.mark.parametrize("order", ["RG", "GR", "GB", "BG"])
@pytest.mark.parametrize(("bits", "colour"), [(8, (200, 100, 30)), (12, (4000, 1500, 90)), (16, (60000, 20000, 7))])
def test_convert_bayer_round_trips_a_flat_colour(order: str, bits: int, colour: tuple[int, int, int]) -> None:
    full = {"RG": "RGGB", "GR": "GRBG", "GB": "GBRG", "BG": "BGGR"}[order]
    dtype = np.uint8 if bits == 8 else np.uint16
    mosaic = _mosaic(colour, full, shape=(8, 10), dtype=dtype)
    raw = mosaic.astype("<u2").tobytes() if bits > 8 else mosaic.tobytes()
    out = convert(raw, pixel_format=f"Bayer{order}{bits}", width=10, height=8)
    assert out.pixel_format == f"RGB{bits}"
    assert out.image.shape == (8, 10, 3) and out.image.dtype == dtype
    np.testing.assert_array_equal(out.image[2:-2, 2:-2], np.broadcast_to(np.array(colour, dtype), (4, 6, 3)))


def test_convert_bayer_with_padding() -> None:
    mosaic = _mosaic((10, 20, 30), "RGGB", shape=(6, 8), dtype=np.uint8)
    out = convert(_padded(mosaic, 3), pixel_format="BayerRG8", width=8, height=6, x_padding_bytes=3)
    assert out.image[3, 3].tolist() == [10, 20, 30]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pixel_format": "YUV422_8", "width": 2, "height": 2}, "unsupported pixel format"),
        ({"pixel_format": "Mono8", "width": 4, "height": 4}, "buffer holds"),
        ({"pixel_format": "Mono8", "width": 0, "height": 4}, "bad geometry"),
        ({"pixel_format": "Mono12p", "width": 3, "height": 2, "x_padding_bytes": 2}, "whole number of bytes"),
    ],
)
def test_convert_rejects_bad_input_with_clear_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(PixelFormatError, match=message):
        convert(bytes(10), **kwargs)  # type: ignore[arg-type]


def test_row_bytes_per_format() -> None:
    assert [row_bytes(f, 8) for f in ("Mono8", "Mono16", "Mono12p", "RGB8", "RGBa8", "BayerGB12")] == [
        8,
        16,
        12,
        24,
        32,
        16,
    ]
