"""Shadow mode in the store: what a store-backed station's shadow candidate saw, for every reviewer app.

A store-less station's shadow sink keeps its statistics and disagreements under its own data
directory (:mod:`vinspect.pipeline.shadow`); a store-backed one hands them to a
:class:`StoreShadowRecorder` instead, so a plant's central reviewer app lists the shadows of
every station (migration 0011):

* ``shadow_stats``: the latest statistics per (station, candidate), upserted at most once a
  second by the station (like its ``stations`` row);
* ``shadow_disagreements`` (append-only): each disagreement with both verdicts and scores; the
  frame goes to the evidence store by content hash, as NCR images do, before the row commits.

Readers: :func:`candidates` (names with statistics or disagreements), :func:`merged_stats` (one
candidate's statistics summed over its stations, what the promotion gate's ``min_shadow_parts``
reads), :func:`station_stats`, :func:`recent_disagreements` and :func:`find_disagreement`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vinspect.store.db import session_scope
from vinspect.store.evidence import EvidenceStore
from vinspect.store.tables import ShadowDisagreementRecord, ShadowStatsRecord, table_of

__all__ = [
    "StoreShadowRecorder",
    "candidates",
    "count_disagreements",
    "find_disagreement",
    "merge_stats",
    "merged_stats",
    "recent_disagreements",
    "shadow_stats_with",
    "station_stats",
]

_SUMMED = ("parts", "agree", "dropped_busy", "no_frame", "late", "errors")


class StoreShadowRecorder:
    """Writes one station's shadow statistics and disagreements to the store (the shadow's worker
    thread calls it, never the line's)."""

    def __init__(self, engine: Engine, evidence: EvidenceStore, *, station_id: str) -> None:
        self._engine, self._evidence, self._station_id = engine, evidence, station_id

    def stats(self, doc: Mapping[str, Any]) -> None:
        """Upsert the candidate's latest statistics on this station."""
        cand = doc.get("candidate") or {}
        values = {
            "station_id": self._station_id,
            "candidate": f"{cand.get('name')}@{cand.get('version')}"[:130],
            "candidate_sha256": str(cand.get("sha256") or "")[:64],
            "active_model": None if doc.get("active_model") is None else str(doc["active_model"])[:256],
            "parts": int(doc.get("parts") or 0),
            "stats_json": json.dumps(dict(doc), sort_keys=True),
            "updated_at": datetime.now(UTC),
        }
        table = table_of(ShadowStatsRecord)
        dialect = postgresql if self._engine.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(table).values(values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["station_id", "candidate"],
            set_={k: v for k, v in values.items() if k not in ("station_id", "candidate")},
        )
        with session_scope(self._engine) as session:
            session.execute(stmt)

    def disagreement(self, candidate: str, row: Mapping[str, Any], png: bytes | None) -> None:
        """Keep the frame (when there is one) and append the disagreement; a repeat is ignored."""
        image = None if png is None else self._evidence.put(png, kind="image").sha256
        active, shadow = row.get("active") or {}, row.get("shadow") or {}
        record = ShadowDisagreementRecord(
            station_id=self._station_id,
            candidate=candidate[:130],
            inspection_id=str(row["inspection_id"])[:64],
            part_seq=row.get("part_seq"),
            part_id=None if row.get("part_id") is None else str(row["part_id"])[:128],
            captured_at=datetime.fromisoformat(str(row["captured_at"])),
            active_model=None if row.get("active_model") is None else str(row["active_model"])[:256],
            active_verdict=str(active.get("verdict")),
            active_score=active.get("score"),
            active_reasons=json.dumps(list(active.get("reasons") or [])),
            shadow_verdict=str(shadow.get("verdict")),
            shadow_score=shadow.get("score"),
            image_sha256=image,
            recorded_at=datetime.now(UTC),
        )
        try:
            with session_scope(self._engine) as session:
                session.add(record)
        except IntegrityError:  # the same part recorded twice (a replayed frame): keep the first
            return

    def close(self) -> None:
        self._evidence.close()


