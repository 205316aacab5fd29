"""Record frames into a class-folder dataset: how quality engineers collect good parts.

``capture_frames`` writes each frame to ``<out>/<label>/<stem>.png`` (written to a temporary name
and renamed, so a dataset never holds half an image) and appends one row per image to
``<out>/capture.csv`` (:data:`MANIFEST_COLUMNS`), flushed per row. The manifest keeps each
frame's origin: images from a replay or ``genicam+replay`` source are recorded as such, never as
camera pixels, and ``ReplaySource`` replays a capture folder in its recorded order and timing.
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from vinspect.camera.base import FrameSource
from vinspect.errors import CameraError
from vinspect.files import write_atomically
from vinspect.imaging import encode_png
from vinspect.types import Frame

__all__ = ["MANIFEST_COLUMNS", "MANIFEST_NAME", "CaptureSummary", "capture_frames", "write_png"]

logger = logging.getLogger(__name__)

MANIFEST_NAME = "capture.csv"
MANIFEST_COLUMNS = ("file", "part_id", "captured_at", "frame_id", "source_id", "origin", "pixel_format")


@dataclass(frozen=True, slots=True, kw_only=True)
class CaptureSummary:
    """What a capture run wrote, and every fault it saw on the way."""

    out: Path
    saved: int
    faults: Mapping[str, int] = field(default_factory=dict)
    exhausted: bool = False


def write_png(path: Path, frame: Frame) -> None:
    """Write the frame's pixels losslessly (8- or 16-bit PNG, the one encoder of
    :mod:`vinspect.imaging`), atomically (:func:`vinspect.files.write_atomically`, not fsynced:
    a capture that a power cut interrupts is re-run, but a dataset never holds half an image).

    Raises:
        CameraError: the image cannot be encoded or written.
    """
    try:
        encoded = encode_png(frame.image, pixel_format=frame.pixel_format)
    except ValueError as exc:
        raise CameraError(f"{path}: cannot encode frame {frame.frame_id} ({frame.pixel_format}) as PNG") from exc
    try:
        write_atomically(path, encoded, durable=False)
    except OSError as exc:
        raise CameraError(f"{path}: cannot write image ({exc.strerror or exc})") from exc


def capture_frames(
    source: FrameSource,
    *,
    out: Path,
    count: int,
    label: str = "good",
    timeout_s: float = 1.0,
    max_consecutive_faults: int = 50,
    progress: bool = True,
) -> CaptureSummary:
    """Save ``count`` frames from an open ``source`` under ``out/label``.

    Args:
        source: An entered source.
        out: Dataset root (created if missing); an existing manifest is appended to.
        count: Images to save.
        label: Class folder for the images.
        timeout_s: Per-read timeout.
        max_consecutive_faults: Give up after this many faults in a row.
        progress: Show a tqdm progress bar on stderr.

    Returns:
        What was saved; ``exhausted`` when a finite source ended early.

    Raises:
        CameraError: too many consecutive faults, or an image that cannot be written.
    """
    folder = out / label
    folder.mkdir(parents=True, exist_ok=True)
    with (
        _Manifest(out / MANIFEST_NAME) as manifest,
        tqdm(total=count, desc="capture", unit="img", disable=not progress) as bar,
    ):

        def keep(frame: Frame) -> None:
            manifest.add(_save(frame, folder=folder), frame)
            bar.update(1)

        saved, faults, exhausted = _collect(
            source, keep=keep, count=count, timeout_s=timeout_s, max_faults=max_consecutive_faults
        )
    return CaptureSummary(out=out, saved=saved, faults=dict(faults), exhausted=exhausted)


def _collect(
    source: FrameSource, *, keep: Callable[[Frame], None], count: int, timeout_s: float, max_faults: int
) -> tuple[int, Counter[str], bool]:
    faults: Counter[str] = Counter()
    saved = in_a_row = 0
    while saved < count:
        item = source.read(timeout_s=timeout_s)
        if item is None:
            logger.warning("source %s ended after %d of %d images", source.source_id, saved, count)
            return saved, faults, True
        if isinstance(item, Frame):
            keep(item)
            saved, in_a_row = saved + 1, 0
            continue
        faults[item.reason] += 1
        in_a_row += 1
        if in_a_row >= max_faults:
            raise CameraError(
                f"{source.source_id}: {in_a_row} faults in a row ({dict(faults)}); saved {saved} of {count}"
            )
    return saved, faults, False


def _save(frame: Frame, *, folder: Path) -> Path:
    stem = f"{frame.source_id}-{frame.captured_at:%Y%m%dT%H%M%S%f}Z-{frame.frame_id:06d}"
    path = folder / f"{stem}.png"
    write_png(path, frame)
    return path


class _Manifest:
    """Appends rows to ``capture.csv``, writing the header for a new file."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._warned = False

    def __enter__(self) -> _Manifest:
        new = not self._path.exists()
        self._fh = self._path.open("a", newline="", encoding="utf-8")
        self._writer = csv.writer(self._fh)
        if new:
            self._writer.writerow(MANIFEST_COLUMNS)
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.close()

    def add(self, image: Path, frame: Frame) -> None:
        if frame.origin != "camera" and not self._warned:
            logger.warning("recording %s frames, not camera pixels; the manifest says so", frame.origin)
            self._warned = True
        rel = image.relative_to(self._path.parent).as_posix()
        self._writer.writerow(
            [
                rel,
                frame.part_id or "",
                frame.captured_at.isoformat(),
                frame.frame_id,
                frame.source_id,
                frame.origin,
                frame.pixel_format,
            ]
        )
        self._fh.flush()
