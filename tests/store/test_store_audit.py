"""Canonical JSON (RFC 8785) and the audit chain under concurrent writers."""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, select
from store_factories import DEFAULTS, make_inspection

from vinspect.errors import StoreError
from vinspect.store.audit import AuditEntry, append_audit, chain_head, verify_chain
from vinspect.store.canonical import canonical_json, format_utc
from vinspect.store.db import session_scope
from vinspect.store.evidence import EvidenceStore
from vinspect.store.sink import StoreSink
from vinspect.store.tables import AuditRecord, NcrRecord
from vinspect.store.verify import verify_store


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"b": 2, "a": 1, "c": [True, None, "x"]}, b'{"a":1,"b":2,"c":[true,null,"x"]}'),
        # RFC 8785 §3.2.2.3 number serialisation (ECMAScript Number::toString)
        (
            [1.0, 1e21, 1e-7, 1e-6, 0.000001234, 333333333.3333333, -0.0, 5e-324, 1.7976931348623157e308],
            b"[1,1e+21,1e-7,0.000001,0.000001234,333333333.3333333,0,5e-324,1.7976931348623157e+308]",
        ),
        (
            {"\u20ac": 1, "\r": 2, "\U0001f600": 3, "\ufb33": 4, "1": 5},  # RFC 8785 §3.2.3 sort by UTF-16 units
            '{"\\r":2,"1":5,"\u20ac":1,"\U0001f600":3,"\ufb33":4}'.encode(),
        ),
        ("é\u2028\u0001/", '"é\u2028\\u0001/"'.encode()),
    ],
)
def test_audit_canonical_json_follows_rfc8785(value: object, expected: bytes) -> None:
    assert canonical_json(value) == expected


@pytest.mark.parametrize("bad", [math.nan, math.inf, {"x": -math.inf}, b"bytes", datetime(2026, 1, 1)])
def test_audit_canonical_json_refuses_what_has_no_stable_form(bad: object) -> None:
    with pytest.raises(StoreError):
        canonical_json(bad)


def test_audit_times_are_utc_with_microseconds() -> None:
    cet = timezone(timedelta(hours=1))
    assert format_utc(datetime(2026, 1, 15, 9, 0, 0, 5, tzinfo=cet)) == "2026-01-15T08:00:00.000005Z"


def test_audit_chain_is_gap_free_and_verifies(engine: Engine) -> None:
    for i in range(5):
        with session_scope(engine) as session:
            for j in range(3):
                append_audit(
                    AuditEntry(
                        actor="user:1", action="login.fail", entity="user", entity_id="1", reason=f"attempt {i}.{j}"
                    ),
                    session=session,
                )
    with session_scope(engine, readonly=True) as session:
        report = verify_chain(session=session)
        head = chain_head(session)
        seqs = list(session.scalars(select(AuditRecord.seq).order_by(AuditRecord.seq)))
    assert report.ok and report.rows_checked == 15 and head is not None and head.seq == 15
    assert seqs == list(range(1, 16))
    with session_scope(engine, readonly=True) as session:
        assert verify_chain(session=session, anchor=head).ok


def test_audit_rolled_back_appends_leave_no_gap(engine: Engine) -> None:
    with session_scope(engine) as session:
        append_audit(AuditEntry(actor="a", action="x", entity="e", entity_id="1"), session=session)
    with pytest.raises(RuntimeError), session_scope(engine) as session:
        append_audit(AuditEntry(actor="a", action="x", entity="e", entity_id="2"), session=session)
        raise RuntimeError("abandon")
    with session_scope(engine) as session:
        append_audit(AuditEntry(actor="a", action="x", entity="e", entity_id="3"), session=session)
    with session_scope(engine, readonly=True) as session:
        rows = [(r.seq, r.entity_id) for r in session.scalars(select(AuditRecord).order_by(AuditRecord.seq))]
        assert rows == [(1, "1"), (2, "3")] and verify_chain(session=session).ok


def test_audit_concurrent_writers_keep_numbers_and_chain_gap_free(engine: Engine, evidence: EvidenceStore) -> None:
    """Three stations' sinks writing at once: NCR numbers and audit seq stay unique and gap-free."""
    errors: list[BaseException] = []

    def station(name: str) -> None:
        try:
            sink = StoreSink(engine, evidence, defaults=DEFAULTS, batch_size=4)
            for seq in range(12):
                sink.write(
                    make_inspection(
                        seq,
                        station=name,
                        with_map=seq % 2 == 0,
                        at=datetime(2026, 1, 15, tzinfo=UTC) + timedelta(seconds=seq),
                    )
                )
            sink.close()
        except BaseException as exc:  # collected and re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=station, args=(f"st-{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    with session_scope(engine, readonly=True) as session:
        numbers = sorted(session.scalars(select(NcrRecord.ncr_seq)))
        report = verify_store(session=session)
    assert numbers == list(range(1, 37)) and report.ok, report
