"""The station registry: each running station reports itself into the store (issue 18).

A station upserts one ``stations`` row (:class:`~vinspect.store.tables.StationRow`) every
``period_s`` from its status snapshot (the same document as ``status.json``): identity (site,
line, host, pid, software version), active model, state, cumulative part counters, and over the
last period its rate, reject share (every part not accepted: FAIL and REVIEW) and latency p50/p99
of this run. The reviewer app lists them (:func:`list_stations`); a row whose heartbeat is older
than three periods is shown as stale (the station stopped or lost the database).

The report takes no writer lock (a row lock on its own row only), so it never waits for another
station's commit; a failed report is logged and counted, never raised into the line.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from vinspect import __version__
from vinspect.errors import StoreError
from vinspect.store.db import session_scope
from vinspect.store.tables import StationRow, table_of

__all__ = ["STALE_PERIODS", "StationIdentity", "StationReporter", "StationView", "list_stations", "report_station"]

STALE_PERIODS = 3.0
_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class StationIdentity:
    """Who reports: the station file's id and the product's site and line."""

    station_id: str
    site_id: str | None = None
    line_id: str | None = None
    opcua_endpoint: str | None = None
    config_sha256: str | None = None  # the station configuration version it runs (migration 0010)


@dataclass(frozen=True, slots=True, kw_only=True)
class StationView:
    """One station as the plant overview shows it."""

    station_id: str
    site_id: str | None
    line_id: str | None
    host: str
    pid: int
    software_version: str
    model_name: str | None
    model_version: str | None
    model_sha256: str | None
    state: str
    reason: str | None
    started_at: datetime
    heartbeat_at: datetime
    period_s: float
    age_s: float
    stale: bool
    triggers: int
    passed: int
    review: int
    failed_defect: int
    failed_fault: int
    parts_per_s: float | None
    reject_rate: float | None
    p50_ms: float | None
    p99_ms: float | None
    opcua_endpoint: str | None
    config_sha256: str | None = None


def _counters(status: Mapping[str, Any]) -> dict[str, int]:
    books = status.get("books") or {}
    faults = books.get("failed_fault") or {}
    return {
        "triggers": int(books.get("triggers", 0)),
        "passed": int(books.get("passed", 0)),
        "review": int(books.get("review", 0)),
        "failed_defect": int(books.get("failed_defect", 0)),
        "failed_fault": int(sum(int(v) for v in faults.values())),
    }


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def report_station(
    engine: Engine,
    identity: StationIdentity,
    status: Mapping[str, Any],
    *,
    started_at: datetime,
    period_s: float,
    parts_per_s: float | None,
    reject_rate: float | None,
    state: str | None = None,
    now: datetime | None = None,
) -> None:
    """Upsert the station's row from a status snapshot (``PipelineStatus.to_dict()``).

    Raises:
        StoreError: the database refused the write.
    """
    model = status.get("model") or {}
    latency = status.get("latency_ms") or {}
    values: dict[str, Any] = {
        "station_id": identity.station_id,
        "site_id": identity.site_id,
        "line_id": identity.line_id,
        "host": socket.gethostname()[:255],
        "pid": os.getpid(),
        "software_version": __version__,
        "model_name": model.get("name"),
        "model_version": model.get("version"),
        "model_sha256": model.get("sha256"),
        "state": state or str(status.get("state", "UNKNOWN")),
        "reason": status.get("reason"),
        "started_at": started_at,
        "heartbeat_at": now or datetime.now(UTC),
        "period_s": period_s,
        **_counters(status),
        "parts_per_s": parts_per_s,
        "reject_rate": reject_rate,
        "p50_ms": _float(latency.get("p50_ms")),
        "p99_ms": _float(latency.get("p99_ms")),
        "opcua_endpoint": identity.opcua_endpoint,
        "config_sha256": identity.config_sha256,
    }
    table = table_of(StationRow)
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table).values(values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["station_id"], set_={k: v for k, v in values.items() if k != "station_id"}
    )
    with session_scope(engine) as session:
        session.execute(stmt)


def list_stations(
    *, session: Session, now: datetime | None = None, site_id: str | None = None, line_id: str | None = None
) -> list[StationView]:
    """Every registered station (optionally of one site / line), ordered by site, line, station."""
    now = now or datetime.now(UTC)
    stmt = select(StationRow).order_by(StationRow.site_id, StationRow.line_id, StationRow.station_id)
    if site_id:
        stmt = stmt.where(StationRow.site_id == site_id)
    if line_id:
        stmt = stmt.where(StationRow.line_id == line_id)
    views = []
    for row in session.scalars(stmt):
        age = max(0.0, (now - row.heartbeat_at).total_seconds())
        fields = {c.name: getattr(row, c.name) for c in table_of(StationRow).columns}
        views.append(StationView(**fields, age_s=round(age, 1), stale=age > STALE_PERIODS * row.period_s))
    return views


class StationReporter:
    """Reports ``snapshot()`` every ``period_s`` on its own thread; a last report (``STOPPED``) at exit."""

    def __init__(
        self,
        engine: Engine,
        identity: StationIdentity,
        *,
        snapshot: Callable[[], Mapping[str, Any]],
        period_s: float = 2.0,
    ) -> None:
        self.engine, self.identity, self.period_s = engine, identity, period_s
        self.errors = 0
        self._snapshot = snapshot
        self._started_at = datetime.now(UTC)
        self._last: tuple[float, dict[str, int]] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="vinspect-station-report", daemon=True)

    def _rates(self, counters: dict[str, int], clock: float) -> tuple[float | None, float | None]:
        last, self._last = self._last, (clock, counters)
        if last is None or clock <= last[0]:
            return None, None
        parts = counters["triggers"] - last[1]["triggers"]
        accepted = counters["passed"] - last[1]["passed"]
        rate = parts / (clock - last[0])
        return round(rate, 2), (round((parts - accepted) / parts, 4) if parts > 0 else None)

    def report_now(self, *, state: str | None = None) -> None:
        """One report from the current snapshot; failures are logged and counted."""
        try:
            status = self._snapshot()
            rate, rejects = self._rates(_counters(status), time.monotonic())
            report_station(
                self.engine,
                self.identity,
                status,
                started_at=self._started_at,
                period_s=self.period_s,
                parts_per_s=rate,
                reject_rate=rejects,
                state=state,
            )
        except (StoreError, OSError, ValueError, TypeError) as exc:
            self.errors += 1
            _log.warning(
                "station %s: registry report failed (%d so far): %s", self.identity.station_id, self.errors, exc
            )

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            self.report_now()

    def __enter__(self) -> StationReporter:
        self.report_now()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.report_now(state="STOPPED")
