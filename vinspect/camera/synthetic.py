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
import time
from datetime import UTC, datetime
from types import TracebackType
from typing import Literal, Self

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, field_validator

from vinspect.camera.base import OverflowPolicy, SourceState
from vinspect.dataset.synth import DEFECT_KINDS, render_part
from vinspect.errors import CameraError
from vinspect.types import Frame, FrameFault

__all__ = ["SyntheticSource", "SyntheticSourceConfig"]


class SyntheticSourceConfig(BaseModel):
    """Generated parts; ``count`` None streams forever, ``fps`` None as fast as they are read."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["synthetic"] = "synthetic"
    fps: PositiveFloat | None = None
    count: PositiveInt | None = None
    defect_rate: float = Field(default=0.2, ge=0.0, le=1.0)
    kinds: tuple[str, ...] = DEFECT_KINDS
    size_px: int = Field(default=128, ge=32, le=2048)
    seed: int = 0
    distinct_parts: PositiveInt = 64
    incomplete_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    overflow: OverflowPolicy = OverflowPolicy.BLOCK

    @field_validator("kinds")
    @classmethod
    def _known_kinds(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(DEFECT_KINDS))
        if unknown or not value:
            raise ValueError(f"kinds must be a non-empty subset of {', '.join(DEFECT_KINDS)}; unknown: {unknown}")
        return value


class SyntheticSource:
    """A FrameSource of generated parts (see the module docstring)."""

    def __init__(self, config: SyntheticSourceConfig, *, source_id: str = "synthetic") -> None:
        self.source_id = source_id
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
        delay = self._t0 + self._n / self.config.fps - time.monotonic()
        if delay > timeout_s:
            time.sleep(max(timeout_s, 0.0))
            return False
        if delay > 0:
            time.sleep(delay)
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
            return FrameFault(source_id=self.source_id, frame_id=None, reason="timeout", at=now,
                              detail="no trigger within the read timeout")
        n, self._n = self._n, self._n + 1
        if self._unplugged.is_set():
            return FrameFault(source_id=self.source_id, frame_id=n, reason="disconnected", at=now, detail="unplugged")
        if c.incomplete_rate and np.random.default_rng([c.seed, n, 7]).random() < c.incomplete_rate:
            return FrameFault(source_id=self.source_id, frame_id=n, reason="incomplete", at=now)
        image, label = self._template(n % c.distinct_parts)
        return Frame(image=image, source_id=self.source_id, frame_id=n, captured_at=now, pixel_format="Mono8",
                     origin="synthetic", part_id=f"syn-{n:06d}", label=label)

    def __enter__(self) -> Self:
        self._state = SourceState.STREAMING
        self._n = 0
        self._t0 = time.monotonic()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._state = SourceState.CLOSED
