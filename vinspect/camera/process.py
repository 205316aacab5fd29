"""ProcessSource: any source kind hosted in a supervised child process, behind an outer watchdog.

Some GenTL producers recover only by a process restart, and a fetch can block forever
(line-integration.md pitfalls 1, 6, 13; reliability-goals.md F6, F7, commitment 3); and in
process, an acquisition thread's Python code holds the interpreter lock the verdict thread
needs (issue 21). The child ("spawn") receives ``build`` (``factory.open_source`` bound to the
station's image reader) and ``config.inner``, and serves one inner ``read`` per parent request,
so the inner source's buffering and overflow are unchanged. Messages and framing:
:mod:`vinspect.camera.wire`. Pixels travel through one shared-memory slot the parent creates at
``__enter__`` and unlinks at ``__exit__`` (``shm_slot_mb``; it outlives respawned children): the
child writes the frame there, then sends its header, and the parent copies it out into an array
it owns, read-only, before asking for the next read (process_child.py). A child killed
mid-write never sent the header, so a half-written slot is never read. A frame larger than the
slot, ``shm_slot_mb: 0``, or a ``/dev/shm`` without room for the slot sends pixels as one raw
record after the header, received by a deadline-bounded reader. See the README's benchmark
section for the measured hand-over (bench/process_handover.py).

Watchdog: a read waits at most ``min(timeout_s, watchdog_s)`` (the child is asked for slightly
less), else it returns ``FrameFault(reason="timeout")``. The child is killed (SIGKILL) and
respawned when it exits (crash, SIGKILL, fatal CameraError), is silent for ``restart_after_s``
with a read outstanding, does not start within ``start_timeout_s``, or reports only
``disconnected`` for ``disconnected_restart_s``. Meanwhile the state is FAILED, then OPENING,
and every read returns a ``disconnected`` fault after waiting its timeout (never skipped).
Respawns wait ``backoff`` (:class:`~vinspect.backoff.Backoff`, the supervisor's rule:
``initial_s`` after a child that completed a read, then times ``multiplier`` per failed
respawn up to ``max_s``); each FAILED state's reason ends with the delay it scheduled.

Frame ids: each child numbers from 1 and reports its own gaps; the parent's
:class:`~vinspect.camera.stats.FrameLedger` starts a new run per child (``renumber``), so ids
strictly increase across restarts and gaps keep their meaning.

A start-up failure raises from ``__enter__`` (the child's error, re-raised; not retried).
``__exit__`` asks the child to stop, closes the wire, and kills it after ``stop_timeout_s``.
``build`` must pickle (a module-level function or a partial of one): a ConfigError otherwise.
Entry scripts need the usual spawn ``__main__`` guard. No signal handlers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import pickle
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.shared_memory import SharedMemory
from types import TracebackType
from typing import Self

import numpy as np

from vinspect.camera.base import SourceState
from vinspect.camera.config import ProcessSourceConfig
from vinspect.camera.process_child import SourceBuilder, child_main
from vinspect.camera.stats import FrameLedger, Lifecycle, SourceCounters, StateListener, utc_now
from vinspect.camera.wire import Delivered, Failed, FrameHeader, Inbox, ReadRequest, Ready, Record, StopRequest, send
from vinspect.errors import CameraError, ConfigError
from vinspect.types import Frame, FrameFault

__all__ = ["ProcessCounters", "ProcessSource", "SourceBuilder"]

logger = logging.getLogger(__name__)

_KILL_JOIN_S = 2.0
RESPAWN_IN = "respawn in"
"""Every FAILED state's reason ends with ``respawn in <seconds> s``: the backoff it scheduled."""
_SHM_DIR = "/dev/shm"


@dataclass(slots=True)
class ProcessCounters(SourceCounters):
    """SourceCounters over every child, plus the supervision: ``restarts`` (children spawned after
    the first), ``watchdog`` (timeout faults for an overdue child; also in ``timeouts``),
    ``losses`` (children killed or found dead; also in ``disconnects``), ``outages`` (reads
    answered ``disconnected`` while no child was streaming). ``reconnects`` = the children's
    in-process reconnects + completed restarts."""

    restarts: int = 0
    watchdog: int = 0
    losses: int = 0
    outages: int = 0

    def snapshot(self) -> Mapping[str, int]:
        """A consistent copy of every counter."""
        with self._lock:
            return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if not f.name.startswith("_")}


