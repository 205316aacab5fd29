"""Bad image input gets a clear error naming the file and the problem (issue 2)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from vinspect.dataset.images import decode_image, read_image
from vinspect.errors import ImageDecodeError


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def test_read_image_greyscale_and_rgb_ok(tmp_path: Path) -> None:
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    cv2.imwrite(str(tmp_path / "g.png"), grey)
    Image.fromarray(np.dstack([grey] * 3)).save(tmp_path / "c.png")
    g, c = read_image(tmp_path / "g.png"), read_image(tmp_path / "c.png")
    assert g.shape == (8, 8) and np.array_equal(g, grey)
    assert c.shape == (8, 8, 3) and not c.flags.writeable


@pytest.mark.parametrize(
    ("name", "make", "needle"),
    [
        ("empty.png", lambda p: p.write_bytes(b""), "empty file"),
        ("text.png", lambda p: p.write_text("not an image"), "not a PNG, JPEG"),
        ("trunc.png", lambda p: p.write_bytes(_valid_png_bytes()[:60]), "corrupt or truncated"),
        ("deep.png", lambda p: cv2.imwrite(str(p), np.zeros((8, 8), np.uint16) + 4000), "16-bit"),
        ("rgba.png", lambda p: Image.new("RGBA", (8, 8)).save(p), "alpha channel"),
        ("bomb.png", lambda p: p.write_bytes(_png_header_only(65535, 65535)), "decompression bomb"),
        ("missing.png", lambda p: None, "cannot read file"),
    ],
)
def test_read_image_bad_input_names_file_and_problem(tmp_path: Path, name: str, make, needle: str) -> None:
    path = tmp_path / name
    make(path)
    with pytest.raises(ImageDecodeError) as info:
        read_image(path)
    assert str(path) in str(info.value)
    assert needle in str(info.value)


def _valid_png_bytes() -> bytes:
    ok, buf = cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    assert ok
    return bytes(buf)


def test_decode_image_truncated_jpeg_is_an_error() -> None:
    ok, buf = cv2.imencode(".jpg", np.full((64, 64), 128, np.uint8))
    assert ok
    with pytest.raises(ImageDecodeError, match=r"upload\.jpg"):
        decode_image(bytes(buf)[:100], name="upload.jpg")
