"""The FrameSource protocol every acquisition backend implements, and its lifecycle states.

A source is a context manager: ``__enter__`` opens and starts it, ``__exit__`` stops and closes
it. ``read`` never blocks longer than ``timeout_s`` and never returns an image it does not own.
"""

from __future__ import annotations

import enum
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from vinspect.types import Frame, FrameFault

__all__ = ["FrameSource", "OverflowPolicy", "SourceState", "SourceStats"]


class SourceState(enum.StrEnum):
    """Lifecycle of a source; FAILED means it lost the device and is reconnecting."""

    CLOSED = "CLOSED"
    OPENING = "OPENING"
    STREAMING = "STREAMING"
    FAILED = "FAILED"
    EXHAUSTED = "EXHAUSTED"


class OverflowPolicy(enum.StrEnum):
    """What the pipeline does when its frame queue is full.

    BLOCK: wait (lossless; folder and replay sources). DROP_OLDEST: free-running preview.
    REJECT: triggered lines: the frame that cannot be queued becomes a signalled FAIL.
    """

    BLOCK = "block"
    DROP_OLDEST = "drop_oldest"
    REJECT = "reject"


class SourceStats(Protocol):
    """Per-source frame accounting, never hidden."""

    frames: int
    timeouts: int
    incomplete: int
    gaps: int
    reconnects: int


@runtime_checkable
class FrameSource(Protocol):
    """Anything that yields owned frames (or faults) for the pipeline."""

    source_id: str

    @property
    def state(self) -> SourceState: ...

    def read(self, *, timeout_s: float) -> Frame | FrameFault | None:
        """Return the next frame, a fault for a trigger that produced no usable image, or None
        when the source is exhausted (a finite folder or replay that does not loop)."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...