def _row(r: ShadowDisagreementRecord) -> dict[str, Any]:
    return {
        "inspection_id": r.inspection_id,
        "station_id": r.station_id,
        "part_seq": r.part_seq,
        "part_id": r.part_id,
        "captured_at": r.captured_at.isoformat(),
        "active": {
            "verdict": r.active_verdict,
            "score": r.active_score,
            "reasons": json.loads(r.active_reasons or "[]"),
            "model": r.active_model,
        },
        "shadow": {"verdict": r.shadow_verdict, "score": r.shadow_score},
        "image_sha256": r.image_sha256,
        "has_image": r.image_sha256 is not None,
        "source": "store",
    }


def candidates(*, session: Session) -> list[str]:
    """Every candidate with shadow statistics or disagreements in the store, by name."""
    names = set(session.scalars(select(ShadowStatsRecord.candidate).distinct()))
    names |= set(session.scalars(select(ShadowDisagreementRecord.candidate).distinct()))
    return sorted(names)


def station_stats(*, session: Session, candidate: str) -> list[dict[str, Any]]:
    """The candidate's latest statistics on each station (``station_id`` added), by station."""
    out = []
    for r in session.scalars(
        select(ShadowStatsRecord).where(ShadowStatsRecord.candidate == candidate).order_by(ShadowStatsRecord.station_id)
    ):
        try:
            doc = json.loads(r.stats_json)
        except ValueError:
            continue
        if isinstance(doc, dict):
            out.append({**doc, "station_id": r.station_id})
    return out


def merge_stats(docs: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Several statistics documents (stations, or the store and a data directory) as one: counts
    summed, agreement recomputed, the newest update, the worst shadow latency p99."""
    docs = [d for d in docs if d]
    if not docs:
        return None
    out: dict[str, Any] = {k: sum(int(d.get(k) or 0) for d in docs) for k in _SUMMED}
    disagree: dict[str, int] = {}
    for d in docs:
        for kind, n in (d.get("disagree") or {}).items():
            disagree[kind] = disagree.get(kind, 0) + int(n)
    out["disagree"] = disagree
    out["agreement"] = out["agree"] / out["parts"] if out["parts"] else None
    actives = sorted({str(d["active_model"]) for d in docs if d.get("active_model")})
    out["active_model"] = ", ".join(actives) or None
    out["updated_at"] = max((str(d.get("updated_at") or "") for d in docs), default="") or None
    p99s = [float(p) for d in docs if (p := (d.get("latency_ms") or {}).get("p99")) is not None]
    out["latency_ms"] = {"p99": max(p99s) if p99s else None}
    out["stations"] = sorted({str(d["station_id"]) for d in docs if d.get("station_id")})
    out["candidate"] = next((d.get("candidate") for d in docs if d.get("candidate")), None)
    return out


def merged_stats(*, session: Session, candidate: str) -> dict[str, Any] | None:
    """The candidate's statistics over every station that ran it in shadow (None: none)."""
    return merge_stats(station_stats(session=session, candidate=candidate))


def shadow_stats_with(*, session: Session, candidate: str, local: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The candidate's statistics over every store-backed station plus ``local`` (a store-less
    station's ``stats.json`` in this data directory), summed; ``local`` unchanged when the store has
    none; None: it never ran in shadow. What a recorded evaluation's ``shadow_parts`` counts."""
    stations = station_stats(session=session, candidate=candidate)
    if not stations:
        return None if local is None else dict(local)
    return merge_stats([*stations, *([local] if local else [])])


def count_disagreements(*, session: Session, candidate: str) -> int:
    """How many disagreements the store holds for the candidate."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(ShadowDisagreementRecord)
            .where(ShadowDisagreementRecord.candidate == candidate)
        )
        or 0
    )


def recent_disagreements(*, session: Session, candidate: str, limit: int = 50) -> list[dict[str, Any]]:
    """The candidate's newest disagreements, newest first."""
    rows = session.scalars(
        select(ShadowDisagreementRecord)
        .where(ShadowDisagreementRecord.candidate == candidate)
        .order_by(ShadowDisagreementRecord.id.desc())
        .limit(limit)
    )
    return [_row(r) for r in rows]


def find_disagreement(*, session: Session, candidate: str, inspection_id: str) -> dict[str, Any] | None:
    """One recorded disagreement (None: not in the store)."""
    r = session.scalar(
        select(ShadowDisagreementRecord).where(
            ShadowDisagreementRecord.candidate == candidate, ShadowDisagreementRecord.inspection_id == inspection_id
        )
    )
    return None if r is None else _row(r)
