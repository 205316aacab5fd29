"""Reconnect with capped backoff, observable states, ids across reconnects (issue #3).

A scripted fake plays the camera: each connection reads its script of frames, timeouts and
errors; a connection can also fail to open.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from types import TracebackType
from typing import Self

import numpy as np
import pytest

from vinspect.camera.base import SourceState
from vinspect.camera.clock import ManualClock
from vinspect.camera.config import ReconnectConfig
from vinspect.camera.stats import FrameLedger, StateChange, utc_now
from vinspect.camera.supervisor import SupervisedSource
from vinspect.errors import CameraDisconnected, CameraError
from vinspect.types import Frame, FrameFault

_IMAGE = np.zeros((2, 2), np.uint8)
Step = int | str | Exception  # a producer frame id, "timeout", or an exception to raise


class ScriptedCamera:
    """A fake camera: frame ids come from the script through the shared ledger, like GenICamSource."""

    def __init__(self, script: Iterable[Step], *, ledger: FrameLedger, open_error: Exception | None = None) -> None:
        self.source_id = "cam"
        self._script = deque(script)
        self._ledger = ledger
        self._open_error = open_error
        self.state = SourceState.CLOSED
        self.closed = False

    def __enter__(self) -> Self:
        if self._open_error is not None:
            raise self._open_error
        self._ledger.restart()
        self.state = SourceState.STREAMING
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.closed = True
        self.state = SourceState.CLOSED

    def read(self, *, timeout_s: float) -> Frame | FrameFault | None:
        step = self._script.popleft() if self._script else "timeout"
        if isinstance(step, Exception):
            raise step
        if step == "timeout":
            time.sleep(timeout_s)
            return FrameFault(source_id="cam", frame_id=None, reason="timeout", at=utc_now())
        assert isinstance(step, int)
        fid = self._ledger.admit(step).frame_id
        return Frame(
            image=_IMAGE, source_id="cam", frame_id=fid, captured_at=utc_now(), pixel_format="Mono8", origin="camera"
        )


class Connections:
    """connect() for the supervisor: hands out scripted cameras in order, remembers them."""

    def __init__(self, *plans: tuple[list[Step], Exception | None]) -> None:
        self._plans = deque(plans)
        self.made: list[ScriptedCamera] = []

    def __call__(self, ledger: FrameLedger) -> ScriptedCamera:
        script, error = self._plans.popleft() if self._plans else ([], CameraDisconnected("still gone"))
        camera = ScriptedCamera(script, ledger=ledger, open_error=error)
        self.made.append(camera)
        return camera


_FAST = ReconnectConfig(initial_backoff_ms=10, max_backoff_ms=40, multiplier=2.0, silence_limit_ms=None)


def _read_until_frame(source: SupervisedSource, *, within_s: float) -> tuple[Frame, list[FrameFault]]:
    faults: list[FrameFault] = []
    end = time.monotonic() + within_s
    while time.monotonic() < end:
        item = source.read(timeout_s=0.05)
        if isinstance(item, Frame):
            return item, faults
        assert item is not None
        faults.append(item)
    raise AssertionError(f"no frame within {within_s} s; faults {[f.reason for f in faults]}")


def test_supervisor_reconnects_after_disconnect_and_ids_keep_increasing() -> None:
    connect = Connections(([1, 2, CameraDisconnected("InvalidHandle")], None), ([1, 2], None))
    changes: list[StateChange] = []
    with SupervisedSource(connect, source_id="cam", policy=_FAST, listeners=(changes.append,)) as source:
        first = [source.read(timeout_s=0.1), source.read(timeout_s=0.1)]
        lost = source.read(timeout_s=0.1)
        assert isinstance(lost, FrameFault) and lost.reason == "disconnected"
        frame, faults = _read_until_frame(source, within_s=2.0)
        assert all(f.reason == "disconnected" for f in faults)
        assert isinstance(first[1], Frame)
        assert [f.frame_id for f in first if isinstance(f, Frame)] == [1, 2]
        assert frame.frame_id == 3
        assert source.state == SourceState.STREAMING
        assert (source.stats.disconnects, source.stats.reconnects) == (1, 1)
    assert connect.made[0].closed and connect.made[1].closed
    assert [c.new for c in changes] == [
        SourceState.OPENING,
        SourceState.STREAMING,
        SourceState.FAILED,
        SourceState.OPENING,
        SourceState.STREAMING,
        SourceState.CLOSED,
    ]


def test_supervisor_backs_off_with_a_cap_between_failed_attempts() -> None:
    connect = Connections(
        ([CameraError("producer error")], None),
        ([], CameraDisconnected("gone")),
        ([], CameraDisconnected("gone")),
        ([], CameraDisconnected("gone")),
        ([], CameraDisconnected("gone")),
        ([7], None),
    )
    clock = ManualClock()
    policy = ReconnectConfig(initial_backoff_ms=20, max_backoff_ms=60, multiplier=2.0, silence_limit_ms=None)
    with SupervisedSource(connect, source_id="cam", policy=policy, clock=clock) as source:
        frame, _ = _read_until_frame(source, within_s=3.0)
        assert frame.frame_id == 1
    # The first open, then 5 reconnect attempts, 4 of them failing: a 20 ms wait before the
    # first attempt, then 40, 80 capped to 60, 60, 60 ms after each failure.
    assert len(connect.made) == 6
    assert clock.waits == pytest.approx([0.02, 0.04, 0.06, 0.06, 0.06])


def test_supervisor_treats_long_silence_as_device_loss() -> None:
    policy = ReconnectConfig(initial_backoff_ms=10, max_backoff_ms=10, silence_limit_ms=100)
    connect = Connections(([1], None), ([1], None))
    with SupervisedSource(connect, source_id="cam", policy=policy) as source:
        assert isinstance(source.read(timeout_s=0.05), Frame)
        reasons = []
        for _ in range(4):
            item = source.read(timeout_s=0.05)
            assert item is not None
            reasons.append(item.reason if isinstance(item, FrameFault) else "frame")
            if reasons[-1] == "disconnected":
                break
        assert reasons[-1] == "disconnected" and reasons[0] == "timeout"
        frame, _ = _read_until_frame(source, within_s=2.0)
        assert frame.frame_id == 2


def test_supervisor_first_open_failure_raises_instead_of_retrying() -> None:
    connect = Connections(([], CameraError("lacks TriggerMode")))
    source = SupervisedSource(connect, source_id="cam", policy=_FAST)
    with pytest.raises(CameraError, match="TriggerMode"), source:
        pass
    assert source.state == SourceState.CLOSED
    assert len(connect.made) == 1


def test_supervisor_read_is_bounded_while_reconnecting() -> None:
    connect = Connections(([CameraDisconnected("gone")], None))  # never comes back
    with SupervisedSource(connect, source_id="cam", policy=_FAST) as source:
        source.read(timeout_s=0.05)
        start = time.monotonic()
        item = source.read(timeout_s=0.1)
        assert time.monotonic() - start < 0.3
        assert isinstance(item, FrameFault) and item.reason == "disconnected"
    assert source.state == SourceState.CLOSED
