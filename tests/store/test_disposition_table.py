"""The one reason -> disposition rule, pinned across books, store and line signals (issue 15).

Every row is a part judged by the real :func:`~vinspect.pipeline.decide.decide` under both
``on_error`` policies. The verdict may follow the policy; the disposition may not: the books
(live and recovered from JSONL), the store (its recovered books and the NCR's machine verdict
and code), the Modbus verdict register, the MQTT payload and the fake line all agree on it.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from sqlalchemy import Engine
from store_factories import DEFAULTS, MODEL, T0, image

from vinspect.pipeline.books import BookKeeper
from vinspect.pipeline.decide import DecisionPolicy, decide
from vinspect.pipeline.record import JsonlSink, recover_books
from vinspect.pipeline.signals.base import RecordingSignaller
from vinspect.pipeline.signals.modbus import ModbusSignaller
from vinspect.pipeline.signals.mqtt import result_payload
from vinspect.store import repository as repo
from vinspect.store.db import session_scope
from vinspect.store.evidence import EvidenceStore
from vinspect.types import Books, Frame, Inspection, Prediction, Reason, StageTimings, Verdict

P, R, F = Verdict.PASS, Verdict.REVIEW, Verdict.FAIL
FAIL_AT, REVIEW_AT = 0.7, 0.5
SCORES = {"good": 0.1, "review_band": 0.6, "defect": 0.9, "nan": math.nan}
FAULTS = (
    "no_prediction",
    "error:ModelError",
    "blank_frame",
    Reason.OVERFLOW,
    Reason.STORE_UNAVAILABLE,
    Reason.INCOMPLETE_FRAME,
    Reason.MISSING_FRAME,
    Reason.DISCONNECTED,
    Reason.MODEL_UNAVAILABLE,
)
DISPOSITION_OF_REGISTER = {1: "pass", 2: "defect", 3: "fault", 4: "review"}

# (part, late) -> verdict with on_error FAIL, verdict with on_error REVIEW, books key, Modbus verdict
# register (1 accept, 2 defect, 3 fault, 4 review), NCR machine verdict (None: PASS, no NCR).
TABLE = [
    ("good", False, P, P, "pass", 1, None),
    ("good", True, F, F, "late", 3, "ERROR_REJECT"),
    ("review_band", False, R, R, "review", 4, "REJECT"),
    ("review_band", True, F, F, "late", 3, "ERROR_REJECT"),
    ("defect", False, F, F, "defect", 2, "REJECT"),
    ("defect", True, F, F, "late", 3, "ERROR_REJECT"),
    ("nan", False, F, F, "non_finite", 3, "ERROR_REJECT"),
    ("nan", True, F, F, "non_finite", 3, "ERROR_REJECT"),
    # a part without a valid inference: on_error picks the verdict, never the disposition
    *[(str(fault), False, F, R, str(fault), 3, "ERROR_REJECT") for fault in FAULTS],
    *[(str(fault), True, F, F, str(fault), 3, "ERROR_REJECT") for fault in FAULTS],
]


def _part(case: int, part: str, *, late: bool, on_error: Verdict) -> Inspection:
    policy = DecisionPolicy(fail_at=FAIL_AT, review_at=REVIEW_AT, policy_id="table", on_error=on_error)
    score = SCORES.get(part)
    prediction = None
    if score is not None:
        named = math.isfinite(score) and score >= REVIEW_AT
        prediction = Prediction(score=score, defect_code="crack" if named else None)
    fault = None if part in SCORES or part == "no_prediction" else part
    frame = Frame(
        image=image(case, size=32),
        source_id="cam-1",
        frame_id=case,
        captured_at=T0,
        pixel_format="Mono8",
        origin="synthetic",
        part_id=f"SN-{case:06d}",
    )
    return Inspection(
        inspection_id=f"table-{case:04d}",
        station_id=f"st-{case}",
        part_seq=case,
        frame=frame,
        prediction=prediction,
        decision=decide(prediction, policy, late=late, fault=fault),
        timings=StageTimings(acquired_ns=1, decided_ns=2, signalled_ns=3),
        model=MODEL,
    )


def _one_part_books(key: str) -> Books:
    named = {"pass": "passed", "review": "review", "defect": "failed_defect"}
    if key in named:
        return Books(triggers=1, **{named[key]: 1})  # type: ignore[arg-type]
    return Books(triggers=1, failed_fault={key: 1})


@pytest.mark.parametrize("on_error", [Verdict.FAIL, Verdict.REVIEW], ids=["on_error_fail", "on_error_review"])
@pytest.mark.parametrize(
    ("part", "late", "verdict_fail", "verdict_review", "key", "register", "machine"),
    TABLE,
    ids=[f"{row[0]}{'-late' if row[1] else ''}" for row in TABLE],
)
def test_disposition_is_one_rule_through_books_store_and_signal(
    module_store: tuple[Engine, EvidenceStore],
    tmp_path: Path,
    on_error: Verdict,
    part: str,
    late: bool,
    verdict_fail: Verdict,
    verdict_review: Verdict,
    key: str,
    register: int,
    machine: str | None,
) -> None:
    engine, _ = module_store
    case = TABLE.index((part, late, verdict_fail, verdict_review, key, register, machine)) * 2 + (on_error is R)
    inspection = _part(case, part, late=late, on_error=on_error)
    expected_books = _one_part_books(key)
    assert inspection.decision.verdict is (verdict_fail if on_error is F else verdict_review)
    assert inspection.decision.books_key == key
    assert inspection.decision.disposition == DISPOSITION_OF_REGISTER[register]

    keeper = BookKeeper()
    keeper.trigger()
    assert keeper.settle_inspection(inspection) == key
    assert keeper.books() == expected_books
    with JsonlSink(tmp_path / "records.jsonl") as sink:
        sink.write(inspection)
    assert recover_books(tmp_path / "records.jsonl")[0] == expected_books

    assert ModbusSignaller("127.0.0.1").result_registers(inspection)[1] == register
    assert result_payload(inspection)["disposition"] == DISPOSITION_OF_REGISTER[register]
    line = RecordingSignaller()
    line.signal(inspection)
    assert line.signals[0].accept is (register == 1)

    with session_scope(engine) as session:
        if machine is None:
            repo.add_inspection(inspection, session=session)
            ncr_uuid = None
        else:
            ncr_uuid = repo.open_ncr(inspection, session=session, defaults=DEFAULTS).ncr_uuid
    with session_scope(engine, readonly=True) as session:
        assert repo.count_books(session=session, station_id=inspection.station_id) == expected_books
        doc = None if ncr_uuid is None else repo.get_ncr(ncr_uuid, session=session)
    if machine is not None:
        assert doc is not None
        assert doc["machine_verdict"] == machine
        assert doc["defect_code"] == (key if machine == "ERROR_REJECT" else "crack")
