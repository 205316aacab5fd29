"""ProcessSource hosting a viky GenICam source in a spawned child (F6, F7, commitment 3).

The child opens harvesters + viky.cti itself (the producer runs in-process, so the child's copy
does not contend with one in this process). Killing the child stands in for a producer that
only recovers by process restart (line-integration.md pitfall 13).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import numpy as np
import psutil
import pytest

pytest.importorskip("harvesters.core")

from vinspect.camera.base import FrameSource, SourceState
from vinspect.camera.config import ProcessSourceConfig
from vinspect.camera.factory import open_source
from vinspect.camera.process import ProcessSource
from vinspect.types import Frame, FrameFault

pytestmark = [pytest.mark.genicam, pytest.mark.timeout(90)]


def _config(*, rate_hz: float = 50.0) -> ProcessSourceConfig:
    inner = {
        "kind": "genicam",
        "device": {"serial_number": "0"},
        "features": {"Width": 640, "Height": 480, "PixelFormat": "Mono8", "AcquisitionFrameRate": rate_hz},
    }
    return ProcessSourceConfig.model_validate(
        {"inner": inner, "watchdog_s": 0.5, "restart_after_s": 1.5, "backoff": {"initial_s": 0.05}}
    )


def _acquisition_children() -> list[psutil.Process]:
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.fixture(autouse=True)
def no_leftover_children() -> Iterator[None]:
    yield
    assert _acquisition_children() == []


def _read_frames(source: FrameSource, n: int, *, within_s: float) -> list[Frame | FrameFault]:
    items: list[Frame | FrameFault] = []
    stop = time.monotonic() + within_s
    while sum(isinstance(i, Frame) for i in items) < n:
        assert time.monotonic() < stop, f"{len(items)} items, not {n} frames, within {within_s} s: {items[-3:]}"
        item = source.read(timeout_s=1.0)
        assert item is not None
        items.append(item)
    return items


def test_viky_frames_from_the_child_match_in_process_and_close_leaves_no_child() -> None:
    config = _config()
    with open_source(config.inner, source_id="cam") as local:
        expected = {i.frame_id: i for i in _read_frames(local, 10, within_s=10) if isinstance(i, Frame)}
    with ProcessSource(config, source_id="cam", build=open_source) as source:
        pid = source.child_pid
        assert source.state == SourceState.STREAMING and pid in [c.pid for c in _acquisition_children()]
        items = _read_frames(source, 10, within_s=10)
    assert source.state == SourceState.CLOSED and _acquisition_children() == []
    frames = [i for i in items if isinstance(i, Frame)]
    ids = [f.frame_id for f in frames]
    assert ids == sorted(set(ids)) and ids[0] == 1
    for frame in frames:
        assert frame.image.shape == (480, 640) and frame.image.dtype == np.uint8
        assert not frame.image.flags.writeable
        assert (frame.origin, frame.pixel_format, frame.source_id) == ("camera", "Mono8", "cam")
    common = sorted(set(ids) & set(expected))
    assert len(common) >= 5, (ids, sorted(expected))
    for frame_id in common:
        child_frame = next(f for f in frames if f.frame_id == frame_id)
        assert np.array_equal(child_frame.image, expected[frame_id].image), frame_id  # viky is deterministic


@pytest.mark.parametrize("slot_mb", [32, 0])
def test_viky_frames_carry_the_childs_acquisition_stamp_over_the_wire(slot_mb: int) -> None:
    """The child stamps ``acquired_ns`` when the buffer leaves the producer (after the parent's
    request, before its reply); the parent adds no stamp of its own, by slot or by pipe."""
    config = _config().model_copy(update={"shm_slot_mb": slot_mb})
    windows = []
    with ProcessSource(config, source_id="cam", build=open_source) as source:
        while len(windows) < 5:
            asked = time.monotonic_ns()
            item = source.read(timeout_s=1.0)
            if isinstance(item, Frame):
                windows.append((asked, item.acquired_ns, time.monotonic_ns()))
    for asked, stamp, answered in windows:
        assert stamp is not None
        assert asked <= stamp <= answered


def test_viky_child_sigkilled_mid_run_reports_failed_faults_and_resumes() -> None:
    with ProcessSource(_config(rate_hz=100.0), source_id="cam", build=open_source) as source:
        before = _read_frames(source, 20, within_s=10)
        pid = source.child_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        after = _read_frames(source, 20, within_s=15)
        first_frame = next(i for i, item in enumerate(after) if isinstance(item, Frame))
        resumed_s = time.monotonic() - killed
        new_pid = source.child_pid
        assert source.state == SourceState.STREAMING and new_pid not in (None, pid)
        stats = source.stats.snapshot()
    states = [c.new for c in source.lifecycle.history]
    assert states.count(SourceState.FAILED) == 1 and states[-1] == SourceState.CLOSED
    outage = after[:first_frame]
    assert outage and all(isinstance(i, FrameFault) and i.reason in ("disconnected", "timeout") for i in outage)
    assert resumed_s < 10.0
    assert (stats["restarts"], stats["losses"], stats["reconnects"]) == (1, 1, 1)
    assert stats["frames"] == 40 and stats["outages"] >= 1
    ids = [i.frame_id for i in before + after if i.frame_id is not None]
    assert ids == sorted(set(ids))  # offset across the restart: ids keep increasing
