"""InspectionPipeline: acquisition, inspection and recording threads around the sync core.

```
acquire thread ──bounded queue (OverflowPolicy)──▶ inspect thread ──record queue──▶ record thread
source.read → Frame | FrameFault                    judge → SIGNAL at once          sinks, each isolated
```

* Every part gets exactly one disposition. A frame, or a fault standing for a part, is booked
  as a trigger when read and settled when its verdict is signalled. Under ``REJECT``
  (triggered lines) a frame that cannot be queued, and under ``DROP_OLDEST`` the frame pushed
  out, is signalled at once as FAIL ``overflow``; ``BLOCK`` (folder, replay) loses nothing.
* Timeouts and disconnects stand for parts only on a triggered source (``faults_are_parts``,
  default: overflow is REJECT); elsewhere they are source faults: counted, alarmed, not parts.
* N consecutive faults → DEGRADED + alarm; a valid part → OPERATIONAL again. A critical sink
  failing stops the line: ERROR, and every later part FAILs ``store_unavailable``.
* The record thread takes everything queued since its last write (up to ``record_batch``) and
  hands it to each sink as one run (:func:`~vinspect.pipeline.record.deliver`): a backlog after
  a burst of rejects is committed in a few group transactions instead of one fsync per part.
* A part's clock (latency, deadline) starts at its frame's ``acquired_ns``, the host time the
  source got the buffer (in the acquisition child, for a process source), so the hand-over and
  the queue wait count; faults, and frames without a stamp, start at admission. The stamp is
  CLOCK_MONOTONIC, used only while ``InspectContext.clock`` is ``time.perf_counter_ns`` on the
  same clock (Linux; see :data:`SOURCE_CLOCK_SHARED`).
* The heartbeat is driven by the inspection loop itself, so a stalled loop stops it (F5).
* Hot swap: a watcher thread gates a newly activated model; the inspection thread takes it
  between two parts (:mod:`vinspect.pipeline.swap`).
* The record queue is bounded in parts (``record_queue_size``) and in the bytes of the frames its
  inspections hold (``record_queue_mb``): at 5 MP with the record path behind, 1,024 queued parts
  would hold 5 GB. Over either bound, a part's record is dropped (counted ``record_dropped`` and
  alarmed: the line never waits on disk), except under ``BLOCK`` (folder, replay: lossless),
  where the inspection thread waits for room while the record thread makes progress (a record
  thread stalled for ``record_stall_s`` is not waited for again until it moves on).
* ``gc_freeze`` (default on): ``start`` collects once and freezes what the process holds by then
  (models, mappers, configuration) out of the garbage collector's reach (``gc.freeze``), and
  ``stop`` gives it back. A full collection holds the interpreter lock throughout; with the store's
  ORM objects churning on the record thread, one took 53-57 ms mid-run and the verdict thread
  waited it out (bench/station_bench.py ``gc_pauses``, issue 21). Frozen, a full collection scans only
  what was made since.

The thread-free core that judges and signals one part, ``inspect_frame``, is in
:mod:`vinspect.pipeline.judge` with the :class:`~vinspect.pipeline.judge.Judge` it uses; the
state machine is :mod:`vinspect.pipeline.state`; gating is :mod:`vinspect.pipeline.gating`.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from vinspect.camera.base import FrameSource, OverflowPolicy
from vinspect.errors import CameraError, ModelError
from vinspect.models.runtime import DEFAULT_ALLOW_SPINNING
from vinspect.pipeline.books import BookKeeper
from vinspect.pipeline.gating import PolicyOverrides, gate_bundle, policy_for
from vinspect.pipeline.judge import SIGNAL_ERROR_PREFIX, InspectContext, Judge, PartTicket, inspect_frame
from vinspect.pipeline.record import RECORD_BATCH, FlushingSink, InspectionSink, deliver, take_run
from vinspect.pipeline.signals.base import AlarmSignaller, LockedSignaller, Signaller
from vinspect.pipeline.state import StationStateMachine
from vinspect.pipeline.status import PipelineStatus
from vinspect.pipeline.swap import ModelWatch, SwapReporter
from vinspect.types import Frame, FrameFault, Inspection, Reason, StationState

__all__ = ["InspectionPipeline", "PipelineConfig"]

logger = logging.getLogger(__name__)

SOURCE_CLOCK_SHARED = (
    time.get_clock_info("perf_counter").implementation == time.get_clock_info("monotonic").implementation
)
"""True where ``time.perf_counter_ns`` (the pipeline's clock) and ``time.monotonic_ns`` (the
sources' ``Frame.acquired_ns``) read one clock, so the two can be subtracted."""

S = StationState
Entry = tuple[Frame | FrameFault, PartTicket]


@dataclass(frozen=True, slots=True, kw_only=True)
class PipelineConfig:
    """How the station runs; see the module docstring for the policies."""

    station_id: str
    deadline_ms: float | None = 150.0
    queue_size: int = 8
    overflow: OverflowPolicy = OverflowPolicy.BLOCK
    read_timeout_s: float = 0.2
    heartbeat_ms: int = 100
    degraded_after_faults: int = 5
    record_queue_size: int = 1024
    record_queue_mb: float = 512.0
    record_stall_s: float = 30.0
    record_batch: int = RECORD_BATCH
    faults_are_parts: bool | None = None
    max_parts: int | None = None
    critical_sinks: frozenset[str] = frozenset()
    overrides: PolicyOverrides = field(default_factory=PolicyOverrides)
    require_golden: bool = True
    swap_poll_s: float = 0.5
    ort_threads: int = 1
    ort_allow_spinning: bool = DEFAULT_ALLOW_SPINNING
    part_number: str | None = None
    gc_freeze: bool = True
    config_sha256: str | None = None  # the station file's version (StationConfig.config_sha256)


def _frame_bytes(inspection: Inspection) -> int:
    return 0 if inspection.frame is None else int(inspection.frame.image.nbytes)


class InspectionPipeline:
    """The station loop. Use as a context manager, or ``start()`` then ``stop()``.

    Args:
        source: the frame source (entered by ``start``, exited by ``stop``).
        judge: the gated model and policy, or an unavailable judge (every part FAILs).
        signaller: the line output (calls are serialised by the pipeline).
        sinks: record sinks, isolated from each other and from the line.
        config: station settings.
        watch: tells the pipeline about a newly activated model version (hot swap).
        books: opening books (e.g. recovered after a restart); a fresh keeper by default.
        on_admit: called with each part number before the part gets it (acquisition thread), e.g.
            :meth:`vinspect.pipeline.part_numbers.PartNumbers.admit`; must not block.
    """

    def __init__(
        self,
        source: FrameSource,
        *,
        judge: Judge,
        signaller: Signaller,
        sinks: Sequence[InspectionSink],
        config: PipelineConfig,
        watch: ModelWatch | None = None,
        books: BookKeeper | None = None,
        on_admit: Callable[[int], None] | None = None,
    ) -> None:
        self.config = config
        self.books = books or BookKeeper()
        self.state = StationStateMachine(config.station_id, reason=judge.unavailable_reason)
        self._source, self._judge, self._pending, self._watch = source, judge, judge, watch
        self._signaller = LockedSignaller(signaller)
        self._sinks = tuple(sinks)
        self._ctx = InspectContext(
            station_id=config.station_id, deadline_ms=config.deadline_ms, config_sha256=config.config_sha256
        )
        self._frames: queue.Queue[Entry | None] = queue.Queue(maxsize=config.queue_size)
        self._records: queue.Queue[Inspection | None] = queue.Queue(maxsize=config.record_queue_size)
        self._stop, self._finished, self._line_stop = threading.Event(), threading.Event(), threading.Event()
        self._health_lock = threading.Lock()
        self._consecutive_faults = 0
        self._next_seq = 0
        self._record_runs = 0
        self._record_bytes = 0  # frame bytes held by queued records (record_queue_mb)
        self._room = threading.Condition()
        self._stalled_at = -1  # the record run count at which the byte-budget wait gave up
        self._on_admit = on_admit
        self._admitted = 0
        self._threads: list[threading.Thread] = []
        self.state.listen(self._publish_state)

    # ---------------------------------------------------------------- lifecycle

    def start(self, *, first_part_seq: int = 0) -> None:
        """Open the source, enter OPERATIONAL (with a gated model) and start the threads."""
        self._next_seq = first_part_seq
        if self.config.gc_freeze:  # before the source opens: a camera streams from then on
            gc.collect()
            gc.freeze()  # start-up's objects out of every later full collection (module docstring)
        try:
            self._source.__enter__()
        except BaseException:
            if self.config.gc_freeze:
                gc.unfreeze()
            raise
        if self._judge.bundle is not None:
            self.state.enter(S.OPERATIONAL, reason=self._judge.unavailable_reason)
        else:
            self._alarm(f"not operational: {self._judge.unavailable_reason}")
        targets = [("acquire", self._acquire_loop), ("inspect", self._inspect_loop), ("record", self._record_loop)]
        if self._watch is not None:
            targets.append(("swap", self._swap_loop))
        for name, target in targets:
            thread = threading.Thread(target=target, name=f"vinspect-{name}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the source is exhausted or ``max_parts`` were taken; True if so."""
        return self._finished.wait(timeout_s)

    def stop(self, *, timeout_s: float = 10.0) -> None:
        """Stop acquiring, drain every queued part (each still gets its disposition), flush each
        :class:`~vinspect.pipeline.record.FlushingSink`, close the source, enter STOPPED. Closing
        sinks is the owner's job."""
        if self.state.state is S.STOPPED:
            return
        self._stop.set()
        for thread in self._threads:
            if thread.name == "vinspect-record":
                self._drain_records(thread, stall_s=timeout_s)
            elif thread.name != "vinspect-swap":
                thread.join(timeout=timeout_s)
        try:
            self._source.__exit__(None, None, None)
        except Exception:  # shutdown boundary: closing a broken camera must not lose the books
            logger.exception("closing the source failed")
        self._flush_sinks()
        last = self.state.current
        why = "stopped" if last.state is S.OPERATIONAL else f"stopped (was {last.state}: {last.reason})"
        self.state.try_enter(S.STOPPED, reason=why)
        for thread in self._threads:
            thread.join(timeout=timeout_s)
        if self.config.gc_freeze:
            gc.unfreeze()

    def _drain_records(self, thread: threading.Thread, *, stall_s: float) -> None:
        """Wait for the record thread to deliver everything queued, however long that takes while it
        makes progress; a record thread stalled for ``stall_s`` (a hung sink) is abandoned and what it
        still holds is counted as ``record_dropped`` and alarmed, never lost silently."""
        last_runs, last_progress = self._record_runs, time.monotonic()
        while thread.is_alive():
            thread.join(timeout=0.05)
            if self._record_runs != last_runs:  # a run of records was delivered: progress
                last_runs, last_progress = self._record_runs, time.monotonic()
            if thread.is_alive() and time.monotonic() - last_progress > stall_s:
                inspecting = any(t.name == "vinspect-inspect" and t.is_alive() for t in self._threads)
                left = max(0, self._records.qsize() - (0 if inspecting else 1))  # not the end-of-run marker
                for _ in range(left):
                    self.books.count("record_dropped")
                self._alarm(
                    f"stopping: the record thread made no progress for {stall_s:g} s; "
                    f"{left} queued inspection(s) not recorded"
                )
                return

    def _flush_sinks(self) -> None:
        for sink in self._sinks:
            if not isinstance(sink, FlushingSink):
                continue
            try:
                sink.flush()
            except Exception:  # sink boundary at shutdown: counted and logged, the books stay intact
                self.books.count("sink_errors", key=sink.name)
                logger.exception("sink flush failed", extra={"sink": sink.name})

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---------------------------------------------------------------- acquisition

    def _is_part(self, item: FrameFault) -> bool:
        if item.reason in ("incomplete", "gap"):
            return True
        if self.config.faults_are_parts is not None:
            return self.config.faults_are_parts
        return self.config.overflow is OverflowPolicy.REJECT

    def _acquire_loop(self) -> None:
        try:
            while not self._stop.is_set():
                if self.config.max_parts is not None and self._admitted >= self.config.max_parts:
                    break
                try:
                    item = self._source.read(timeout_s=self.config.read_timeout_s)
                except CameraError as exc:  # an unsupervised source lost its device: keep trying
                    self._source_fault(f"camera_error:{type(exc).__name__}", detail=str(exc))
                    self._stop.wait(self.config.read_timeout_s)
                    continue
                if item is None:
                    break
                if isinstance(item, FrameFault) and not self._is_part(item):
                    self._source_fault(item.reason, detail=item.detail)
                    continue
                self._admit(item)
        except Exception:  # thread boundary: acquisition died; alarm, and let the queue drain
            logger.exception("acquisition thread failed")
            self.books.count("alarms")
            self.state.try_enter(S.ERROR, reason="acquisition thread failed (see log)")
        finally:
            self._finished.set()
            self._frames.put(None)  # end of stream

    def _source_fault(self, reason: str, *, detail: str) -> None:
        self.books.count("source_faults", key=reason)
        logger.warning("source fault %s %s", reason, detail)
        self._track_health(reason)

    def _admit(self, item: Frame | FrameFault) -> None:
        if self._on_admit is not None:
            self._on_admit(self._next_seq)  # the number is marked before anything can use it
        ticket = PartTicket(part_seq=self._next_seq, acquired_ns=self._clock_start(item))
        self._next_seq += 1
        self._admitted += 1
        self.books.trigger()
        policy = self.config.overflow
        if policy is OverflowPolicy.BLOCK:
            self._frames.put((item, ticket))
            return
        try:
            self._frames.put_nowait((item, ticket))
            return
        except queue.Full:
            pass
        if policy is OverflowPolicy.REJECT:
            self._dispose(item, ticket, fault=Reason.OVERFLOW)
            return
        try:
            oldest = self._frames.get_nowait()
            if oldest is not None:
                self._dispose(oldest[0], oldest[1], fault=Reason.OVERFLOW)
        except queue.Empty:
            pass
        self._frames.put((item, ticket))

    def _clock_start(self, item: Frame | FrameFault) -> int:
        """When the part's clock starts: its frame's acquisition stamp where it is on our clock."""
        now = self._ctx.clock()
        stamp = item.acquired_ns if isinstance(item, Frame) else None
        if stamp is None or not SOURCE_CLOCK_SHARED or self._ctx.clock is not time.perf_counter_ns or stamp > now:
            return now
        return stamp

    # ---------------------------------------------------------------- inspection

    def _inspect_loop(self) -> None:
        period_s = self.config.heartbeat_ms / 1e3
        next_beat = 0.0
        while True:
            if time.monotonic() >= next_beat:
                self._beat()
                next_beat = time.monotonic() + period_s
            try:
                entry = self._frames.get(timeout=period_s)
            except queue.Empty:
                continue
            if entry is None:
                break
            item, ticket = entry
            self._take_pending()
            try:
                self._dispose(item, ticket)
            except Exception:  # loop boundary: the part still gets a (fault) disposition
                logger.exception("inspection loop error", extra={"part_seq": ticket.part_seq})
                self.books.settle(verdict=self._judge.policy.on_error, reasons=(Reason.INTERNAL_ERROR,))
        self._records.put(None)

    def _dispose(self, item: Frame | FrameFault, ticket: PartTicket, *, fault: str | None = None) -> None:
        if fault is None and self._line_stop.is_set():
            fault = Reason.STORE_UNAVAILABLE
        if fault is not None:
            ticket = PartTicket(part_seq=ticket.part_seq, acquired_ns=ticket.acquired_ns, fault=fault)
        inspection = inspect_frame(item, judge=self._judge, ctx=self._ctx, ticket=ticket, signaller=self._signaller)
        self.books.settle_inspection(inspection)
        if inspection.error is not None and inspection.error.startswith(SIGNAL_ERROR_PREFIX):
            self.books.count("signal_errors")
        self._track_health(inspection.decision.fault)
        nbytes = _frame_bytes(inspection)
        if self._has_room(nbytes):
            try:
                self._records.put_nowait(inspection)
                return
            except queue.Full:
                self._release(nbytes)
        # the line never waits on disk; the loss is counted and alarmed
        self.books.count("record_dropped")
        dropped = self.books.extras.record_dropped
        if dropped == 1 or dropped % 100 == 0:
            self._alarm(f"record queue full: {dropped} inspection(s) not recorded")

    def _has_room(self, nbytes: int) -> bool:
        """Reserve ``nbytes`` of the record queue's byte budget (one record always fits an empty
        queue). Under BLOCK, wait for room while the record thread makes progress (gives up after
        ``record_stall_s`` without any)."""
        limit, stall_s = self.config.record_queue_mb * 2**20, self.config.record_stall_s
        # a record thread found stalled is not waited for again until it has moved on
        wait = self.config.overflow is OverflowPolicy.BLOCK and self._record_runs != self._stalled_at
        with self._room:
            runs, since = self._record_runs, time.monotonic()
            while self._record_bytes and self._record_bytes + nbytes > limit:
                if not wait:
                    return False
                self._room.wait(0.05)
                if self._record_runs != runs:
                    runs, since = self._record_runs, time.monotonic()
                elif time.monotonic() - since > stall_s:
                    self._stalled_at = runs
                    return False
            self._record_bytes += nbytes
            return True

    def _release(self, nbytes: int) -> None:
        if nbytes:
            with self._room:
                self._record_bytes -= nbytes
                self._room.notify_all()

    def _track_health(self, fault: str | None) -> None:
        """A valid verdict (no fault) resets the fault run; N faults in a row make the station DEGRADED."""
        with self._health_lock:
            if fault is None:
                self._consecutive_faults = 0
                if self.state.state is S.DEGRADED:
                    self.state.try_enter(S.OPERATIONAL, reason="valid verdicts again")
                return
            self._consecutive_faults += 1
            count = self._consecutive_faults
        if count >= self.config.degraded_after_faults and self.state.state is S.OPERATIONAL:
            self._alarm(f"{count} consecutive faults (last: {fault})")
            self.state.try_enter(S.DEGRADED, reason=f"{count} consecutive faults, last {fault}")

    def _beat(self) -> None:
        try:
            self._signaller.heartbeat()
        except Exception:  # heartbeat boundary: a dead PLC link is counted; the PLC sees it too
            self.books.count("signal_errors")
            logger.warning("heartbeat failed", exc_info=True)

    def _publish_state(self, state: StationState) -> None:
        try:
            self._signaller.publish_state(state)
        except Exception:  # signal boundary: the PLC watches the heartbeat anyway
            self.books.count("signal_errors")
            logger.warning("publishing the station state failed", exc_info=True)

    def _alarm(self, message: str) -> None:
        """Count, log and publish an alarm (when the signaller is an ``AlarmSignaller``, e.g. MQTT)."""
        self.books.count("alarms")
        logger.error("ALARM %s: %s", self.config.station_id, message)
        inner = self._signaller.inner
        if isinstance(inner, AlarmSignaller):
            try:
                with self._signaller.lock:
                    inner.alarm(message)
            except Exception:  # alarm boundary: the alarm is already counted and logged
                logger.warning("publishing the alarm failed", exc_info=True)

    # ---------------------------------------------------------------- hot swap

    def _swap_loop(self) -> None:
        assert self._watch is not None
        while not self._stop.wait(self.config.swap_poll_s):
            try:
                path = self._watch.poll()
                if path is None:
                    continue
                gate = gate_bundle(
                    path,
                    require_golden=self.config.require_golden,
                    threads=self.config.ort_threads,
                    part_number=self.config.part_number,
                    allow_spinning=self.config.ort_allow_spinning,
                )
                if gate.bundle is None:
                    self._swap_refused(path, gate.reason)
                    continue
                try:
                    policy = policy_for(gate.bundle, self.config.overrides)
                except ModelError as exc:
                    self._swap_refused(path, str(exc))
                    continue
                self._pending = Judge(bundle=gate.bundle, policy=policy, unavailable_reason=gate.reason)
            except Exception:  # thread boundary: a broken watcher must not stop the line
                self._alarm("hot swap watcher error (see log)")
                logger.exception("hot swap watcher failed")

    def _swap_refused(self, path: Path, reason: str) -> None:
        self.books.count("swaps_refused")
        self._alarm(f"hot swap refused: {reason}")
        if isinstance(self._watch, SwapReporter):
            self._watch.refused(path, reason)

    def _take_pending(self) -> None:
        pending = self._pending
        if pending is self._judge:
            return
        self._judge = pending
        self.books.count("swaps")
        if pending.ref is not None and isinstance(self._watch, SwapReporter):
            self._watch.switched(pending.ref)
        logger.warning("model swapped", extra={"model": str(pending.ref)})
        if self.state.state is S.PREOPERATIONAL:
            self.state.try_enter(S.OPERATIONAL, reason=pending.unavailable_reason)

    # ---------------------------------------------------------------- recording

    def _record_loop(self) -> None:
        while True:
            batch, done = take_run(self._records, limit=self.config.record_batch)
            self._record_runs += 1  # progress, for a stop that waits on the drain
            for sink in self._sinks:
                errors = deliver(sink, batch)
                for item, error in zip(batch, errors, strict=True):
                    if error is None:
                        continue  # sink boundary: one broken sink must not stop the others or the line
                    self.books.count("sink_errors", key=sink.name)
                    logger.error(
                        "sink failed", exc_info=error, extra={"sink": sink.name, "inspection_id": item.inspection_id}
                    )
                    if sink.name in self.config.critical_sinks and not self._line_stop.is_set():
                        self._stop_line(sink.name)
            self._release(sum(_frame_bytes(item) for item in batch))  # delivered: its frames may go
            if done:
                return

    def _stop_line(self, sink_name: str) -> None:
        self._line_stop.set()
        self._alarm(f"critical sink {sink_name} failed: line stopped, every part rejected")
        self.state.try_enter(S.ERROR, reason=f"store_unavailable: sink {sink_name} failed; line stopped")

    # ---------------------------------------------------------------- status

    def status(self) -> PipelineStatus:
        """A snapshot of state, books, latency and counters."""
        books = self.books.books()
        current = self.state.current
        return PipelineStatus(
            station_id=self.config.station_id,
            state=current.state,
            reason=current.reason,
            state_since=current.at,
            books=books,
            in_flight=books.discrepancy,
            model=self._judge.ref,
            latency_ms=self.books.e2e.summary(),
            stages_ms={k: w.summary() for k, w in self.books.stages.items()},
            extras=self.books.extras_dict(),
            queue_depth=self._frames.qsize(),
            record_queue_depth=self._records.qsize(),
            line_stopped=self._line_stop.is_set(),
        )
