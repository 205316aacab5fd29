"""What a candidate model running in shadow disagreed about, read for the review queue page.

Two places hold it: the store, for store-backed stations (:mod:`vinspect.store.shadow_records`;
a plant's central app sees every station there), and the app's own data directory, for a
store-less station that shares it. Both are merged per candidate: statistics summed, the newest
disagreements of either first.

A shadow sink (:mod:`vinspect.pipeline.shadow`) of a station on this data directory keeps, under
``<data dir>/shadow/<name>@<version>/``, its statistics (``stats.json``), one JSON line per
disagreement (``disagreements.jsonl``) and each such frame (``images/<inspection id>.png``).
This module lists them for the people who will sign the candidate's promotion: the newest
disagreements first, with both verdicts and scores. Reading never fails a page: a damaged line is
skipped and counted. :func:`judge_shadow` records a reviewer's signed judgement of one
disagreement (:mod:`vinspect.store.shadow_judgements`), keeping its frame in the evidence store.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import HTTPException

from vinspect.api.auth import AuthUser
from vinspect.api.deps import Services
from vinspect.api.workflow import check_signing_password, invalid
from vinspect.errors import StateError, VinspectError
from vinspect.pipeline.shadow import read_shadow_stats
from vinspect.store import session_scope
from vinspect.store import shadow_records as records
from vinspect.store.review_queries import DbSession
from vinspect.store.shadow_judgements import ShadowJudgement, judge_disagreement

__all__ = [
    "CANDIDATE",
    "INSPECTION_ID",
    "ShadowView",
    "candidate_stats",
    "disagreement_image",
    "find_disagreement",
    "judge_shadow",
    "shadow_image",
    "shadow_views",
]

CANDIDATE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}@[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
INSPECTION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_TAIL_BYTES = 1 << 20  # the newest disagreements only: the file's last MiB


@dataclass(frozen=True, slots=True, kw_only=True)
class ShadowView:
    """One candidate in shadow: its statistics and its newest disagreements (newest first)."""

    candidate: str
    stats: dict[str, Any] | None
    disagreements: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0
    unreadable: int = 0
    problem: str | None = None
    stations: list[dict[str, Any]] = field(default_factory=list)  # per-station statistics (store)


def _tail_lines(path: Path) -> tuple[list[str], bool]:
    with path.open("rb") as fh:
        size = fh.seek(0, 2)
        fh.seek(max(0, size - _TAIL_BYTES))
        data = fh.read()
    lines = data.decode("utf-8", errors="replace").splitlines()
    cut = size > _TAIL_BYTES
    return (lines[1:] if cut else lines), cut


def _view(folder: Path, *, limit: int) -> ShadowView:
    try:
        stats = read_shadow_stats(folder)
    except VinspectError as exc:
        return ShadowView(candidate=folder.name, stats=None, problem=str(exc))
    path = folder / "disagreements.jsonl"
    if not path.is_file():
        return ShadowView(candidate=folder.name, stats=stats)
    lines, cut = _tail_lines(path)
    rows, bad = [], 0
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if not isinstance(row, dict) or not INSPECTION_ID.match(str(row.get("inspection_id", ""))):
            bad += 1
            continue
        row["has_image"] = (folder / "images" / f"{row['inspection_id']}.png").is_file()
        rows.append(row)
    total = sum((stats or {}).get("disagree", {}).values()) if cut and stats else len(rows)
    return ShadowView(candidate=folder.name, stats=stats, disagreements=rows[::-1][:limit], total=total, unreadable=bad)


def _dir_views(data_dir: Path, *, limit: int) -> dict[str, ShadowView]:
    root = data_dir / "shadow"
    if not root.is_dir():
        return {}
    return {
        folder.name: _view(folder, limit=limit)
        for folder in sorted(root.iterdir())
        if folder.is_dir() and CANDIDATE.match(folder.name)
    }


def _merged(candidate: str, local: ShadowView | None, session: DbSession, *, limit: int) -> ShadowView:
    stations = records.station_stats(session=session, candidate=candidate)
    rows = records.recent_disagreements(session=session, candidate=candidate, limit=limit)
    total = records.count_disagreements(session=session, candidate=candidate)
    docs = [*stations, *([local.stats] if local is not None and local.stats else [])]
    if local is not None:
        rows = sorted([*rows, *local.disagreements], key=lambda r: str(r.get("captured_at") or ""), reverse=True)
    return ShadowView(
        candidate=candidate,
        stats=records.merge_stats(docs),
        disagreements=rows[:limit],
        total=total + (0 if local is None else local.total),
        unreadable=0 if local is None else local.unreadable,
        problem=None if local is None else local.problem,
        stations=stations,
    )


def shadow_views(data_dir: Path, *, session: DbSession | None = None, limit: int = 50) -> list[ShadowView]:
    """Every candidate that ran in shadow on a store-backed station (``session``) or on this data
    directory, by name."""
    local = _dir_views(data_dir, limit=limit)
    in_store = [] if session is None else records.candidates(session=session)
    views = {c: _merged(c, local.get(c), session, limit=limit) for c in in_store if session is not None}
    for name, view in local.items():
        views.setdefault(name, view)
    return [views[c] for c in sorted(views)]


def candidate_stats(data_dir: Path, session: DbSession, candidate: str) -> dict[str, Any] | None:
    """A candidate's shadow statistics over every station in the store and this data directory (what
    its evaluation records; None: it never ran in shadow). Raises ConfigError on unreadable local files."""
    local = read_shadow_stats(data_dir / "shadow" / candidate)
    return records.shadow_stats_with(session=session, candidate=candidate, local=local)


def shadow_image(data_dir: Path, candidate: str, inspection_id: str) -> bytes | None:
    """The PNG a shadow run kept for one disagreement (None: no such candidate, part or file)."""
    if not CANDIDATE.match(candidate) or not INSPECTION_ID.match(inspection_id):
        return None
    path = data_dir / "shadow" / candidate / "images" / f"{inspection_id}.png"
    try:
        return path.read_bytes()
    except OSError:
        return None


def find_disagreement(
    data_dir: Path, candidate: str, inspection_id: str, *, session: DbSession | None = None
) -> dict[str, Any] | None:
    """The recorded disagreement about one part, from the store first (None: no such candidate or part)."""
    if not CANDIDATE.match(candidate) or not INSPECTION_ID.match(inspection_id):
        return None
    if session is not None:
        row = records.find_disagreement(session=session, candidate=candidate, inspection_id=inspection_id)
        if row is not None:
            return row
    path = data_dir / "shadow" / candidate / "disagreements.jsonl"
    try:
        with path.open("r", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if f'"{inspection_id}"' not in line:
                    continue
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict) and row.get("inspection_id") == inspection_id:
                    row["has_image"] = (path.parent / "images" / f"{inspection_id}.png").is_file()
                    return row
    except OSError:
        return None
    return None


def disagreement_image(services: Services, candidate: str, inspection_id: str) -> bytes | None:
    """The frame of one disagreement: the evidence store's copy for a store row, else the data directory's."""
    with session_scope(services.store.engine, readonly=True) as session:
        row = find_disagreement(services.data_dir, candidate, inspection_id, session=session)
    if row is None:
        return None
    if row.get("image_sha256"):
        try:
            return services.store.evidence.read(str(row["image_sha256"]))
        except VinspectError:
            return None
    return shadow_image(services.data_dir, candidate, inspection_id)


def judge_shadow(
    services: Services,
    user: AuthUser,
    candidate: str,
    inspection_id: str,
    *,
    truth: str,
    defect_code: str,
    reason: str,
    password: str,
    source: str,
) -> ShadowJudgement:
    """Sign which model was right about a disagreement (password re-entry); its frame goes to the
    evidence store. 404: no such disagreement; 422: a missing answer; 409: the rule that refused."""
    with session_scope(services.store.engine, readonly=True) as session:
        row = find_disagreement(services.data_dir, candidate, inspection_id, session=session)
    if row is None:
        raise HTTPException(status_code=404, detail="no such shadow disagreement")
    if truth not in ("good", "defective"):
        raise invalid("truth", "say whether the part is good or defective")
    if truth == "defective" and not defect_code.strip():
        raise invalid("defect_code", "a defective part needs its defect code")
    if not reason.strip():
        raise invalid("reason", "a judgement needs a reason")
    check_signing_password(services, user, password, source=source, what=f"shadow {candidate} {inspection_id}")
    image_sha256 = row.get("image_sha256")  # a store row's frame is already evidence
    if image_sha256 is None:
        image = shadow_image(services.data_dir, candidate, inspection_id)
        image_sha256 = None if image is None else services.store.evidence.put(image, kind="image").sha256
    active = dict(row.get("active") or {})
    active["model"] = active.get("model") or row.get("active_model")
    try:
        with session_scope(services.store.engine) as session:
            return judge_disagreement(
                session=session,
                signer_user_id=user.user_id,
                candidate=candidate,
                inspection_id=inspection_id,
                station_id=row.get("station_id"),
                active=active,
                shadow=dict(row.get("shadow") or {}),
                good=truth == "good",
                defect_code=defect_code if truth == "defective" else None,
                image_sha256=image_sha256,
                reason=reason,
                source=source,
            )
    except StateError as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from exc