@dataclass(slots=True, kw_only=True)
class _Child:
    """One incarnation of the acquisition process and what the parent knows about it."""

    process: BaseProcess
    sock: socket.socket
    inbox: Inbox
    spawned_at: float
    ready: bool = False
    asked_at: float | None = None  # monotonic time of the outstanding read request
    heard_at: float = 0.0
    replied: bool = False  # completed at least one read: the backoff starts over
    header: FrameHeader | None = None  # a frame header whose pixels are still to come
    counters: Mapping[str, int] = dataclasses.field(default_factory=dict)

    late_at: float = 0.0  # past this the outstanding reply is overdue: a watchdog fault

    def ask(self, *, remaining_s: float) -> None:
        """Request one inner read, leaving the reply a margin inside ``remaining_s``."""
        margin = min(0.05, remaining_s / 4)
        send(self.sock, ReadRequest(timeout_s=max(remaining_s - margin, 0.0)))
        self.asked_at = time.monotonic()
        self.late_at = self.asked_at + max(remaining_s - margin / 2, 0.0)


class ProcessSource:
    """A :class:`~vinspect.camera.base.FrameSource` running ``config.inner`` in a child process."""

    def __init__(
        self,
        config: ProcessSourceConfig,
        *,
        source_id: str,
        build: SourceBuilder,
        listeners: tuple[StateListener, ...] = (),
    ) -> None:
        self.source_id = source_id
        self._config = config
        self._build = build
        self._ctx = multiprocessing.get_context("spawn")
        self._lifecycle = Lifecycle(source_id, listeners=listeners)
        self._counters = ProcessCounters()
        self._lock = threading.Lock()
        self._child: _Child | None = None
        self._ids = FrameLedger(SourceCounters())  # renumbering only: the children count
        self._respawn_at: float | None = None
        self._backoff = config.backoff.schedule()
        self._disconnected_since: float | None = None
        self._slot: SharedMemory | None = None

    @property
    def state(self) -> SourceState:
        """STREAMING; FAILED / OPENING while the child is being replaced; EXHAUSTED; CLOSED."""
        return self._lifecycle.state

    @property
    def lifecycle(self) -> Lifecycle:
        """State, history and listeners."""
        return self._lifecycle

    @property
    def stats(self) -> ProcessCounters:
        """Counters over every child (see :class:`ProcessCounters`)."""
        return self._counters

    @property
    def child_pid(self) -> int | None:
        """The running child's pid (diagnostics and fault injection), None between children."""
        child = self._child
        return None if child is None else child.process.pid

    @property
    def slot_name(self) -> str | None:
        """The shared-memory hand-over slot's name (diagnostics), None when frames go through the pipe."""
        slot = self._slot
        return None if slot is None else slot.name

    def __enter__(self) -> Self:
        with self._lock:
            self._lifecycle.enter(SourceState.OPENING)
            child = None
            try:
                self._slot = self._open_slot()
                child = self._spawn()
                self._await_start(child)
            except BaseException as exc:
                if child is not None:
                    self._kill(child)
                self._release_slot()
                self._lifecycle.enter(SourceState.FAILED, reason=repr(exc))
                self._lifecycle.enter(SourceState.CLOSED)
                raise
            return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with self._lock:
            child, self._child, self._respawn_at = self._child, None, None
            if child is not None:
                self._stop(child)
            self._release_slot()
            self._lifecycle.enter(SourceState.CLOSED)

    def _open_slot(self) -> SharedMemory | None:
        """The hand-over slot; None (pixels through the pipe) when off, or when ``/dev/shm`` has
        less room than the slot (a container's default 64 MB, say: writing past it kills the child)."""
        size = self._config.shm_slot_mb * 2**20
        if not size:
            return None
        try:
            fs = os.statvfs(_SHM_DIR)
            if fs.f_bavail * fs.f_frsize < size:
                logger.warning(
                    "%s has less than the %d MB shared-memory slot free; frames go through the pipe",
                    _SHM_DIR,
                    self._config.shm_slot_mb,
                    extra={"source_id": self.source_id},
                )
                return None
        except OSError:  # no /dev/shm (not Linux): let SharedMemory decide
            pass
        try:
            return SharedMemory(create=True, size=size)
        except OSError as exc:
            logger.warning(
                "no shared-memory slot (%s); frames go through the pipe", exc, extra={"source_id": self.source_id}
            )
            return None

    def _release_slot(self) -> None:
        slot, self._slot = self._slot, None
        if slot is not None:
            slot.close()
            slot.unlink()

    def read(self, *, timeout_s: float) -> Frame | FrameFault | None:
        """The child's next item; a ``timeout`` fault when it does not answer within
        ``min(timeout_s, watchdog_s)``; a ``disconnected`` fault while it is being replaced.

        Raises:
            VinspectError: a non-camera error of the inner source (re-raised from the child).
            CameraError: the source is not open.
        """
        with self._lock:
            if self.state == SourceState.EXHAUSTED:
                return None
            if self.state == SourceState.CLOSED:
                raise CameraError(f"{self.source_id}: read on a source that is not open")
            wait_s = min(max(timeout_s, 0.0), self._config.watchdog_s)
            return self._read(time.monotonic() + wait_s, wait_s)

    def _read(self, deadline: float, wait_s: float) -> Frame | FrameFault | None:
        while True:
            child = self._supervise(time.monotonic())
            if child is None:
                if not self._sleep_until_respawn(deadline):
                    return self._outage("acquisition process restarting")
                continue
            try:
                if child.ready and child.asked_at is None:
                    child.ask(remaining_s=deadline - time.monotonic())
                record = child.inbox.take(deadline=min(deadline, self._give_up_at(child)))
            except (EOFError, OSError) as exc:
                self._lose(child, f"pipe closed ({exc})")
                return self._outage("acquisition process lost")
            if record is not None:
                item = self._handle(child, record)
                if item is not None:
                    return item[0]
            elif time.monotonic() >= deadline:
                return self._timeout(child, wait_s) if child.ready else self._outage("acquisition process starting")

    def _give_up_at(self, child: _Child) -> float:
        if not child.ready:
            return child.spawned_at + self._config.start_timeout_s
        if child.asked_at is None:
            return float("inf")
        return max(child.asked_at, child.heard_at) + self._config.restart_after_s

    def _supervise(self, now: float) -> _Child | None:
        child = self._child
        if child is not None:
            reason = self._why_lost(child, now)
            if reason is not None:
                self._lose(child, reason)
                child = None
        if child is None and self._respawn_at is not None and now >= self._respawn_at:
            child = self._respawn()
        return child

    def _why_lost(self, child: _Child, now: float) -> str | None:
        cfg = self._config
        if child.process.exitcode is not None:
            return f"exited with code {child.process.exitcode}"
        if not child.ready and now - child.spawned_at > cfg.start_timeout_s:
            return f"did not start within {cfg.start_timeout_s} s"
        if child.asked_at is not None and now - max(child.asked_at, child.heard_at) > cfg.restart_after_s:
            return f"silent for {cfg.restart_after_s} s with a read outstanding"
        since, limit = self._disconnected_since, cfg.disconnected_restart_s
        if since is not None and limit is not None and now - since > limit:
            return f"source reported only disconnected faults for {limit} s"
        return None

    def _sleep_until_respawn(self, deadline: float) -> bool:
        """Wait for the next respawn time; False when it is past the read's deadline."""
        due = self._respawn_at if self._respawn_at is not None else deadline
        time.sleep(max(min(due, deadline) - time.monotonic(), 0.0))
        return due < deadline

    def _spawn(self) -> _Child:
        parent_end, child_end = socket.socketpair()
        process = self._ctx.Process(
            target=child_main,
            name=f"vinspect-acquisition-{self.source_id}",
            daemon=True,
            kwargs={
                "sock": child_end,
                "build": self._build,
                "inner": self._config.inner,
                "source_id": self.source_id,
                "slot_name": None if self._slot is None else self._slot.name,
            },
        )
        try:
            process.start()
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            parent_end.close()
            raise ConfigError(
                f"{self.source_id}: the source builder must be a module-level function or a partial of one ({exc})"
            ) from exc
        finally:
            child_end.close()  # ours only: EOF on parent_end once the child is gone
        now = time.monotonic()
        logger.info("acquisition process %s started", process.pid, extra={"source_id": self.source_id})
        return _Child(process=process, sock=parent_end, inbox=Inbox(parent_end), spawned_at=now, heard_at=now)

    def _await_start(self, child: _Child) -> None:
        self._child = child
        while not child.ready:
            try:
                record = child.inbox.take(deadline=child.spawned_at + self._config.start_timeout_s)
            except EOFError:
                raise CameraError(f"{self.source_id}: acquisition process exited during start-up") from None
            if record is None:
                raise CameraError(
                    f"{self.source_id}: acquisition process did not start within {self._config.start_timeout_s} s"
                )
            if isinstance(record.message, Failed):
                raise record.message.error
            self._handle(child, record)

    def _respawn(self) -> _Child | None:
        self._respawn_at, self._disconnected_since = None, None
        self._counters.add("restarts")
        self._lifecycle.enter(SourceState.OPENING, reason=f"restart {self._counters.restarts}")
        try:
            self._child = self._spawn()
        except OSError as exc:
            self._lose(None, f"spawn failed: {exc!r}")
        return self._child

    def _lose(self, child: _Child | None, reason: str) -> None:
        self._child = None
        if child is not None:
            self._kill(child)
            self._counters.add("losses")
            self._counters.add("disconnects")
            reason = f"{reason}; exit code {child.process.exitcode}"
        logger.warning("acquisition process lost: %s", reason, extra={"source_id": self.source_id})
        if child is not None and child.replied:
            self._backoff.reset()
        delay_s = self._backoff.next()
        self._respawn_at = time.monotonic() + delay_s
        self._lifecycle.enter(SourceState.FAILED, reason=f"{reason}; {RESPAWN_IN} {delay_s:.3f} s")

    def _kill(self, child: _Child) -> None:
        if child.process.exitcode is None:
            child.process.kill()
        child.process.join(_KILL_JOIN_S)
        child.sock.close()
        if child is self._child:
            self._child = None

    def _stop(self, child: _Child) -> None:
        with contextlib.suppress(OSError):  # already gone
            send(child.sock, StopRequest())
        child.sock.close()
        child.process.join(self._config.stop_timeout_s)
        if child.process.exitcode is None:
            logger.warning(
                "acquisition process did not stop within %s s; killing it",
                self._config.stop_timeout_s,
                extra={"source_id": self.source_id},
            )
            self._kill(child)

    def _handle(self, child: _Child, record: Record) -> tuple[Frame | FrameFault | None] | None:
        """Apply one record; ``(item,)`` when it completes the outstanding read."""
        child.heard_at = time.monotonic()
        message = record.message
        if child.header is not None:
            header, child.header = child.header, None
            if record.pixels is None:
                raise CameraError(
                    f"{self.source_id}: the acquisition process sent {message!r} where frame pixels were due"
                )
            return (self._frame(child, header, record.pixels),)
        if isinstance(message, Ready):
            self._ready(child)
            return None
        if isinstance(message, FrameHeader):
            if message.in_slot:
                return (self._frame(child, message, self._from_slot(message)),)
            child.header = message
            return None
        child.asked_at = None
        if isinstance(message, Failed):
            if message.fatal:
                self._lose(child, str(message.error))
                return (self._outage(f"acquisition process failed: {message.error}"),)
            raise message.error
        if not isinstance(message, Delivered):
            raise CameraError(f"{self.source_id}: unexpected record from the acquisition process: {record!r}")
        self._merge(child, message.counters)
        child.replied = True
        if message.item is None:
            self._lifecycle.enter(SourceState.EXHAUSTED, reason="inner source exhausted")
            return (None,)
        return (self._fault(message.item),)

    def _ready(self, child: _Child) -> None:
        child.ready = True
        self._ids.restart()  # the new child numbers from 1 again
        if self._counters.restarts:
            self._counters.add("reconnects")
        self._lifecycle.enter(SourceState.STREAMING, reason=f"acquisition process {child.process.pid}")

    def _from_slot(self, header: FrameHeader) -> bytearray:
        """A copy of the frame the child wrote into the slot (it writes again only after our next ask)."""
        buf = None if self._slot is None else self._slot.buf
        nbytes = header.nbytes
        if buf is None or nbytes > len(buf):
            raise CameraError(
                f"{self.source_id}: the acquisition process sent a {nbytes}-byte frame "
                "that is not in its shared-memory slot"
            )
        return bytearray(buf[:nbytes])

    def _frame(self, child: _Child, header: FrameHeader, pixels: bytearray) -> Frame:
        child.asked_at, child.replied = None, True
        self._merge(child, header.counters)
        image = np.frombuffer(pixels, dtype=np.dtype(header.dtype)).reshape(header.shape)
        image.flags.writeable = False
        self._disconnected_since = None
        self._counters.add("frames")
        return Frame(image=image, **{**header.meta, "frame_id": self._ids.renumber(header.meta["frame_id"])})

    def _fault(self, fault: FrameFault) -> FrameFault:
        if fault.reason == "disconnected":
            self._disconnected_since = self._disconnected_since or time.monotonic()
        counter = {"timeout": "timeouts", "incomplete": "incomplete", "gap": "gaps"}.get(fault.reason)
        if counter is not None:
            self._counters.add(counter)
        if fault.frame_id is None:
            return fault
        return dataclasses.replace(fault, frame_id=self._ids.renumber(fault.frame_id))

    def _merge(self, child: _Child, counters: Mapping[str, int]) -> None:
        for name, value in counters.items():
            delta = value - child.counters.get(name, 0)
            if delta > 0:
                self._counters.add(name, delta)
        child.counters = dict(counters)

    def _timeout(self, child: _Child, wait_s: float) -> FrameFault:
        late = time.monotonic() > child.late_at  # else the caller's timeout ended before the child's
        self._counters.add("timeouts")
        if late:
            self._counters.add("watchdog")
        detail = "watchdog: no reply from the acquisition process" if late else "no frame"
        return FrameFault(
            source_id=self.source_id,
            frame_id=None,
            reason="timeout",
            at=utc_now(),
            detail=f"{detail} within {wait_s:.3f} s",
        )

    def _outage(self, detail: str) -> FrameFault:
        self._counters.add("outages")
        return FrameFault(source_id=self.source_id, frame_id=None, reason="disconnected", at=utc_now(), detail=detail)
