"""SyntheticSource: generated demo parts (``vinspect.dataset.synth``) as a frame source.

Parts are rendered once per template (``distinct_parts`` of them, lazily) and reused, so the
source costs almost no CPU and benchmarks measure the station, not the renderer. Each frame
carries its ground truth in ``label`` ("good" or the defect kind) and ``origin="synthetic"``.

With ``fps`` set the source behaves like a triggered line: triggers arrive on a fixed schedule
whether or not the station keeps up. ``unplug()``/``replug()`` simulate a cable pull: every
trigger during the outage yields ``FrameFault(reason="disconnected")``; ``incomplete_rate``
delivers that share of triggers as ``incomplete`` faults.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

import numpy as np
import numpy.typing as npt

from vinspect.camera.base import SourceState
from vinspect.camera.clock import SYSTEM_CLOCK, Clock
from vinspect.camera.config import SyntheticSourceConfig
from vinspect.dataset.synth import render_part
from vinspect.errors import CameraError
from vinspect.types import Frame, FrameFault

__all__ = ["SyntheticSource"]


class SyntheticSource:
    """A FrameSource of generated parts (see the module docstring)."""

    def __init__(
        self, config: SyntheticSourceConfig, *, source_id: str = "synthetic", clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.source_id = source_id
        self._clock = clock
        self.config = config
        self._state = SourceState.CLOSED
        self._templates: dict[int, tuple[npt.NDArray[np.uint8], str]] = {}
        self._unplugged = threading.Event()
        self._n = 0
        self._t0 = 0.0

    @property
    def state(self) -> SourceState:
        return self._state

    def unplug(self) -> None:
        """Simulate a cable pull: triggers keep coming, frames do not."""
        self._unplugged.set()

    def replug(self) -> None:
        """End the simulated outage."""
        self._unplugged.clear()

    def _template(self, k: int) -> tuple[npt.NDArray[np.uint8], str]:
        if k not in self._templates:
            c = self.config
            rng = np.random.default_rng([c.seed, k])
            defect = str(rng.choice(c.kinds)) if rng.random() < c.defect_rate else None
            image, _ = render_part(seed=c.seed * 100_003 + k, defect=defect, size_px=c.size_px)
            image.flags.writeable = False
            self._templates[k] = (image, defect or "good")
        return self._templates[k]

    def _wait_for_trigger(self, timeout_s: float) -> bool:
        if self.config.fps is None:
            return True
        delay = self._t0 + self._n / self.config.fps - self._clock.monotonic()
        if delay > timeout_s:
            self._clock.sleep(max(timeout_s, 0.0))
            return False
        if delay > 0:
            self._clock.sleep(delay)
        return True

    def read(self, *, timeout_s: float) -> Frame | FrameFault | None:
        """The next part, a fault for a trigger without a usable frame, or None when done."""
        if self._state is SourceState.CLOSED:
            raise CameraError(f"{self.source_id}: read() on a closed source (use it as a context manager)")
        c = self.config
        if c.count is not None and self._n >= c.count:
            self._state = SourceState.EXHAUSTED
            return None
        now = datetime.now(UTC)
        if not self._wait_for_trigger(timeout_s):
            return FrameFault(
                source_id=self.source_id,
                frame_id=None,
                reason="timeout",
                at=now,
                detail="no trigger within the read timeout",
            )
        n, self._n = self._n, self._n + 1
        if self._unplugged.is_set():
            return FrameFault(source_id=self.source_id, frame_id=n, reason="disconnected", at=now, detail="unplugged")
        if c.incomplete_rate and np.random.default_rng([c.seed, n, 7]).random() < c.incomplete_rate:
            return FrameFault(source_id=self.source_id, frame_id=n, reason="incomplete", at=now)
        image, label = self._template(n % c.distinct_parts)
        return Frame(
            image=image,
            source_id=self.source_id,
            frame_id=n,
            captured_at=now,
            pixel_format="Mono8",
            origin="synthetic",
            part_id=f"syn-{n:06d}",
            label=label,
            acquired_ns=self._clock.monotonic_ns(),
        )

    def __enter__(self) -> Self:
        self._state = SourceState.STREAMING
        self._n = 0
        self._t0 = self._clock.monotonic()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._state = SourceState.CLOSED
