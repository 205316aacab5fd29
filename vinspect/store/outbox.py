"""Transactional outbox and the webhook relay that drains it to the QMS.

Each NCR change writes one outbox row (the full canonical document at that revision) in the
same transaction as the change. :class:`OutboxRelay` POSTs due rows with
``Idempotency-Key: <ncr_uuid>:<revision>`` and ``Content-Digest: sha-256=:<b64>:`` (RFC 9530);
the receiver upserts on ``ncr_uuid`` and ignores keys it has seen, so a crash between a
successful POST and the "delivered" mark costs a repeat the receiver drops: each NCR revision
arrives exactly once in effect. 2xx = delivered (audited as an export); 408, 429, 5xx, timeouts
and connection errors are retried with capped exponential backoff and jitter; any other status
parks the row for a human. A newer revision of an NCR is never sent while an older one is
still pending. No database transaction is held open during an HTTP request.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import logging
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from vinspect.backoff import capped_delay
from vinspect.errors import StoreError
from vinspect.store.audit import AuditEntry, append_audit
from vinspect.store.canonical import canonical_json, sha256_hex
from vinspect.store.db import session_scope
from vinspect.store.tables import OutboxRecord, table_of

__all__ = [
    "DrainSummary",
    "OutboxRelay",
    "RelayConfig",
    "UrllibTransport",
    "WebhookTransport",
    "check_url",
    "enqueue",
    "enqueue_many",
    "outbox_counts",
]

logger = logging.getLogger(__name__)

PENDING, DELIVERED, PARKED = "PENDING", "DELIVERED", "PARKED"


def enqueue(document: Mapping[str, Any], *, session: Session, now: datetime, target: str = "qms") -> str:
    """Queue one NCR revision for delivery inside the caller's transaction; returns its key."""
    return enqueue_many([document], session=session, now=now, target=target)[0]


def enqueue_many(
    documents: Sequence[Mapping[str, Any]], *, session: Session, now: datetime, target: str = "qms"
) -> list[str]:
    """Queue several NCR revisions with one INSERT round trip; returns their keys in order."""
    rows: list[dict[str, Any]] = []
    for document in documents:
        payload = canonical_json(document).decode("utf-8")
        rows.append(
            {
                "ncr_uuid": str(document["ncr_uuid"]),
                "revision": int(document["revision"]),
                "target": target,
                "idempotency_key": f"{document['ncr_uuid']}:{document['revision']}",
                "payload": payload,
                "payload_sha256": sha256_hex(payload.encode("utf-8")),
                "created_at": now,
                "state": PENDING,
                "attempts": 0,
                "next_attempt_at": now,
                "last_status": None,
                "last_error": None,
                "delivered_at": None,
            }
        )
    if rows:
        session.connection().execute(table_of(OutboxRecord).insert(), rows)
    return [row["idempotency_key"] for row in rows]


def outbox_counts(*, session: Session) -> dict[str, int]:
    """Rows per state (reconciliation: committed revisions vs delivered)."""
    rows = session.execute(select(OutboxRecord.state, func.count()).group_by(OutboxRecord.state))
    return {state: int(n) for state, n in rows}


class WebhookTransport(Protocol):
    """POST bytes; return the HTTP status, raise StoreError when no status was received."""

    def post(self, url: str, *, body: bytes, headers: Mapping[str, str], timeout_s: float) -> int: ...


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirected POST is never followed: the status parks the row


class UrllibTransport:
    """Stdlib transport; environment proxies are ignored (the QMS URL is used as given)."""

    def __init__(self) -> None:
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())

    def post(self, url: str, *, body: bytes, headers: Mapping[str, str], timeout_s: float) -> int:
        check_url(url)
        request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
        try:
            with self._opener.open(request, timeout=timeout_s) as response:
                response.read()
                status = getattr(response, "status", None)
                if not isinstance(status, int):  # not an HTTP answer: never a crash, never "delivered"
                    raise StoreError(f"POST {url}: no HTTP status in the answer")
                return status
        except urllib.error.HTTPError as exc:
            exc.close()
            return int(exc.code)
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            raise StoreError(f"POST {url}: {exc}") from exc


