"""The wire between ProcessSource and its acquisition child: messages and their framing.

Both ends speak it over one ``socket.socketpair`` (the child's end travels to the spawned process
with its arguments). Every record is a 9-byte header, a kind byte and the body length (unsigned
64-bit, big-endian), then the body: ``M`` a pickled message dataclass, ``P`` raw frame pixels
(sent right after a :class:`FrameHeader` whose ``in_slot`` is False). Nothing here depends on
CPython's private ``Connection`` framing.

Parent to child: :class:`ReadRequest`, :class:`StopRequest`. Child to parent: :class:`Ready`
once the inner source is open, then one reply per read: :class:`FrameHeader` (pixels in the
shared-memory slot, or in the ``P`` record that follows), :class:`Delivered` (a fault, or None
at the end of a finite source) or :class:`Failed` (an error; ``fatal`` ends the child).
``counters`` are the inner source's counters only the child can see (:data:`CHILD_COUNTERS`).

:class:`Inbox` is the parent's reader: bounded by a deadline, resumable when the deadline falls
inside a record, pixels received straight into their own buffer. :func:`receive` is the child's
blocking reader.
"""

from __future__ import annotations

import dataclasses
import math
import pickle
import select
import socket
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from vinspect.errors import CameraError
from vinspect.types import FrameFault

__all__ = [
    "CHILD_COUNTERS",
    "Delivered",
    "Failed",
    "FrameHeader",
    "Inbox",
    "Message",
    "ReadRequest",
    "Ready",
    "Record",
    "StopRequest",
    "frame_meta",
    "portable",
    "receive",
    "send",
    "send_pixels",
]

CHILD_COUNTERS = ("reconnects", "disconnects", "decode_errors")
"""Counters only the child can see (the parent counts the items it hands out itself)."""

_HEADER = struct.Struct("!cQ")
_MESSAGE, _PIXELS = b"M", b"P"


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """Parent: read one item from the inner source, waiting at most ``timeout_s``."""

    timeout_s: float


@dataclass(frozen=True, slots=True)
class StopRequest:
    """Parent: close the inner source and exit."""


@dataclass(frozen=True, slots=True)
class Ready:
    """Child: the inner source is open (sent once, before any reply)."""

    pid: int


@dataclass(frozen=True, slots=True)
class Failed:
    """Child: the inner source raised ``error``; ``fatal`` (a CameraError, or start-up) ends the child."""

    error: BaseException
    fatal: bool


@dataclass(frozen=True, slots=True)
class Delivered:
    """Child: the read gave a fault, or None (a finite source is exhausted)."""

    item: FrameFault | None
    counters: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """Child: the read gave a frame. ``meta`` holds every Frame field but ``image``; the pixels
    (``shape``, ``dtype``) are already in the shared-memory slot (``in_slot``), else they follow
    as one ``P`` record."""

    meta: Mapping[str, Any]
    shape: tuple[int, ...]
    dtype: str
    counters: Mapping[str, int]
    in_slot: bool

    @property
    def nbytes(self) -> int:
        """Size of the pixels in bytes."""
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize


Message = ReadRequest | StopRequest | Ready | Failed | Delivered | FrameHeader


@dataclass(frozen=True, slots=True)
class Record:
    """One received record: a message, or raw pixels (``message`` None)."""

    message: Message | None
    pixels: bytearray | None = None


def send(sock: socket.socket, message: Message) -> None:
    """Write one message record (blocking until the kernel took it)."""
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_HEADER.pack(_MESSAGE, len(body)) + body)


def send_pixels(sock: socket.socket, pixels: memoryview) -> None:
    """Write one raw pixel record (after a FrameHeader with ``in_slot`` False)."""
    sock.sendall(_HEADER.pack(_PIXELS, pixels.nbytes))
    sock.sendall(pixels)


def portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a CameraError keeping its type name and text."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # unpicklable exception: keep its text
        return CameraError(f"{type(exc).__name__}: {exc}")
    return exc


def _decode(kind: bytes, body: bytearray) -> Record:
    if kind == _PIXELS:
        return Record(message=None, pixels=body)
    message = pickle.loads(body)
    if not isinstance(message, ReadRequest | StopRequest | Ready | Failed | Delivered | FrameHeader):
        raise CameraError(f"unexpected message on the acquisition wire: {type(message).__name__}")
    return Record(message=message)


def _recv_exactly(sock: socket.socket, view: memoryview) -> None:
    got = 0
    while got < len(view):
        n = sock.recv_into(view[got:])
        if n == 0:
            raise EOFError("the other end of the acquisition wire closed")
        got += n


def receive(sock: socket.socket) -> Record:
    """Block until one whole record arrived (the child's reader).

    Raises:
        EOFError: the other end closed.
    """
    head = bytearray(_HEADER.size)
    _recv_exactly(sock, memoryview(head))
    kind, size = _HEADER.unpack(head)
    body = bytearray(size)
    _recv_exactly(sock, memoryview(body))
    return _decode(kind, body)


class Inbox:
    """The parent's reader: whole records, never blocking past a deadline.

    Reads at most the bytes of the current header or body, so a deadline in the middle of a
    record keeps what arrived and the next call goes on from there.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._poll = select.poll()
        self._poll.register(sock.fileno(), select.POLLIN)
        self._head = bytearray()
        self._kind = b""
        self._body: bytearray | None = None
        self._filled = 0

    def take(self, *, deadline: float) -> Record | None:
        """The next complete record, or None at ``deadline`` (monotonic seconds).

        Raises:
            EOFError: the child closed its end (exited or was killed).
        """
        while True:
            if self._body is not None and self._filled == len(self._body):
                body, self._body, self._filled = self._body, None, 0
                return _decode(self._kind, body)
            if not self._poll.poll(max(0, int((deadline - time.monotonic()) * 1000 + 0.999))):
                if time.monotonic() >= deadline:
                    return None
                continue
            self._read_some()

    def _read_some(self) -> None:
        if self._body is None:
            chunk = self._sock.recv(_HEADER.size - len(self._head))
            if not chunk:
                raise EOFError("acquisition process closed its end of the wire")
            self._head += chunk
            if len(self._head) == _HEADER.size:
                self._kind, size = _HEADER.unpack(self._head)
                self._head.clear()
                self._body, self._filled = bytearray(size), 0
            return
        got = self._sock.recv_into(memoryview(self._body)[self._filled :])
        if got == 0:
            raise EOFError("acquisition process closed its end of the wire mid-record")
        self._filled += got


def frame_meta(frame: Any) -> dict[str, Any]:
    """Every field of a Frame but ``image`` (what a FrameHeader carries)."""
    return {f.name: getattr(frame, f.name) for f in dataclasses.fields(frame) if f.name != "image"}
