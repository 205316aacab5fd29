"""Part numbers that are never reused and never silently skipped, across a kill or a power cut.

The station hands part numbers out in order. Before a number is given to a part,
:meth:`PartNumbers.admit` stores it in a small memory-mapped file
(``<data_dir>/admitted-<station>.mark``): a plain store into a shared file mapping, no system
call, which the kernel keeps when the process is killed (the page belongs to the page cache, not
to the process). The same file holds a *reservation*: a ceiling made durable (``fsync``) before
any number up to it can be handed out, moved on by :data:`BLOCK` numbers by a helper thread when
half of the block is used, so the line does not wait on the disk (it does, for one ``fsync``,
only if the helper fell half a block behind). A clean stop syncs the file and
marks it clean.

At restart, :func:`plan_restart` reads the file:

* **Same boot** (the process was killed) **or a clean stop**: the mark is exact. Every number
  below it without a record gets an explicit FAULT record (:func:`crash_inspections`, reason
  ``crash``: no verdict on record, so never a PASS), and the next run starts right after it.
* **Another boot without a clean stop** (power cut, kernel crash): the mark may be older than
  the last number handed out, but never above the durable ceiling. Numbers below the highest
  known admitted one (the mark, or a committed record) without a record get ``crash`` records;
  the numbers from there up to the ceiling may or may not have gone to parts, so they are
  skipped, and the skip is reported (and recorded in the store's audit trail when there is one).

Without a mark file (a data directory from before this file existed) the restart continues from
the records alone, as before.
"""

from __future__ import annotations

import logging
import mmap
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import quote

from vinspect.crashpoints import crash_point
from vinspect.files import write_atomically
from vinspect.pipeline.decide import DecisionPolicy
from vinspect.pipeline.judge import new_inspection_id
from vinspect.types import Decision, Inspection, Reason, StageTimings, Verdict

__all__ = [
    "BLOCK",
    "CRASH_REASON",
    "MarkState",
    "PartNumbers",
    "RestartPlan",
    "boot_id",
    "crash_inspections",
    "mark_path",
    "plan_restart",
    "read_mark",
]

logger = logging.getLogger(__name__)

BLOCK = 1024  # numbers per durable reservation: at most this many are skipped after a power cut
CRASH_REASON = Reason.CRASH
_MAGIC = b"VINSPSEQ"
_VERSION = 1
_SIZE = 4096  # one page: a power cut tears no field across pages
_HEADER = struct.Struct("<8sII40sQQQ")  # magic, version, clean, boot id, run first, next, reserved to
_CLEAN_AT, _NEXT_AT, _RESERVED_AT = 12, 64, 72
_U32, _U64 = struct.Struct("<I"), struct.Struct("<Q")


def boot_id() -> str:
    """This boot's id (Linux ``/proc/sys/kernel/random/boot_id``); empty where unknown."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return ""


def mark_path(data_dir: Path, station_id: str) -> Path:
    """The station's admitted-number mark in its data directory."""
    return data_dir / f"admitted-{quote(station_id, safe='')}.mark"


@dataclass(frozen=True, slots=True, kw_only=True)
class MarkState:
    """What a mark file says: numbers ``run_first`` .. ``next - 1`` were handed out by the last run."""

    boot_id: str
    run_first: int
    next: int
    reserved_to: int
    clean: bool


