"""What ``vinspect run`` does before the first part: recover the books and part numbers of a crash.

With a store, the store is the truth: the books are a recount of its committed rows and the next
part number is one past the highest committed one; the JSONL file is a convenience copy whose
torn last line is truncated and whose missing committed records are re-derived from the store.
Without a store, the JSONL file is recounted. Then the admitted-number mark
(:mod:`vinspect.pipeline.part_numbers`) accounts for the numbers the last run handed out
without a record: each gets a ``crash`` FAULT record through the station's own sinks (so the
store and the JSONL copy hold it, and the books count it), and after a power cut the numbers
that may have been handed out after the last durable mark are skipped, on stderr and (with a
store) on the audit trail. Every message names the file or the numbers.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vinspect.errors import StoreError
from vinspect.pipeline.decide import DecisionPolicy
from vinspect.pipeline.part_numbers import (
    MarkState,
    RestartPlan,
    boot_id,
    crash_inspections,
    mark_path,
    plan_restart,
    read_mark,
)
from vinspect.pipeline.record import InspectionSink, append_records, deliver, recover_books, truncate_torn_tail
from vinspect.types import Books

__all__ = ["Recovered", "recover"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Recovered:
    """Opening books (None: nothing to carry over) and the first part number of this run."""

    books: Books | None
    start: int
    plan: RestartPlan
    crash_records: int


def _last_jsonl_seq(path: Path) -> int:
    """One past the highest part seq among the last complete lines of a JSONL file (0 if none)."""
    if not path.is_file():
        return 0
    with path.open("rb") as fh:
        size = fh.seek(0, 2)
        fh.seek(max(0, size - 262_144))
        tail = fh.read().splitlines()
    best = -1
    for line in tail[-64:]:
        try:
            best = max(best, int(json.loads(line)["part_seq"]))
        except (ValueError, KeyError, TypeError):
            continue
    return best + 1


def _say(message: str) -> None:
    sys.stderr.write(message + "\n")


def _write_crash_records(station_id: str, seqs: list[int], *, policy: DecisionPolicy,
                         sinks: Sequence[InspectionSink]) -> None:
    records = crash_inspections(station_id, seqs, policy=policy)
    for sink in sinks:
        for item, error in zip(records, deliver(sink, records), strict=True):
            if error is not None:
                raise StoreError(f"sink {sink.name}: cannot record part {item.part_seq} (handed out before a crash, "
                                 f"no record): {error}") from error
    shown = ", ".join(map(str, seqs[:10])) + (", ..." if len(seqs) > 10 else "")
    _say(f"station {station_id}: {len(seqs)} part number(s) handed out before a crash had no record; "
         f"recorded as FAIL crash: {shown}")


def _skip_note(station_id: str, plan: RestartPlan) -> str | None:
    if plan.skipped is None:
        return None
    first, end = plan.skipped
    return (f"station {station_id}: restart after a power cut or system crash: part numbers {first}..{end - 1} "
            f"may have been handed out after the last durable mark; skipped, never reused")


def recover(station_id: str, *, data_dir: Path, policy: DecisionPolicy, sinks: Sequence[InspectionSink],
            jsonl: Path | None, engine: Any) -> Recovered:
    """Account for the last run and return where this one starts (see the module docstring)."""
    mark = read_mark(mark_path(data_dir, station_id))
    boot = boot_id()
    if engine is None:
        return _recover_jsonl(station_id, mark=mark, boot=boot, policy=policy, sinks=sinks, jsonl=jsonl)
    from vinspect.store import session_scope
    from vinspect.store.recovery import record_skip, records_after, recover_station, unrecorded_seqs

    jsonl_next = 0
    if jsonl is not None:
        if truncate_torn_tail(jsonl):
            _say(f"{jsonl}: truncated 1 torn record line from an interrupted run")
        jsonl_next = _last_jsonl_seq(jsonl)
    with session_scope(engine, readonly=True) as session:
        state = recover_station(station_id, session=session)
        plan = plan_restart(mark, recorded_next=max(state.next_part_seq, jsonl_next), current_boot=boot)
        missing_lines = records_after(station_id, part_seq=jsonl_next, session=session) if jsonl else []
        unrecorded = unrecorded_seqs(station_id, first=plan.scan_from, end=plan.known_next, session=session)
    if jsonl is not None and missing_lines:
        append_records(jsonl, missing_lines)
        _say(f"{jsonl}: re-derived {len(missing_lines)} committed record line(s) from the store")
    if unrecorded:
        _write_crash_records(station_id, unrecorded, policy=policy, sinks=sinks)
    note = _skip_note(station_id, plan)
    if plan.skipped is not None and note is not None:
        with session_scope(engine) as session:
            record_skip(station_id, first=plan.skipped[0], end=plan.skipped[1], reason=note, session=session)
        _say(note + " (recorded on the audit trail)")
    books = state.books
    if unrecorded:
        with session_scope(engine, readonly=True) as session:
            books = recover_station(station_id, session=session).books
    return Recovered(books=books, start=plan.start, plan=plan, crash_records=len(unrecorded))


def _recover_jsonl(station_id: str, *, mark: MarkState | None, boot: str, policy: DecisionPolicy,
                   sinks: Sequence[InspectionSink], jsonl: Path | None) -> Recovered:
    books: Books | None = None
    recorded_next = 0
    if jsonl is not None:
        books, recorded_next, torn = recover_books(jsonl)
        if torn:
            _say(f"{jsonl}: {torn} torn or invalid record line(s) from an interrupted run skipped")
    plan = plan_restart(mark, recorded_next=recorded_next, current_boot=boot)
    # The JSONL sink writes in part order, so a crash loses only its tail: the numbers after the last line.
    unrecorded = list(range(recorded_next, plan.known_next))
    if unrecorded:
        _write_crash_records(station_id, unrecorded, policy=policy, sinks=sinks)
        if jsonl is not None:
            books, _, _ = recover_books(jsonl)
    note = _skip_note(station_id, plan)
    if note is not None:
        _say(note)
    return Recovered(books=books, start=plan.start, plan=plan, crash_records=len(unrecorded))
