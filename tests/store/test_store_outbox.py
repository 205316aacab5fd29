"""QMS export effectively once (goal D9): faults on the wire and a relay crash mid-send."""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select
from store_factories import DEFAULTS, make_inspection
from store_qms_stub import FAULTS, QmsStub

from vinspect.backoff import capped_delay
from vinspect.store import repository as repo
from vinspect.store.db import session_scope
from vinspect.store.ncr import ReviewDecision, ReviewInput, Role
from vinspect.store.outbox import PENDING, OutboxRelay, RelayConfig, UrllibTransport, outbox_counts
from vinspect.store.tables import AuditRecord, OutboxRecord
from vinspect.store.verify import verify_store


class Crash(BaseException):
    """Stands in for SIGKILL of the exporter: nothing after it runs, nothing catches it."""


class CrashAfterSend:
    """Real transport; every ``every``-th successful POST 'kills' the relay before it can record it."""

    def __init__(self, every: int) -> None:
        self._inner = UrllibTransport()
        self._every = every
        self._sent = 0

    def post(self, url: str, *, body: bytes, headers: Mapping[str, str], timeout_s: float) -> int:
        status = self._inner.post(url, body=body, headers=headers, timeout_s=timeout_s)
        self._sent += 1
        if self._sent % self._every == 0:
            raise Crash
        return status


def _config(url: str) -> RelayConfig:
    return RelayConfig(url=url, timeout_s=0.15, backoff_base_s=0.001, backoff_cap_s=0.01, batch=20)


def _store_with_revisions(engine: Engine, count: int) -> None:
    with session_scope(engine) as session:
        rita = repo.create_user(
            "rita",
            session=session,
            display_name="Rita R",
            role=Role.REVIEWER,
            password_hash="h",
            actor="system:bootstrap",
        ).id
        uuids = [
            repo.open_ncr(make_inspection(i, with_map=False), session=session, defaults=DEFAULTS).ncr_uuid
            for i in range(count)
        ]
        for ncr_uuid in uuids[::4]:  # some NCRs get revisions 2 and 3
            repo.claim_ncr(ncr_uuid, session=session, user_id=rita)
            repo.add_review(
                ncr_uuid,
                session=session,
                review=ReviewInput(user_id=rita, decision=ReviewDecision.CONFIRMED_DEFECT, reason="confirmed"),
            )


def _outbox(engine: Engine) -> dict[str, OutboxRecord]:
    with session_scope(engine, readonly=True) as session:
        return {r.idempotency_key: r for r in session.scalars(select(OutboxRecord))}


def test_outbox_every_committed_revision_arrives_once_through_200_faults(engine: Engine) -> None:
    _store_with_revisions(engine, 40)
    faults = [FAULTS[i % len(FAULTS)] for i in range(200)]
    random.Random(5).shuffle(faults)
    with QmsStub(faults, delay_s=0.2) as stub:
        crashes = 0
        transport = CrashAfterSend(every=9)
        while True:
            relay = OutboxRelay(engine, _config(stub.url), transport=transport, rng=random.Random(1))
            try:
                summary = relay.drain(max_seconds=60)
                break
            except Crash:
                crashes += 1  # a new relay process starts over from the outbox
    rows = _outbox(engine)
    assert summary.pending == 0 and summary.parked == 0 and crashes >= 5
    assert set(stub.applies) == set(rows) and set(stub.applies.values()) == {1}
    assert all(stub.payload_sha[k] == r.payload_sha256 for k, r in rows.items())
    assert sum(stub.attempts.values()) > len(rows) + 150 and stub.bad_digests == 0
    assert stub.latest == {u: max(r.revision for r in rows.values() if r.ncr_uuid == u) for u in stub.latest}
    with session_scope(engine, readonly=True) as session:
        assert outbox_counts(session=session) == {"DELIVERED": len(rows)}
        assert verify_store(session=session).ok


def test_outbox_never_sends_a_newer_revision_before_an_older_one(engine: Engine) -> None:
    _store_with_revisions(engine, 1)  # one NCR, revisions 1..3
    with QmsStub(["500", "503", "timeout", "500"], delay_s=0.2) as stub:
        OutboxRelay(engine, _config(stub.url)).drain(max_seconds=30)
    assert [k.rsplit(":", 1)[1] for k in stub.order] == ["1", "2", "3"]


@pytest.mark.parametrize("status", ["400", "404", "422"])
def test_outbox_client_errors_park_the_row_and_audit_it(engine: Engine, status: str) -> None:
    _store_with_revisions(engine, 2)
    with QmsStub([status]) as stub:
        summary = OutboxRelay(engine, _config(stub.url)).drain(max_seconds=30)
    assert summary.parked == 1 and summary.pending == 0
    with session_scope(engine, readonly=True) as session:
        parked = session.scalars(select(OutboxRecord).where(OutboxRecord.state == "PARKED")).one()
        audit = session.scalars(select(AuditRecord).where(AuditRecord.action == "ncr.export_parked")).one()
    assert parked.last_status == int(status) and audit.entity_id == parked.idempotency_key
    assert len(stub.applies) == len(_outbox(engine)) - 1


def test_outbox_unreachable_qms_leaves_rows_pending(engine: Engine) -> None:
    _store_with_revisions(engine, 2)
    relay = OutboxRelay(engine, _config("http://127.0.0.1:9/ncr"))  # discard port: connection refused
    summary = relay.drain_once()
    assert summary.delivered == 0 and summary.retried == 2 and summary.pending == 4  # revisions 2, 3 wait


def test_outbox_keeps_retrying_after_a_long_outage_without_overflowing(engine: Engine) -> None:
    # Issue 15: the relay's backoff was base * 2 ** (attempts - 1), a float overflow from the 1025th
    # failed attempt (9 to 17 hours of QMS outage at the jittered 60 s cap); it now stays at the cap.
    _store_with_revisions(engine, 1)
    with session_scope(engine) as session:
        for row in session.scalars(select(OutboxRecord)):
            row.attempts = 5000
    before = datetime.now(UTC)
    summary = OutboxRelay(engine, _config("http://127.0.0.1:9/ncr")).drain_once()  # connection refused
    assert summary.retried == 1
    rows = [r for r in _outbox(engine).values() if r.attempts == 5001]
    assert len(rows) == 1
    assert rows[0].state == PENDING
    due = rows[0].next_attempt_at if rows[0].next_attempt_at.tzinfo else rows[0].next_attempt_at.replace(tzinfo=UTC)
    assert before < due <= datetime.now(UTC) + timedelta(seconds=0.01)  # the 0.01 s cap, jittered


def test_capped_delay_walks_to_the_cap_and_stays_there() -> None:
    assert [capped_delay(n, initial_s=0.5, max_s=60.0, multiplier=2.0) for n in range(9)] == [
        0.5,
        1.0,
        2.0,
        4.0,
        8.0,
        16.0,
        32.0,
        60.0,
        60.0,
    ]
    assert capped_delay(10**6, initial_s=0.5, max_s=60.0, multiplier=2.0) == 60.0
    assert capped_delay(10**6, initial_s=0.1, max_s=5.0, multiplier=1.0) == 0.1
