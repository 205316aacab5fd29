"""Images of labelling sets, stored content-addressed in the data directory, and their thumbnails.

``<root>/images/<sha[:2]>/<sha><suffix>`` holds the imported bytes unchanged (``sha`` is their
SHA-256, which the labels manifest names); ``<root>/thumbs/<sha[:2]>/<sha>.jpg`` a thumbnail at
most :data:`THUMB_PX` on its long side, made once at import so that a page of thumbnails only
reads small files. No user-supplied name reaches a path. Files are written to a temporary name,
fsynced and renamed, so a set never references half a file.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from vinspect.errors import StoreError
from vinspect.files import write_atomically

__all__ = ["THUMB_PX", "LabelFiles"]

THUMB_PX = 160
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SUFFIX = re.compile(r"\.[a-z]{3,4}")


class LabelFiles:
    """The image and thumbnail files of every labelling set under one root."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, folder: str, sha256: str, suffix: str) -> Path:
        if not _SHA256.fullmatch(sha256) or not _SUFFIX.fullmatch(suffix):
            raise StoreError(f"labelling file {sha256!r}{suffix!r}: not a sha256 digest and image suffix")
        return self.root / folder / sha256[:2] / f"{sha256}{suffix}"

    def image_path(self, sha256: str, suffix: str) -> Path:
        return self._path("images", sha256, suffix)

    def thumb_path(self, sha256: str) -> Path:
        return self._path("thumbs", sha256, ".jpg")

    def put(self, data: bytes, *, sha256: str, suffix: str, pixels: npt.NDArray[np.uint8]) -> None:
        """Store an image's bytes and its thumbnail (idempotent: an existing copy is kept)."""
        path = self.image_path(sha256, suffix)
        if not path.is_file():
            _write(path, data)
        thumb = self.thumb_path(sha256)
        if not thumb.is_file():
            _write(thumb, thumbnail_jpeg(pixels))

    def read(self, sha256: str, suffix: str) -> bytes:
        try:
            return self.image_path(sha256, suffix).read_bytes()
        except OSError as exc:
            raise StoreError(f"labelling image {sha256}: cannot read ({exc.strerror or exc})") from exc


def thumbnail_jpeg(pixels: npt.NDArray[np.uint8]) -> bytes:
    """A JPEG at most THUMB_PX on its long side (RGB pixels are converted to OpenCV's BGR)."""
    h, w = pixels.shape[:2]
    scale = min(1.0, THUMB_PX / max(h, w))
    small = cv2.resize(pixels, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    if small.ndim == 3:
        small = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 80])
    if not ok:  # pragma: no cover - OpenCV encodes any 8-bit image
        raise StoreError("thumbnail: JPEG encoding failed")
    return bytes(buf)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_atomically(path, data, durable=True)
    except OSError as exc:
        raise StoreError(f"{path}: cannot write ({exc.strerror or exc})") from exc
