"""FolderSource: a dataset folder streamed as frames, paced or as fast as they are read.

The folder is indexed by ``vinspect.dataset.open_dataset`` (every layout it reads; ``dataset``
sits below ``camera`` in the layer contract) and decoded by ``read``, ``vinspect.dataset``'s
``read_image`` unless a caller passes its own :data:`ImageReader` (the process-source tests do,
to make one read hang; benchmarks, to read from memory).

Frames carry origin ``folder``, the sample's class ``label`` (ground truth for scoring), and a
part id from ``part_ids_csv`` (columns ``file,part_id``) or else the file stem. Pacing keeps an
absolute schedule (no drift); after a stall longer than one interval it restarts from now rather
than bursting. A read that would wait past ``timeout_s`` returns a ``timeout`` fault, as a camera
does. :class:`FeedSource` is the shared engine (replay and overlay sources use it too).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np
import numpy.typing as npt

from vinspect.camera.base import SourceState
from vinspect.camera.clock import SYSTEM_CLOCK, Clock
from vinspect.camera.config import FolderSourceConfig
from vinspect.camera.stats import FrameLedger, Lifecycle, SourceCounters, utc_now
from vinspect.dataset import Sample, open_dataset, read_image
from vinspect.errors import ConfigError, DatasetError, VinspectError
from vinspect.types import Frame, FrameFault, FrameOrigin

__all__ = ["FeedSource", "FolderSource", "ImageReader", "Take", "index_folder", "load_part_ids", "takes_from"]

logger = logging.getLogger(__name__)


ImageReader = Callable[[Path], npt.NDArray[np.uint8]]
"""Decodes one image file to an 8-bit H×W or H×W×3 array, raising a VinspectError subclass for a
bad file; a module-level function when a process source must send it to its child."""


def index_folder(root: Path) -> Sequence[Sample]:
    """A folder's images in a stable order, in any layout ``vinspect.dataset`` reads."""
    return open_dataset(root).samples


@dataclass(frozen=True, slots=True, kw_only=True)
class Take:
    """One image to emit: where it is, its ground truth, its part id, its time in the pass."""

    path: Path
    part_id: str
    label: str | None = None
    at_s: float | None = None


def load_part_ids(csv_path: Path) -> dict[str, str]:
    """Read a ``file,part_id`` CSV into {file: part_id}.

    Raises:
        ConfigError: unreadable file, missing columns, empty or duplicate entries (with line).
    """
    try:
        with csv_path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not {"file", "part_id"} <= set(reader.fieldnames or ()):
                raise ConfigError(f"{csv_path}: expected columns file,part_id; found {reader.fieldnames}")
            mapping: dict[str, str] = {}
            for row in reader:
                file, part = (row["file"] or "").strip(), (row["part_id"] or "").strip()
                if not file or not part:
                    raise ConfigError(f"{csv_path}:{reader.line_num}: empty file or part_id")
                if file in mapping:
                    raise ConfigError(f"{csv_path}:{reader.line_num}: {file} listed twice")
                mapping[file] = part
    except OSError as exc:
        raise ConfigError(f"{csv_path}: cannot read part-id CSV ({exc.strerror or exc})") from exc
    return mapping


def takes_from(entries: Sequence[Sample], *, root: Path, part_ids: dict[str, str] | None) -> list[Take]:
    """One take per entry; with ``part_ids`` every file must be listed (by relative path or name).

    Raises:
        ConfigError: files missing from ``part_ids``.
    """
    takes, unlisted = [], []
    for entry in entries:
        part_id = entry.stem
        if part_ids is not None:
            rel = entry.path.relative_to(root).as_posix() if entry.path.is_relative_to(root) else entry.path.name
            found = part_ids.get(rel, part_ids.get(entry.path.name))
            if found is None:
                unlisted.append(rel)
                continue
            part_id = found
        takes.append(Take(path=entry.path, part_id=part_id, label=entry.label))
    if unlisted:
        raise ConfigError(f"{root}: {len(unlisted)} image(s) have no part_id in the CSV, e.g. {unlisted[:3]}")
    return takes


def _pixel_format(image: npt.NDArray[np.uint8] | npt.NDArray[np.uint16]) -> str:
    if image.ndim == 3:
        return "RGB8" if image.dtype == np.uint8 else "RGB16"
    return "Mono8" if image.dtype == np.uint8 else "Mono16"