def check_url(url: str) -> str:
    """The webhook URL if it is http(s) with a host; StoreError naming the problem otherwise."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise StoreError(f"outbox URL {url!r}: only http:// or https:// URLs with a host are allowed")
    return url


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayConfig:
    """Where and how to deliver; times in seconds. The URL must be http(s) (checked here)."""

    url: str
    target: str = "qms"
    timeout_s: float = 5.0
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 60.0
    batch: int = 50

    def __post_init__(self) -> None:
        check_url(self.url)


@dataclass(frozen=True, slots=True, kw_only=True)
class DrainSummary:
    delivered: int = 0
    retried: int = 0
    parked: int = 0
    pending: int = 0


@dataclass(frozen=True, slots=True)
class _Due:
    id: int
    ncr_uuid: str
    revision: int
    key: str
    payload: str
    payload_sha256: str
    attempts: int


class OutboxRelay:
    """Drains the outbox of one store to one webhook target (run one relay per store)."""

    def __init__(
        self,
        engine: Engine,
        config: RelayConfig,
        *,
        transport: WebhookTransport | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._engine = engine
        self._config = config
        self._transport = transport or UrllibTransport()
        self._rng = rng or random.Random()
        self._sleep = sleep

    def _due(self) -> list[_Due]:
        cfg = self._config
        with session_scope(self._engine, readonly=True) as session:
            rows = session.scalars(
                select(OutboxRecord)
                .where(
                    OutboxRecord.target == cfg.target,
                    OutboxRecord.state == PENDING,
                    OutboxRecord.next_attempt_at <= datetime.now(UTC),
                )
                .order_by(OutboxRecord.id)
                .limit(cfg.batch)
            )
            due = [
                _Due(r.id, r.ncr_uuid, r.revision, r.idempotency_key, r.payload, r.payload_sha256, r.attempts)
                for r in rows
            ]
            uuids = {d.ncr_uuid for d in due}
            older = session.execute(
                select(OutboxRecord.ncr_uuid, func.min(OutboxRecord.revision))
                .where(
                    OutboxRecord.target == cfg.target, OutboxRecord.state == PENDING, OutboxRecord.ncr_uuid.in_(uuids)
                )
                .group_by(OutboxRecord.ncr_uuid)
            ).all()
        first_pending = {uuid: int(rev) for uuid, rev in older}
        return [d for d in due if d.revision == first_pending.get(d.ncr_uuid, d.revision)]

    def _headers(self, item: _Due) -> dict[str, str]:
        digest = base64.b64encode(hashlib.sha256(item.payload.encode("utf-8")).digest()).decode("ascii")
        return {
            "Content-Type": "application/json",
            "Idempotency-Key": item.key,
            "Content-Digest": f"sha-256=:{digest}:",
            "X-Vinspect-Payload-Sha256": item.payload_sha256,
        }

    def _send(self, item: _Due) -> tuple[int | None, str | None]:
        try:
            status = self._transport.post(
                self._config.url,
                body=item.payload.encode("utf-8"),
                headers=self._headers(item),
                timeout_s=self._config.timeout_s,
            )
        except StoreError as exc:
            return None, str(exc)
        return status, None

    def _backoff(self, attempts: int) -> timedelta:
        cfg = self._config
        delay = capped_delay(attempts - 1, initial_s=cfg.backoff_base_s, max_s=cfg.backoff_cap_s, multiplier=2.0)
        return timedelta(seconds=delay * (0.5 + self._rng.random() / 2))

    def _record(self, item: _Due, *, status: int | None, error: str | None) -> str:
        now = datetime.now(UTC)
        with session_scope(self._engine) as session:
            row = session.get(OutboxRecord, item.id)
            if row is None or row.state != PENDING:
                return row.state if row is not None else PARKED
            row.attempts += 1
            row.last_status, row.last_error = status, error
            if status is not None and 200 <= status < 300:
                row.state, row.delivered_at = DELIVERED, now
                append_audit(
                    AuditEntry(
                        actor="system:outbox",
                        action="ncr.export",
                        entity="outbox",
                        entity_id=item.key,
                        new_value=str(status),
                        source=self._config.target,
                        record_sha256=item.payload_sha256,
                    ),
                    session=session,
                    at=now,
                )
            elif status is None or status in (408, 429) or status >= 500:
                row.next_attempt_at = now + self._backoff(row.attempts)
            else:
                row.state = PARKED
                append_audit(
                    AuditEntry(
                        actor="system:outbox",
                        action="ncr.export_parked",
                        entity="outbox",
                        entity_id=item.key,
                        new_value=str(status),
                        source=self._config.target,
                        reason=f"QMS answered {status}",
                    ),
                    session=session,
                    at=now,
                )
            return row.state

    def drain_once(self) -> DrainSummary:
        """One pass over the rows due now."""
        counts = {DELIVERED: 0, PENDING: 0, PARKED: 0}
        for item in self._due():
            status, error = self._send(item)
            if error is not None or status is None or not 200 <= status < 300:
                logger.warning("QMS delivery failed", extra={"key": item.key, "status": status, "error": error})
            counts[self._record(item, status=status, error=error)] += 1
        return DrainSummary(
            delivered=counts[DELIVERED], retried=counts[PENDING], parked=counts[PARKED], pending=self.pending()
        )

    def pending(self) -> int:
        with session_scope(self._engine, readonly=True) as session:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(OutboxRecord)
                    .where(OutboxRecord.target == self._config.target, OutboxRecord.state == PENDING)
                )
                or 0
            )

    def _next_due_s(self) -> float:
        with session_scope(self._engine, readonly=True) as session:
            nxt = session.scalar(
                select(func.min(OutboxRecord.next_attempt_at)).where(
                    OutboxRecord.target == self._config.target, OutboxRecord.state == PENDING
                )
            )
        return 0.0 if nxt is None else max(0.0, (nxt - datetime.now(UTC)).total_seconds())

    def drain(self, *, max_seconds: float = 60.0) -> DrainSummary:
        """Deliver until nothing is pending or ``max_seconds`` have passed."""
        deadline = time.monotonic() + max_seconds
        total = DrainSummary()
        while True:
            step = self.drain_once()
            total = DrainSummary(
                delivered=total.delivered + step.delivered,
                retried=total.retried + step.retried,
                parked=total.parked + step.parked,
                pending=step.pending,
            )
            left = deadline - time.monotonic()
            if step.pending == 0 or left <= 0:
                return total
            self._sleep(min(self._next_due_s(), left, 1.0))
