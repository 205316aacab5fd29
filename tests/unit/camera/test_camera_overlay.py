"""OverlaySource: replay pixels decoded before the camera fetch, never lost to a fault (issue 21)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vinspect.camera.folder import FeedSource, Take
from vinspect.camera.overlay import OverlaySource
from vinspect.camera.scripted import ScriptedSource, make_frame
from vinspect.types import Frame, FrameFault


class _LoggedCamera(ScriptedSource):
    """A scripted camera that notes each fetch in a shared event log."""

    def __init__(self, items: list[Frame | FrameFault], events: list[str]) -> None:
        super().__init__(items, source_id="cam")
        self.events = events

    def read(self, *, timeout_s: float) -> Frame | FrameFault | None:
        item = super().read(timeout_s=timeout_s)
        self.events.append("fetch" if isinstance(item, Frame) else "fault")
        return item


def _overlay(camera_items: list[Frame | FrameFault]) -> tuple[OverlaySource, list[str]]:
    events: list[str] = []

    def decode(path: Path) -> npt.NDArray[np.uint8]:
        events.append(f"decode:{path.stem}")
        return np.full((4, 4), int(path.stem[-1]), np.uint8)

    takes = [Take(path=Path(f"/replay/good/tile{i}.png"), part_id=f"tile{i}", label="good") for i in range(2)]
    pixels = FeedSource(lambda: takes, source_id="cam", read=decode, origin="genicam+replay", loop=True)
    camera: Any = _LoggedCamera(camera_items, events)
    return OverlaySource(camera, pixels=pixels), events


def test_replay_pixels_are_decoded_before_the_fetch_not_after_it() -> None:
    overlay, events = _overlay([make_frame(9, frame_id=i, source_id="cam") for i in (1, 2, 3)])
    with overlay:
        frames = [overlay.read(timeout_s=1.0) for _ in range(3)]
    assert events == ["decode:tile0", "fetch", "decode:tile1", "fetch", "decode:tile0", "fetch"]
    assert [f.part_id for f in frames if isinstance(f, Frame)] == ["tile0", "tile1", "tile0"]
    assert [int(f.image[0, 0]) for f in frames if isinstance(f, Frame)] == [0, 1, 0]
    assert [f.frame_id for f in frames if isinstance(f, Frame)] == [1, 2, 3]  # the camera's ids and stamps
    assert {f.origin for f in frames if isinstance(f, Frame)} == {"genicam+replay"}


def test_a_camera_fault_keeps_the_decoded_pixels_for_the_next_frame() -> None:
    fault = FrameFault(source_id="cam", frame_id=None, reason="timeout", at=datetime.now(UTC))
    overlay, events = _overlay(
        [fault, make_frame(9, frame_id=1, source_id="cam"), fault, make_frame(9, frame_id=2, source_id="cam")]
    )
    with overlay:
        items = [overlay.read(timeout_s=1.0) for _ in range(4)]
    assert [type(i).__name__ for i in items] == ["FrameFault", "Frame", "FrameFault", "Frame"]
    assert [f.part_id for f in items if isinstance(f, Frame)] == ["tile0", "tile1"]  # none skipped
    assert events == ["decode:tile0", "fault", "fetch", "decode:tile1", "fault", "fetch"]
