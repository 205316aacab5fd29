"""The camera seam's shipped fake (architecture R3): tests, notebooks and benchmarks use it
as-is instead of mocks.

* :func:`make_frame`: a flat frame the tiny test model scores ``level / 255``.
* :class:`ScriptedSource`: a :class:`~vinspect.camera.base.FrameSource` that plays a list of
  frames, faults and camera errors, paced or gated like a triggered line.

The model's fake (:class:`~vinspect.models.fakes.FaultyModel`) ships beside the model seam;
bundle writers are test helpers (``testkit.bundles``), not runtime code.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

import numpy as np

from vinspect.camera.base import SourceState
from vinspect.errors import CameraError
from vinspect.types import Frame, FrameFault

__all__ = ["ScriptedSource", "make_frame"]


def make_frame(level: int, *, frame_id: int = 0, size_px: int = 16, source_id: str = "scripted") -> Frame:
    """A flat Mono8 frame of brightness ``level`` (the tiny test model scores ``level / 255``)."""
    image = np.full((size_px, size_px), level, np.uint8)
    image.flags.writeable = False
    return Frame(
        image=image,
        source_id=source_id,
        frame_id=frame_id,
        captured_at=datetime.now(UTC),
        pixel_format="Mono8",
        origin="replay",
        part_id=f"p{frame_id}",
    )


ScriptItem = Frame | FrameFault | CameraError


class ScriptedSource:
    """Plays ``items`` in order, then returns None (exhausted).

    A CameraError item is raised from ``read`` (an unsupervised unplug). ``period_s`` paces reads
    like a triggered line; ``gate`` (an Event) holds every read until set.
    """

    def __init__(
        self,
        items: Sequence[ScriptItem],
        *,
        source_id: str = "scripted",
        period_s: float = 0.0,
        gate: threading.Event | None = None,
    ) -> None:
        self.source_id = source_id
        self._items = list(items)
        self._period_s = period_s
        self._gate = gate
        self._i = 0
        self._state = SourceState.CLOSED
        self.closed_count = 0

    @property
    def state(self) -> SourceState:
        return self._state

    def read(self, *, timeout_s: float) -> Frame | FrameFault | None:
        if self._gate is not None and not self._gate.wait(timeout_s):
            return FrameFault(source_id=self.source_id, frame_id=None, reason="timeout", at=datetime.now(UTC))
        if self._period_s:
            time.sleep(self._period_s)
        if self._i >= len(self._items):
            self._state = SourceState.EXHAUSTED
            return None
        item, self._i = self._items[self._i], self._i + 1
        if isinstance(item, CameraError):
            raise item
        return item

    def __enter__(self) -> Self:
        self._state = SourceState.STREAMING
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._state = SourceState.CLOSED
        self.closed_count += 1
