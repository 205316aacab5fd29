"""OverlaySource: real GenTL acquisition timing and frame ids, replayed dataset pixels.

For demos and tests of the whole GenTL path on a simulated device (viky): every frame keeps the
camera frame's id, capture time, device timestamp and fault accounting, but its pixels, pixel
format, part id and label come from the next image of the replay folder. Every frame is marked
origin ``genicam+replay`` so it is never mistaken for camera pixels; faults pass through
unchanged. The replay images keep their own size (the camera's Width/Height only set the
timing's payload).

The next replay image is decoded *before* the camera fetch, while no buffer is waiting, and kept
for the next frame when the camera answers with a fault: the decode is a demo artefact (a real
camera has none) and must not sit between the buffer's ``acquired_ns`` stamp and the hand-over,
where it cost about 0.4 ms of every part's frame -> signal (issue 21).
"""

from __future__ import annotations

import dataclasses
from types import TracebackType
from typing import Self

from vinspect.camera.base import SourceState
from vinspect.camera.folder import FeedSource
from vinspect.camera.stats import SourceCounters
from vinspect.camera.supervisor import SupervisedSource
from vinspect.errors import DatasetError
from vinspect.types import Frame, FrameFault

__all__ = ["OverlaySource"]


class OverlaySource:
    """Frames from ``camera`` with pixels from ``pixels`` (a looping, unpaced feed)."""

    def __init__(self, camera: SupervisedSource, *, pixels: FeedSource) -> None:
        self.source_id = camera.source_id
        self._camera = camera
        self._pixels = pixels
        self._next: Frame | None = None  # replay pixels decoded ahead of the next camera frame

    @property
    def state(self) -> SourceState:
        """The camera's state (the pixel feed loops and never ends the stream)."""
        return self._camera.state

    @property
    def camera(self) -> SupervisedSource:
        """The wrapped camera source (its lifecycle, fault injection)."""
        return self._camera

    @property
    def stats(self) -> SourceCounters:
        """The camera's frame accounting (the pixel feed's own counters are not faults)."""
        return self._camera.stats

    def __enter__(self) -> Self:
        self._pixels.__enter__()
        try:
            self._camera.__enter__()
        except BaseException:
            self._pixels.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._next = None
        try:
            self._camera.__exit__(exc_type, exc, tb)
        finally:
            self._pixels.__exit__(exc_type, exc, tb)

    def read(self, *, timeout_s: float) -> Frame | FrameFault | None:
        """The camera's next item, its pixels replaced when it is a frame.

        Raises:
            DatasetError: the replay feed ended (it should loop) or cannot decode any image.
        """
        if self._next is None:  # decoded before the fetch, off the frame's timed path
            replay = self._pixels.read(timeout_s=0.0)
            if not isinstance(replay, Frame):
                raise DatasetError(f"{self.source_id}: the replay feed gave {replay!r} instead of an image")
            self._next = replay
        item = self._camera.read(timeout_s=timeout_s)
        if not isinstance(item, Frame):
            return item  # the decoded pixels wait for the next frame
        replay, self._next = self._next, None
        return dataclasses.replace(
            item,
            image=replay.image,
            pixel_format=replay.pixel_format,
            part_id=replay.part_id,
            label=replay.label,
            origin="genicam+replay",
        )
