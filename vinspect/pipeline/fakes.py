"""Fakes for the pipeline's seams, shipped in the package (architecture R3): tests, notebooks
and benchmarks use them as-is instead of mocks.

* :class:`ScriptedSource`: a FrameSource that plays a list of frames and faults.
* :class:`FaultyModel`: wraps a bundle's model to raise or to sleep on chosen calls.
* :func:`write_golden_samples`: add golden images to a bundle's manifest (bundle fixtures).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

import cv2
import numpy as np
import numpy.typing as npt

from vinspect.camera.base import SourceState
from vinspect.errors import CameraError, ModelError
from vinspect.models.output import Model, RawOutput
from vinspect.models.runtime import Bundle
from vinspect.types import Frame, FrameFault

__all__ = ["FaultyModel", "ScriptedSource", "make_frame", "with_model", "write_golden_samples"]


def make_frame(level: int, *, frame_id: int = 0, size_px: int = 16, source_id: str = "scripted") -> Frame:
    """A flat Mono8 frame of brightness ``level`` (the tiny test model scores ``level / 255``)."""
    image = np.full((size_px, size_px), level, np.uint8)
    image.flags.writeable = False
    return Frame(image=image, source_id=source_id, frame_id=frame_id, captured_at=datetime.now(UTC),
                 pixel_format="Mono8", origin="replay", part_id=f"p{frame_id}")


ScriptItem = Frame | FrameFault | CameraError


class ScriptedSource:
    """Plays ``items`` in order, then returns None (exhausted).

    A CameraError item is raised from ``read`` (an unsupervised unplug). ``period_s`` paces reads
    like a triggered line; ``gate`` (an Event) holds every read until set.
    """

    def __init__(self, items: Sequence[ScriptItem], *, source_id: str = "scripted", period_s: float = 0.0,
                 gate: threading.Event | None = None) -> None:
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


class FaultyModel:
    """Delegates to a real model, but raises or sleeps when ``fault(call_index)`` says so.

    Args:
        inner: the real model.
        fault: maps the 0-based call index to ``"raise"``, ``"sleep"`` or None.
        sleep_s: how long a ``"sleep"`` call takes.
    """

    def __init__(self, inner: Model, *, fault: Callable[[int], Literal["raise", "sleep"] | None],
                 sleep_s: float = 0.2) -> None:
        self._inner = inner
        self._fault = fault
        self._sleep_s = sleep_s
        self._calls = 0
        self._lock = threading.Lock()

    def run(self, image: npt.NDArray[np.uint8]) -> RawOutput:
        with self._lock:
            index, self._calls = self._calls, self._calls + 1
        action = self._fault(index)
        if action == "raise":
            raise ModelError(f"injected inference failure on call {index}")
        if action == "sleep":
            time.sleep(self._sleep_s)
        return self._inner.run(image)


def with_model(bundle: Bundle, model: FaultyModel) -> Bundle:
    """The same bundle (manifest, sha256, path) running ``model`` instead."""
    return replace(bundle, model=model)


def write_golden_samples(bundle_dir: Path, samples: Sequence[tuple[str, npt.NDArray[np.uint8], str, float]]) -> None:
    """Write ``golden/<name>.png`` files and list them in the manifest as (name, image, expect, score)."""
    (bundle_dir / "golden").mkdir(exist_ok=True)
    manifest_path = bundle_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    entries = []
    for name, image, expect, score in samples:
        if not cv2.imwrite(str(bundle_dir / "golden" / f"{name}.png"), image):
            raise OSError(f"cannot write golden sample {name}")
        entries.append({"file": f"golden/{name}.png", "expect": expect, "score": score})
    manifest["golden_samples"] = entries
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")

