"""The acquisition wire: message records and raw pixel records over a socketpair, both readers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pytest

from vinspect.camera.wire import (
    Delivered,
    Failed,
    FrameHeader,
    Inbox,
    ReadRequest,
    Ready,
    StopRequest,
    portable,
    receive,
    send,
    send_pixels,
)
from vinspect.errors import CameraError, DatasetError
from vinspect.types import FrameFault


@pytest.fixture()
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def test_every_message_kind_crosses_intact(pair: tuple[socket.socket, socket.socket]) -> None:
    parent, child = pair
    fault = FrameFault(source_id="cam", frame_id=3, reason="gap", at=datetime.now(UTC), detail="1 missing")
    sent = [
        Ready(pid=42),
        Delivered(item=fault, counters={"reconnects": 1}),
        Delivered(item=None, counters={}),
        Failed(error=DatasetError("no images"), fatal=False),
        FrameHeader(meta={"frame_id": 7}, shape=(2, 3), dtype="|u1", counters={}, in_slot=True),
    ]
    for message in sent:
        send(child, message)
    inbox = Inbox(parent)
    got = [inbox.take(deadline=time.monotonic() + 2.0) for _ in sent]
    assert [r.message if r else None for r in got][:2] == sent[:2]
    assert got[2] is not None and got[2].message == sent[2]
    failed = got[3].message if got[3] else None
    assert isinstance(failed, Failed) and isinstance(failed.error, DatasetError) and not failed.fatal
    assert got[4] is not None and got[4].message == sent[4]
    send(parent, ReadRequest(timeout_s=0.25))
    send(parent, StopRequest())
    assert receive(child).message == ReadRequest(timeout_s=0.25)
    assert receive(child).message == StopRequest()


def test_pixels_follow_their_header_as_a_raw_record(pair: tuple[socket.socket, socket.socket]) -> None:
    parent, child = pair
    image = np.arange(3000 * 2000, dtype=np.uint32).reshape(3000, 2000).astype(np.uint16)  # 12 MB: many recvs
    header = FrameHeader(meta={}, shape=image.shape, dtype=image.dtype.str, counters={}, in_slot=False)
    assert header.nbytes == image.nbytes

    def write() -> None:
        send(child, header)
        send_pixels(child, image.data.cast("B"))

    writer = threading.Thread(target=write)
    writer.start()
    inbox = Inbox(parent)
    first = inbox.take(deadline=time.monotonic() + 5.0)
    second = inbox.take(deadline=time.monotonic() + 5.0)
    writer.join()
    assert first is not None and first.message == header
    assert second is not None and second.message is None and second.pixels is not None
    assert np.array_equal(np.frombuffer(second.pixels, np.uint16).reshape(image.shape), image)


def test_a_deadline_inside_a_record_keeps_what_arrived(pair: tuple[socket.socket, socket.socket]) -> None:
    parent, child = pair
    payload = bytes(range(256)) * 4
    record = bytearray()
    probe_a, probe_b = socket.socketpair()  # capture the exact bytes of one raw record
    send_pixels(probe_a, memoryview(payload))
    while len(record) < 9 + len(payload):
        record += probe_b.recv(4096)
    probe_a.close()
    probe_b.close()
    inbox = Inbox(parent)
    child.sendall(record[:5])  # half a header
    assert inbox.take(deadline=time.monotonic() + 0.05) is None
    child.sendall(record[5:300])  # the rest of the header, part of the body
    assert inbox.take(deadline=time.monotonic() + 0.05) is None
    child.sendall(record[300:])
    done = inbox.take(deadline=time.monotonic() + 1.0)
    assert done is not None and done.pixels == bytearray(payload)


def test_a_closed_end_is_eof_for_both_readers(pair: tuple[socket.socket, socket.socket]) -> None:
    parent, child = pair
    child.close()
    with pytest.raises(EOFError):
        Inbox(parent).take(deadline=time.monotonic() + 1.0)
    a, b = socket.socketpair()
    a.sendall(b"M\x00\x00")  # a header cut short
    a.close()
    with pytest.raises(EOFError):
        receive(b)
    b.close()


def test_something_else_on_the_wire_is_a_camera_error(pair: tuple[socket.socket, socket.socket]) -> None:
    parent, child = pair
    import pickle
    import struct

    body = pickle.dumps({"not": "a message"})
    child.sendall(struct.pack("!cQ", b"M", len(body)) + body)
    with pytest.raises(CameraError, match="unexpected message"):
        Inbox(parent).take(deadline=time.monotonic() + 1.0)


def test_an_unpicklable_error_travels_as_its_text() -> None:
    class Local(Exception):
        pass

    carried = portable(Local("driver said no"))
    assert isinstance(carried, CameraError) and "Local: driver said no" in str(carried)
    kept = DatasetError("fine")
    assert portable(kept) is kept
