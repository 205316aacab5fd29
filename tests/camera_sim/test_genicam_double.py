"""GenICamSource's fetch path against a harvesters double (issue #3, F6/F8).

viky never delivers incomplete buffers, skipped frame ids or padded lines, so a double of the
harvesters acquirer plays them: buffers shaped like harvesters' (``payload.components[0]``,
``module.raw_buffer``, ``frame_id``), the INCOMPLETE_BUFFER event, and the exact genicam
exception types. The double is installed in place of the opened device (private seam).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from types import SimpleNamespace, TracebackType

import numpy as np
import pytest

gentl = pytest.importorskip("genicam.gentl")

from vinspect.camera.config import GenICamSourceConfig  # noqa: E402
from vinspect.camera.genicam import GenICamSource, _Acquisition  # noqa: E402
from vinspect.errors import CameraDisconnected, CameraError  # noqa: E402
from vinspect.types import Frame, FrameFault  # noqa: E402

pytestmark = pytest.mark.genicam

W, H, PAD = 6, 4, 3


@dataclass
class FakeBuffer:
    frame_id: int
    payload: SimpleNamespace
    module: SimpleNamespace

    @property
    def timestamp_ns(self) -> int:
        raise gentl.NotAvailableException("no device timestamps")

    queued: list[int] | None = None  # the acquirer's log of requeued frame ids

    def queue(self) -> None:
        self.module.raw_buffer = b"\x00" * len(self.module.raw_buffer)  # requeued: the producer reuses it
        if self.queued is not None:
            self.queued.append(self.frame_id)

    def __enter__(self) -> FakeBuffer:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.queue()


def _buffer(frame_id: int) -> FakeBuffer:
    image = np.full((H, W), frame_id, np.uint8)
    padded = np.hstack([image, np.full((H, PAD), 0xEE, np.uint8)])
    part = SimpleNamespace(data_format="Mono8", width=W, height=H, x_padding=PAD, data_offset=0)
    return FakeBuffer(
        frame_id=frame_id,
        payload=SimpleNamespace(components=[part]),
        module=SimpleNamespace(raw_buffer=padded.tobytes()),
    )


class FakeAcquirer:
    """Plays a script: a producer frame id, "incomplete", "timeout", or an exception to raise."""

    def __init__(self, *steps: int | str | Exception) -> None:
        self.steps = deque(steps)
        self.acq: _Acquisition | None = None
        self.queued: list[int] = []
        self.stopped = False

    def try_fetch(self, *, timeout: float) -> FakeBuffer | None:
        step = self.steps.popleft() if self.steps else "timeout"
        if isinstance(step, Exception):
            raise step
        if step == "timeout":
            time.sleep(timeout)
            return None
        if step == "incomplete":  # harvesters requeues it and emits INCOMPLETE_BUFFER
            assert self.acq is not None
            self.acq.incomplete_events[0] += 1
            return None
        assert isinstance(step, int)
        buffer = _buffer(step)
        buffer.queued = self.queued
        return buffer

    def stop(self) -> None:
        self.stopped = True

    def destroy(self) -> None: ...


def _source(*steps: int | str | Exception) -> GenICamSource:
    source = GenICamSource(GenICamSourceConfig(), source_id="cam")
    fake = FakeAcquirer(*steps)
    fake.acq = _Acquisition(producers=(), acquirer=fake, device="double")
    source._acq = fake.acq  # the private seam: an "opened" device without a producer
    return source


def _read(source: GenICamSource, n: int) -> list[Frame | FrameFault | None]:
    return [source.read(timeout_s=0.05) for _ in range(n)]


def test_double_copies_pixels_and_strips_padding_inside_the_buffer_block() -> None:
    (frame,) = _read(_source(7), 1)
    assert isinstance(frame, Frame)
    np.testing.assert_array_equal(frame.image, np.full((H, W), 7, np.uint8))  # survived the requeue
    assert frame.device_ts_ns is None


def test_double_buffer_goes_back_at_the_next_read_not_before_the_frame_is_handed_over() -> None:
    """The requeue (about 0.4 ms on viky) is off the frame's timed path (issue 21)."""
    source = _source(1, 2)
    fake = source._acq.acquirer if source._acq is not None else None
    assert isinstance(fake, FakeAcquirer)
    (first,) = _read(source, 1)
    assert isinstance(first, Frame) and fake.queued == []  # still ours while the frame is handed over
    np.testing.assert_array_equal(first.image, np.full((H, W), 1, np.uint8))
    (second,) = _read(source, 1)
    assert fake.queued == [1]  # the previous buffer went back before the next fetch
    assert isinstance(second, Frame)
    np.testing.assert_array_equal(first.image, np.full((H, W), 1, np.uint8))  # our copy, not the buffer
    source.close()
    assert fake.queued == [1, 2] and fake.stopped  # the last one goes back before the acquirer stops


def test_double_frame_id_gap_gives_one_gap_fault_per_missing_id_before_the_frame() -> None:
    source = _source(1, 2, 5)
    items = _read(source, 5)
    assert [(type(i).__name__, getattr(i, "frame_id", None)) for i in items] == [
        ("Frame", 1),
        ("Frame", 2),
        ("FrameFault", 3),
        ("FrameFault", 4),
        ("Frame", 5),
    ]
    assert {i.reason for i in items if isinstance(i, FrameFault)} == {"gap"}
    assert source.stats.gaps == 2 and source.stats.frames == 3


def test_double_incomplete_buffer_is_a_fault_never_an_image_and_not_a_gap() -> None:
    source = _source(1, "incomplete", 3)
    items = _read(source, 3)
    assert isinstance(items[1], FrameFault) and items[1].reason == "incomplete" and items[1].frame_id is None
    assert [i.frame_id for i in items if isinstance(i, Frame)] == [1, 3]
    assert (source.stats.incomplete, source.stats.gaps) == (1, 0)


def test_double_timeout_fault_within_bound() -> None:
    source = _source()
    start = time.monotonic()
    (fault,) = _read(source, 1)
    assert time.monotonic() - start < 0.05 + 0.03
    assert isinstance(fault, FrameFault) and fault.reason == "timeout"
    assert source.stats.timeouts == 1


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (gentl.InvalidHandleException("handle gone"), CameraDisconnected),
        (IndexError("list index out of range"), CameraDisconnected),
        (gentl.IoException("producer I/O error"), CameraError),
    ],
)
def test_double_producer_errors_map_to_camera_errors(error: Exception, expected: type[Exception]) -> None:
    with pytest.raises(expected, match="cam") as info:
        _read(_source(error), 1)
    assert info.value.__cause__ is error
    if expected is CameraError:
        assert not isinstance(info.value, CameraDisconnected)