def read_mark(path: Path) -> MarkState | None:
    """The mark, or None when there is none.

    Raises:
        ValueError: the file exists but is not a mark (names the file); a restart must not guess.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    if len(raw) < _HEADER.size or raw[:8] != _MAGIC:
        raise ValueError(f"{path}: not an admitted-part-number mark (size {len(raw)}, bad header)")
    _, version, clean, boot, run_first, nxt, reserved = _HEADER.unpack_from(raw)
    if version != _VERSION or not run_first <= nxt:
        raise ValueError(f"{path}: unreadable mark (version {version}, run first {run_first}, next {nxt})")
    return MarkState(
        boot_id=boot.rstrip(b"\0").decode("ascii", "replace"),
        run_first=run_first,
        next=nxt,
        reserved_to=reserved,
        clean=bool(clean),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartPlan:
    """Where the next run starts and what the last run left unaccounted.

    ``scan_from`` .. ``known_next - 1``: numbers certainly handed out (each needs a record; the
    missing ones get ``crash`` records). ``known_next`` .. ``start - 1``: numbers possibly handed
    out after the last durable mark (power cut); skipped, never reused. ``exact``: the mark is
    known to be current (same boot, or a clean stop).
    """

    scan_from: int
    known_next: int
    start: int
    exact: bool

    @property
    def skipped(self) -> tuple[int, int] | None:
        """``(first, end)`` of the skipped numbers, or None."""
        return (self.known_next, self.start) if self.start > self.known_next else None


def plan_restart(mark: MarkState | None, *, recorded_next: int, current_boot: str) -> RestartPlan:
    """Decide the restart from the mark and the records (``recorded_next``: one past the highest recorded)."""
    if mark is None:
        return RestartPlan(scan_from=recorded_next, known_next=recorded_next, start=recorded_next, exact=True)
    exact = mark.clean or (bool(current_boot) and mark.boot_id == current_boot)
    known = max(mark.next, recorded_next)
    start = known if exact else max(known, mark.reserved_to)
    return RestartPlan(scan_from=min(mark.run_first, known), known_next=known, start=start, exact=exact)


def crash_inspections(station_id: str, seqs: list[int], *, policy: DecisionPolicy) -> list[Inspection]:
    """One FAIL record (reason ``crash``) per number that was handed out but never recorded."""
    decision = Decision(
        verdict=Verdict.FAIL,
        reasons=(CRASH_REASON,),
        policy_id=policy.policy_id,
        fail_at=policy.fail_at,
        review_at=policy.review_at,
    )
    error = (
        "part number handed out before a crash, no record committed: verdict and signal unknown "
        "(the line rejects a part without a verdict in time)"
    )
    return [
        Inspection(
            inspection_id=new_inspection_id(seq),
            station_id=station_id,
            part_seq=seq,
            frame=None,
            prediction=None,
            decision=decision,
            timings=StageTimings(),
            model=None,
            error=error,
        )
        for seq in seqs
    ]


def _write_new(path: Path, header: bytes) -> None:
    """Create the mark atomically and durably (:func:`vinspect.files.write_atomically`: temp file,
    fsync, rename, fsync the folder), mode 0600."""
    write_atomically(path, header.ljust(_SIZE, b"\0"), durable=True, mode=0o600)


class PartNumbers:
    """The running station's mark: ``admit`` each number before it is used; ``close`` on a clean stop.

    Args:
        path: the mark file (replaced).
        start: the first number of this run.
        block: numbers per durable reservation.
        boot: this boot's id (:func:`boot_id`).
    """

    def __init__(self, path: Path, *, start: int, block: int = BLOCK, boot: str | None = None) -> None:
        self.path = path
        self._block = block
        self._reserved_to = start + block
        self.beyond_reservation = 0  # numbers handed out above the durable ceiling (fsync failed)
        boot_bytes = (boot if boot is not None else boot_id()).encode("ascii")[:40]
        _write_new(path, _HEADER.pack(_MAGIC, _VERSION, 0, boot_bytes, start, start, self._reserved_to))
        self._fd = os.open(path, os.O_RDWR)
        self._mm = mmap.mmap(self._fd, _SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._wake, self._stop = threading.Event(), threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._extend_loop, name="vinspect-part-numbers", daemon=True)
        self._thread.start()

    def admit(self, seq: int) -> None:
        """Record that ``seq`` is being handed out (call before the part gets it).

        A store into the mapped page; when the helper thread has fallen a whole half block
        behind (a stalled disk), the ceiling is moved on here first, so a number is never handed
        out above the durable ceiling unless the ``fsync`` itself fails (counted, logged).
        """
        _U64.pack_into(self._mm, _NEXT_AT, seq + 1)
        crash_point("part.admitted")
        if seq + self._block // 2 >= self._reserved_to:
            self._wake.set()
            if seq >= self._reserved_to and not self._extend():
                self.beyond_reservation += 1

    def _extend(self) -> bool:
        """Move the durable ceiling one block past the last number handed out; False if that failed."""
        with self._lock:
            try:
                nxt = _U64.unpack_from(self._mm, _NEXT_AT)[0]
                if nxt + self._block // 2 <= self._reserved_to:
                    return True  # the other thread just did it
                target = max(self._reserved_to, nxt) + self._block
                _U64.pack_into(self._mm, _RESERVED_AT, target)
                # fsync writes the mapped page back too, and, unlike mmap.flush (msync), releases the GIL
                os.fsync(self._fd)  # the new ceiling is durable before numbers below it are used
                self._reserved_to = target
                return True
            except (OSError, ValueError):  # thread boundary: log; the next part retries
                logger.exception("extending the part-number reservation in %s failed", self.path)
                return False

    def _extend_loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stop.is_set():
                return
            self._extend()

    def close(self) -> None:
        """Sync the mark and mark it clean (every number it states was handed out is final)."""
        if self._mm.closed:
            return
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5.0)
        with self._lock:
            _U32.pack_into(self._mm, _CLEAN_AT, 1)
            self._mm.flush()
            self._mm.close()
            os.close(self._fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
