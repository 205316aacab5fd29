"""The acquisition child of :class:`~vinspect.camera.process.ProcessSource`.

The child receives its builder (a picklable ``SourceBuilder``, normally ``factory.open_source``
bound to the station's image reader), builds and opens the inner source, sends
:class:`~vinspect.camera.wire.Ready`, then serves one read per
:class:`~vinspect.camera.wire.ReadRequest` until a :class:`~vinspect.camera.wire.StopRequest`
or EOF. It imports no factory: the frame path reads factory -> process -> process_child -> wire.

Pixels: with the parent's shared-memory slot and a frame that fits, the child writes the pixels
into the slot *before* sending the FrameHeader, so a child killed mid-write leaves no header and
the slot is never read; the slot is written only while a parent request is outstanding and the
parent copies it out before asking again, so one slot is enough. Otherwise the pixels follow the
header as one raw record. A CameraError ends the child (fatal: the parent respawns it); other
VinspectErrors are sent back and re-raised by the parent.
"""

from __future__ import annotations

import os
import socket
from multiprocessing.shared_memory import SharedMemory
from typing import Protocol

import numpy as np

from vinspect.camera.base import FrameSource
from vinspect.camera.config import InnerSourceConfig
from vinspect.camera.stats import SourceCounters
from vinspect.camera.wire import (
    CHILD_COUNTERS,
    Delivered,
    Failed,
    FrameHeader,
    ReadRequest,
    Ready,
    frame_meta,
    portable,
    receive,
    send,
    send_pixels,
)
from vinspect.errors import CameraError, VinspectError
from vinspect.types import Frame

__all__ = ["SourceBuilder", "child_main"]


class SourceBuilder(Protocol):
    """Builds the inner source in the child; must pickle by reference (module-level callables,
    or a ``functools.partial`` of one with picklable arguments)."""

    def __call__(self, config: InnerSourceConfig, /, *, source_id: str) -> FrameSource: ...


def child_main(
    *, sock: socket.socket, build: SourceBuilder, inner: InnerSourceConfig, source_id: str, slot_name: str | None = None
) -> None:
    """Child process entry: open the inner source, then serve read requests until told to stop.
    ``slot_name``: the parent's shared-memory slot (None: pixels go through the wire)."""
    try:
        source = build(inner, source_id=source_id)
        slot = SharedMemory(name=slot_name) if slot_name is not None else None
        source.__enter__()
    except BaseException as exc:  # start-up boundary: hand the error to the parent, then exit
        send(sock, Failed(error=portable(exc), fatal=True))
        return
    try:
        send(sock, Ready(pid=os.getpid()))
        _serve(sock, source, slot)
    except (EOFError, OSError):  # the parent went away or closed the wire: stop quietly
        pass
    finally:
        source.__exit__(None, None, None)
        if slot is not None:
            slot.close()  # the parent owns (and unlinks) the segment


def _serve(sock: socket.socket, source: FrameSource, slot: SharedMemory | None) -> None:
    while True:
        request = receive(sock).message
        if not isinstance(request, ReadRequest):
            return
        try:
            item = source.read(timeout_s=request.timeout_s)
        except VinspectError as exc:
            fatal = isinstance(exc, CameraError)  # the device is gone in this process: restart it
            send(sock, Failed(error=portable(exc), fatal=fatal))
            if fatal:
                return
            continue
        counters = _counters_of(source)
        if not isinstance(item, Frame):
            send(sock, Delivered(item=item, counters=counters))
            continue
        image = np.ascontiguousarray(item.image)
        buf = slot.buf if slot is not None else None
        in_slot = buf is not None and image.nbytes <= len(buf)
        if buf is not None and in_slot:
            np.frombuffer(buf, dtype=np.uint8, count=image.nbytes)[:] = image.reshape(-1).view(np.uint8)
        send(
            sock,
            FrameHeader(
                meta=frame_meta(item), shape=image.shape, dtype=image.dtype.str, counters=counters, in_slot=in_slot
            ),
        )
        if not in_slot:
            send_pixels(sock, image.data.cast("B"))


def _counters_of(source: FrameSource) -> dict[str, int]:
    stats = getattr(source, "stats", None)
    snapshot = stats.snapshot() if isinstance(stats, SourceCounters) else {}
    return {k: snapshot.get(k, 0) for k in CHILD_COUNTERS}
