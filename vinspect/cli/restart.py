"""What ``vinspect run`` does before the first part: recover the books and part numbers of a crash.

With a store, the store is the truth: the books are a recount of its committed rows and the next
part number is one past the highest committed one; the JSONL file is a convenience copy whose
torn last line is truncated and whose missing committed records are re-derived from the store.
Without a store, the JSONL file is recounted. Then the admitted-number mark
(:mod:`vinspect.pipeline.part_numbers`) accounts for the numbers the last run handed out
without a record: a record the JSONL copy holds but the store lacks (a PASS row still waiting for
its batch when the process died) is stored from the copy; every other number gets a ``crash``
FAULT record through the station's own sinks (so the store and the JSONL copy hold it, and the
books count it); and after a power cut the numbers
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

from vinspect.errors import ConfigError, StoreError
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
from vinspect.pipeline.record import (
    InspectionSink,
    JsonlSink,
    append_records,
    deliver,
    recover_books,
    truncate_torn_tail,
)
from vinspect.types import Books, Decision, Inspection, ModelRef, Prediction, StageTimings, Verdict

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


def _deliver(records: Sequence[Inspection], sinks: Sequence[InspectionSink]) -> None:
    for sink in sinks:
        errors = deliver(sink, records)
        flush = getattr(sink, "flush", None)
        if callable(flush):
            try:
                flush()
            except Exception as exc:  # named below, like a failed write
                errors = [exc]
        for error in errors:
            if error is not None:
                raise StoreError(
                    f"sink {sink.name}: cannot record the part numbers a crash left without a record "
                    f"({', '.join(str(r.part_seq) for r in records[:10])}): {error}"
                ) from error


def _inspection_from_line(rec: dict[str, Any]) -> Inspection:
    """A JSONL record line back as an inspection (no pixels: the frame is not kept in the file)."""
    model = rec.get("model")
    ref = (
        None
        if not model
        else ModelRef(name=model["name"], version=model["version"], sha256=rec.get("model_sha256") or "")
    )
    score = rec.get("score")
    prediction = (
        None if ref is None or score is None else Prediction(score=float(score), defect_code=rec.get("defect_code"))
    )
    decision = Decision(
        verdict=Verdict(rec["verdict"]),
        reasons=tuple(rec["reasons"]),
        policy_id=rec["policy_id"],
        fail_at=float(rec["fail_at"]),
        review_at=float(rec["review_at"]),
    )
    return Inspection(
        inspection_id=rec["inspection_id"],
        station_id=rec["station_id"],
        part_seq=int(rec["part_seq"]),
        frame=None,
        prediction=prediction,
        decision=decision,
        timings=StageTimings(),
        error=rec.get("error"),
        model=ref,
        config_sha256=rec.get("config_sha256"),
    )


def _lines_for(path: Path | None, seqs: Sequence[int], station_id: str) -> dict[int, Inspection]:
    """The JSONL copy's records of these part numbers (searched in the file's last 4 MiB)."""
    if path is None or not seqs or not path.is_file():
        return {}
    wanted, found = set(seqs), {}
    with path.open("rb") as fh:
        size = fh.seek(0, 2)
        fh.seek(max(0, size - 4 * 1024 * 1024))
        tail = fh.read().splitlines()
    for line in tail:
        try:
            rec = json.loads(line)
            if rec["station_id"] == station_id and int(rec["part_seq"]) in wanted:
                found[int(rec["part_seq"])] = _inspection_from_line(rec)
        except (ValueError, KeyError, TypeError):
            continue
    return found


def _record_unrecorded(
    station_id: str, seqs: list[int], *, policy: DecisionPolicy, sinks: Sequence[InspectionSink], jsonl: Path | None
) -> int:
    """Store the JSONL copy's records of numbers the store lacks; every other number gets a crash record.

    Returns the number of crash records.
    """
    copied = _lines_for(jsonl, seqs, station_id)
    if copied:
        _deliver(list(copied.values()), [s for s in sinks if not isinstance(s, JsonlSink)])
        _say(f"station {station_id}: {len(copied)} record(s) the store lacked were taken from {jsonl}")
    crashed = [seq for seq in seqs if seq not in copied]
    if not crashed:
        return 0
    _deliver(crash_inspections(station_id, crashed, policy=policy), sinks)
    shown = ", ".join(map(str, crashed[:10])) + (", ..." if len(crashed) > 10 else "")
    _say(
        f"station {station_id}: {len(crashed)} part number(s) handed out before a crash had no record; "
        f"recorded as FAIL crash: {shown}"
    )
    return len(crashed)


def _skip_note(station_id: str, plan: RestartPlan) -> str | None:
    if plan.skipped is None:
        return None
    first, end = plan.skipped
    return (
        f"station {station_id}: restart after a power cut or system crash: part numbers {first}..{end - 1} "
        f"may have been handed out after the last durable mark; skipped, never reused"
    )


def recover(
    station_id: str,
    *,
    data_dir: Path,
    policy: DecisionPolicy,
    sinks: Sequence[InspectionSink],
    jsonl: Path | None,
    engine: Any,
) -> Recovered:
    """Account for the last run and return where this one starts (see the module docstring)."""
    path = mark_path(data_dir, station_id)
    try:
        mark = read_mark(path)
    except ValueError as exc:  # refuse rather than guess: a guess could hand a number out twice
        raise ConfigError(
            f"{exc}. Move it away to continue from the records alone (numbers handed out after the "
            "last record would then be given again)"
        ) from exc
    boot = boot_id()
    if engine is None:
        return _recover_jsonl(station_id, mark=mark, boot=boot, policy=policy, sinks=sinks, jsonl=jsonl)
    from vinspect.store import session_scope
    from vinspect.store.recovery import (
        next_part_seq,
        record_skip,
        records_after,
        recover_station,
        skipped_ranges,
        unrecorded_seqs,
    )

    jsonl_next = 0
    if jsonl is not None:
        if truncate_torn_tail(jsonl):
            _say(f"{jsonl}: truncated 1 torn record line from an interrupted run")
        jsonl_next = _last_jsonl_seq(jsonl)
    with session_scope(engine, readonly=True) as session:
        committed_next = next_part_seq(station_id, session=session)
        plan = plan_restart(mark, recorded_next=max(committed_next, jsonl_next), current_boot=boot)
        missing_lines = records_after(station_id, part_seq=jsonl_next, session=session) if jsonl else []
        unrecorded = unrecorded_seqs(station_id, first=plan.scan_from, end=plan.known_next, session=session)
    if jsonl is not None and missing_lines:
        append_records(jsonl, missing_lines)
        _say(f"{jsonl}: re-derived {len(missing_lines)} committed record line(s) from the store")
    crashed = _record_unrecorded(station_id, unrecorded, policy=policy, sinks=sinks, jsonl=jsonl) if unrecorded else 0
    note = _skip_note(station_id, plan)
    if plan.skipped is not None and note is not None:
        first, end = plan.skipped
        with session_scope(engine) as session:
            if (first, end - 1) not in skipped_ranges(station_id, session=session):  # a restart that died here
                record_skip(station_id, first=first, end=end, reason=note, session=session)
        _say(note + " (recorded on the audit trail)")
    with session_scope(engine, readonly=True) as session:  # one recount, with what was just recorded
        books = recover_station(station_id, session=session).books
    return Recovered(books=books, start=plan.start, plan=plan, crash_records=crashed)


def _recover_jsonl(
    station_id: str,
    *,
    mark: MarkState | None,
    boot: str,
    policy: DecisionPolicy,
    sinks: Sequence[InspectionSink],
    jsonl: Path | None,
) -> Recovered:
    books: Books | None = None
    recorded_next = 0
    if jsonl is not None:
        books, recorded_next, torn = recover_books(jsonl)
        if torn:
            _say(f"{jsonl}: {torn} torn or invalid record line(s) from an interrupted run skipped")
    plan = plan_restart(mark, recorded_next=recorded_next, current_boot=boot)
    # The JSONL sink writes in part order, so a crash loses only its tail: the numbers after the last line.
    # A station without any record file has nothing to fill; its numbering still continues after the mark.
    unrecorded = list(range(recorded_next, plan.known_next)) if jsonl is not None else []
    if unrecorded:
        _record_unrecorded(station_id, unrecorded, policy=policy, sinks=sinks, jsonl=None)
        if jsonl is not None:
            books, _, _ = recover_books(jsonl)
    note = _skip_note(station_id, plan)
    if note is not None:
        _say(note)
    return Recovered(books=books, start=plan.start, plan=plan, crash_records=len(unrecorded))