class FeedSource:
    """A paced stream of image files as a :class:`~vinspect.camera.base.FrameSource`.

    Args:
        load: Called on ``__enter__``; returns the takes of one pass (non-empty).
        source_id: Id stamped on every frame.
        read: Decodes one image file.
        origin: Frame origin (``folder``, ``replay``, ...).
        interval_s: Seconds between frames; None = as fast as read (or ``speed`` timing).
        speed: Replay ``Take.at_s`` timing this many times faster; None = not timed.
        loop: Start over after the last take instead of reporting exhaustion.
        clock: Paces, sleeps and stamps ``acquired_ns`` (a ManualClock in tests).
    """

    def __init__(
        self,
        load: Callable[[], Sequence[Take]],
        *,
        source_id: str,
        read: ImageReader,
        origin: FrameOrigin,
        interval_s: float | None = None,
        speed: float | None = None,
        loop: bool = False,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.source_id = source_id
        self._clock = clock
        self._load, self._read, self._origin = load, read, origin
        self._interval_s, self._speed, self._loop = interval_s, speed, loop
        self._lifecycle = Lifecycle(source_id)
        self._ledger = FrameLedger()
        self._takes: Sequence[Take] = ()
        self._cursor = 0
        self._anchor = 0.0  # interval pacing: frame k is due at anchor + k * interval
        self._emitted = 0
        self._pass_anchor = 0.0  # speed pacing: a take is due at pass_anchor + at_s / speed
        self._ready: tuple[Take, npt.NDArray[np.uint8]] | None = None

    @property
    def state(self) -> SourceState:
        """The lifecycle state (EXHAUSTED after the last take when not looping)."""
        return self._lifecycle.state

    @property
    def stats(self) -> SourceCounters:
        """Frames, timeouts (reads that ended before the next frame was due), decode errors."""
        return self._ledger.counters

    def __enter__(self) -> Self:
        self._lifecycle.enter(SourceState.OPENING)
        try:
            self._takes = list(self._load())
            if not self._takes:
                raise DatasetError(f"{self.source_id}: no images to stream")
        except BaseException as exc:
            self._lifecycle.enter(SourceState.FAILED, reason=repr(exc))
            self._lifecycle.enter(SourceState.CLOSED)
            raise
        self._cursor, self._emitted = 0, 0
        self._anchor = self._pass_anchor = self._clock.monotonic()
        self._lifecycle.enter(SourceState.STREAMING, reason=f"{len(self._takes)} images")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._ready = None
        self._lifecycle.enter(SourceState.CLOSED)

    def read(self, *, timeout_s: float) -> Frame | FrameFault | None:
        """The next frame when due, a ``timeout`` fault when not due within ``timeout_s``, or None
        once exhausted.

        Raises:
            DatasetError: a whole pass of images failed to decode.
        """
        if self.state == SourceState.EXHAUSTED:
            return None
        if self._ready is None:
            self._ready = self._decode_next()
            if self._ready is None:
                self._lifecycle.enter(SourceState.EXHAUSTED, reason="last image sent")
                return None
        take, image = self._ready
        wait = self._due(take) - self._clock.monotonic()
        if wait > timeout_s:
            self._clock.sleep(max(timeout_s, 0.0))
            self._ledger.counters.add("timeouts")
            return FrameFault(
                source_id=self.source_id,
                frame_id=None,
                reason="timeout",
                at=utc_now(),
                detail=f"next image due in {wait:.3f} s",
            )
        if wait > 0:
            self._clock.sleep(wait)
        self._ready = None
        self._advance()
        return Frame(
            image=image,
            source_id=self.source_id,
            frame_id=self._ledger.next_id(),
            captured_at=utc_now(),
            pixel_format=_pixel_format(image),
            origin=self._origin,
            part_id=take.part_id,
            label=take.label,
            acquired_ns=self._clock.monotonic_ns(),
        )

    def _decode_next(self) -> tuple[Take, npt.NDArray[np.uint8]] | None:
        failures = 0
        while failures < len(self._takes):
            if self._cursor >= len(self._takes):
                if not self._loop:
                    return None
                self._cursor, self._pass_anchor = 0, self._clock.monotonic()
            take = self._takes[self._cursor]
            self._cursor += 1
            try:
                image = self._read(take.path)
            except VinspectError as exc:
                failures += 1
                self._ledger.counters.add("decode_errors")
                logger.warning("skipping undecodable image: %s", exc, extra={"source_id": self.source_id})
                continue
            if image.flags.writeable:
                image = image.copy()
                image.flags.writeable = False
            return take, image
        raise DatasetError(f"{self.source_id}: {failures} images in a row failed to decode")

    def _due(self, take: Take) -> float:
        if self._interval_s is not None:
            return self._anchor + self._emitted * self._interval_s
        if self._speed is not None and take.at_s is not None:
            return self._pass_anchor + take.at_s / self._speed
        return 0.0

    def _advance(self) -> None:
        if self._interval_s is not None:
            now = self._clock.monotonic()
            if now - (self._anchor + self._emitted * self._interval_s) > self._interval_s:
                # The reader stalled for more than a frame: restart the schedule, do not burst.
                self._anchor = now - self._emitted * self._interval_s
        self._emitted += 1


class FolderSource(FeedSource):
    """A :class:`FolderSourceConfig` folder, decoded by ``read`` (frames marked ``folder``)."""

    def __init__(
        self, config: FolderSourceConfig, *, source_id: str, read: ImageReader = read_image, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        def load() -> list[Take]:
            part_ids = load_part_ids(config.part_ids_csv) if config.part_ids_csv is not None else None
            return takes_from(index_folder(config.path), root=config.path, part_ids=part_ids)

        super().__init__(
            load,
            source_id=source_id,
            read=read,
            origin="folder",
            interval_s=None if config.fps is None else 1.0 / config.fps,
            loop=config.loop,
            clock=clock,
        )
