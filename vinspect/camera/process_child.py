"""The acquisition child of :class:`~vinspect.camera.process.ProcessSource` and the wire to it.

The child opens the inner source and serves one ``read`` per parent request. Child to parent:
pickled tuples ``("ready", pid)``, ``("error", exc, fatal)``, ``("fault" | "end", item,
counters)``, ``("frame", meta, shape, dtype, counters, in_slot)``: with ``in_slot`` the pixels
are already in the parent's shared-memory slot (written before the header is sent, so a child
killed mid-write leaves no header and the slot is never read), else they follow as one more raw
message. The slot is written only while a parent request is outstanding and the parent copies
it out before asking again, so one slot is enough. Parent to child: ``("read", timeout_s)`` or
``("stop",)``. A CameraError ends the child
(fatal: the parent respawns it); other VinspectErrors are re-raised by the parent.
:class:`Inbox` is the parent's reader: bounded by a deadline, pixels received into their own
buffer.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import select
import struct
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np

from vinspect.camera.base import FrameSource
from vinspect.camera.folder import ImageLibrary
from vinspect.camera.stats import SourceCounters
from vinspect.errors import CameraError, VinspectError
from vinspect.types import Frame

__all__ = ["CHILD_COUNTERS", "Inbox", "LibraryFactory", "child_main"]

LibraryFactory = Callable[[], ImageLibrary]
"""Builds the ImageLibrary in the child; must pickle by reference (a module-level function)."""

CHILD_COUNTERS = ("reconnects", "disconnects", "decode_errors")
"""Counters only the child can see (the parent counts the items it hands out itself)."""


def child_main(*, conn: Connection, inner: dict[str, Any], source_id: str,
               library_factory: LibraryFactory | None, slot_name: str | None = None) -> None:
    """Child process entry: open the inner source, then serve read requests until told to stop.
    ``slot_name``: the parent's shared-memory slot (None: pixels go through the pipe)."""
    from vinspect.camera.config import parse_source_config
    from vinspect.camera.factory import open_source  # lazy: factory builds ProcessSource

    try:
        library = library_factory() if library_factory is not None else None
        source = open_source(parse_source_config(inner, origin=f"{source_id} (child)"),
                             source_id=source_id, library=library)
        slot = SharedMemory(name=slot_name) if slot_name is not None else None
        source.__enter__()
    except BaseException as exc:  # start-up boundary: hand the error to the parent, then exit
        _send(conn, ("error", _portable(exc), True))
        return
    try:
        _send(conn, ("ready", os.getpid()))
        _serve(conn, source, slot)
    except (EOFError, OSError):  # the parent went away or closed the pipe: stop quietly
        pass
    finally:
        source.__exit__(None, None, None)
        if slot is not None:
            slot.close()  # the parent owns (and unlinks) the segment


def _serve(conn: Connection, source: FrameSource, slot: SharedMemory | None = None) -> None:
    while True:
        request = conn.recv()
        if request[0] != "read":
            return
        try:
            item = source.read(timeout_s=request[1])
        except VinspectError as exc:
            fatal = isinstance(exc, CameraError)  # the device is gone in this process: restart it
            _send(conn, ("error", _portable(exc), fatal))
            if fatal:
                return
            continue
        counters = _counters_of(source)
        if isinstance(item, Frame):
            image = np.ascontiguousarray(item.image)
            meta = {f.name: getattr(item, f.name) for f in dataclasses.fields(item) if f.name != "image"}
            in_slot = slot is not None and image.nbytes <= slot.size
            if in_slot:
                buf = slot.buf if slot is not None else None
                assert buf is not None
                np.frombuffer(buf, dtype=np.uint8, count=image.nbytes)[:] = image.reshape(-1).view(np.uint8)
            _send(conn, ("frame", meta, image.shape, image.dtype.str, counters, in_slot))
            if not in_slot:
                conn.send_bytes(image.data.cast("B"))
        else:
            _send(conn, ("fault" if item is not None else "end", item, counters))


def _send(conn: Connection, message: tuple[Any, ...]) -> None:
    conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def _portable(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # unpicklable exception: keep its text
        return CameraError(f"{type(exc).__name__}: {exc}")
    return exc


def _counters_of(source: FrameSource) -> dict[str, int]:
    stats = getattr(source, "stats", None)
    snapshot = stats.snapshot() if isinstance(stats, SourceCounters) else {}
    return {k: snapshot.get(k, 0) for k in CHILD_COUNTERS}


class Inbox:
    """Reads ``Connection.send_bytes`` messages from a socket, never blocking past a deadline.

    Reads exactly the bytes of the current header or body, so message boundaries survive a
    deadline in the middle of a message (the rest is read by the next call).
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)
        self._head = bytearray()
        self._body: bytearray | None = None
        self._filled = 0

    def take(self, *, deadline: float) -> bytearray | None:
        """The next complete message, or None at ``deadline``.

        Raises:
            EOFError: the child closed its end (exited or was killed).
        """
        while True:
            if self._body is not None and self._filled == len(self._body):
                body, self._body, self._filled = self._body, None, 0
                return body
            if not self._poll.poll(max(0, int((deadline - time.monotonic()) * 1000 + 0.999))):
                if time.monotonic() >= deadline:
                    return None
                continue
            self._read_some()

    def _read_some(self) -> None:
        if self._body is None:
            need = (12 if self._head[:4] == b"\xff\xff\xff\xff" else 4) - len(self._head)
            chunk = os.read(self._fd, need)
            if not chunk:
                raise EOFError("acquisition process closed its pipe")
            self._head += chunk
            if len(self._head) == 4 and self._head != b"\xff\xff\xff\xff":
                self._start(struct.unpack("!i", self._head)[0])
            elif len(self._head) == 12:
                self._start(struct.unpack("!Q", self._head[4:])[0])
            return
        got = os.readv(self._fd, [memoryview(self._body)[self._filled:]])
        if got == 0:
            raise EOFError("acquisition process closed its pipe mid-message")
        self._filled += got

    def _start(self, size: int) -> None:
        self._head.clear()
        self._body, self._filled = bytearray(size), 0
