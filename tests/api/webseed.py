"""Seed data for the web tests: a real store with NCRs opened through StoreSink from numpy images.

Shared by tests/api and tests/browser (imported by module name; the browser conftest puts this
directory on sys.path).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from vinspect.api.app import create_app
from vinspect.api.auth import PasswordService
from vinspect.api.deps import ApiOptions
from vinspect.api.status_source import FixedStatus
from vinspect.models.registry import ModelRegistry
from vinspect.settings import Settings
from vinspect.store import EvidenceStore, NcrDefaults, NcrRef, StoreSink, make_engine, session_scope, upgrade
from vinspect.store.ncr import Role
from vinspect.store.review_queries import StoreHandle
from vinspect.store.users import create_user
from vinspect.types import Decision, Frame, Inspection, ModelRef, Prediction, Region, StageTimings, Verdict

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # StarletteDeprecationWarning: httpx2 is not installed in this venv
    from fastapi.testclient import TestClient

PASSWORD = "correct horse battery staple"
ROLES = tuple(r.value for r in Role)
TEST_OPTIONS = ApiOptions(pass_sample_rate=0.2, argon2_time_cost=1, argon2_memory_kib=1024)
MODEL = ModelRef(name="tile", version="3", sha256="ab" * 32)
DEFAULTS = NcrDefaults(
    part_number="TILE-100",
    part_revision="B",
    part_name="ceramic tile",
    requirement_ref="DWG-100 rev B surface class A",
    site_id="plant-1",
    line_id="line-1",
)
STATUS = {
    "schema_version": 1,
    "state": "OPERATIONAL",
    "station_id": "tile-line-1",
    "reason": "",
    "books": {
        "triggers": 1200,
        "passed": 1150,
        "review": 30,
        "failed_defect": 18,
        "failed_fault": {"late": 2},
        "discrepancy": 0,
    },
    "in_flight": 0,
    "books_closed": True,
    "line_stopped": False,
    "queue_depth": 1,
    "latency_ms": {"n": 1200, "p50_ms": 11.8, "p99_ms": 24.5, "max_ms": 31.0},
    "model": {"name": "tile", "version": "3", "sha256": "ab" * 32},
}


@dataclass(frozen=True)
class Seeded:
    store: StoreHandle
    review: list[NcrRef]
    fails: list[NcrRef]
    pass_ids: list[str]


def part_image(seq: int, *, defect: bool) -> np.ndarray:
    """A 96x128 textured tile; defective ones carry a bright scratch."""
    rng = np.random.default_rng(seq)
    yy, xx = np.mgrid[0:96, 0:128]
    image = (90 + 30 * np.sin(xx / 9.0) * np.cos(yy / 13.0) + rng.normal(0, 6, (96, 128))).clip(0, 255)
    if defect:
        for t in range(40):
            y, x = 20 + t, 30 + (t * 3) // 2 + seq % 20
            image[y : y + 3, x : x + 3] = 250
    return image.astype(np.uint8)


def anomaly_map(image: np.ndarray) -> np.ndarray:
    smooth = image.astype(np.float32) / 255.0
    return np.clip((smooth - 0.5) * 2.0, 0.0, 1.0).astype(np.float32)


def inspection(
    seq: int, verdict: Verdict, *, score: float, part_id: str, station: str = "tile-line-1", at: datetime | None = None
) -> Inspection:
    image = part_image(seq, defect=verdict is not Verdict.PASS)
    image.flags.writeable = False
    captured = (at or datetime(2026, 11, 23, 8, 0, tzinfo=UTC)) + timedelta(seconds=seq)
    frame = Frame(
        image=image,
        source_id="cam0",
        frame_id=seq,
        captured_at=captured,
        pixel_format="Mono8",
        origin="synthetic",
        part_id=part_id,
    )
    regions = (
        ()
        if verdict is Verdict.PASS
        else (Region(label="scratch", score=score, box_xyxy=(30, 20, 90, 62), area_px=360),)
    )
    prediction = Prediction(
        score=score,
        anomaly_map=anomaly_map(image),
        regions=regions,
        defect_code=None if verdict is Verdict.PASS else "scratch",
    )
    reasons = {Verdict.PASS: (), Verdict.REVIEW: ("review_band",), Verdict.FAIL: ("score",)}[verdict]
    decision = Decision(verdict=verdict, reasons=reasons, policy_id="tile-policy-1", fail_at=0.71, review_at=0.55)
    return Inspection(
        inspection_id=f"insp-{seq:06d}",
        station_id=station,
        part_seq=seq,
        frame=frame,
        prediction=prediction,
        decision=decision,
        timings=StageTimings(),
        model=MODEL,
    )


def open_store(data_dir: Path) -> StoreHandle:
    data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(f"sqlite:///{data_dir / 'vinspect.db'}")
    upgrade(engine)
    return StoreHandle(engine=engine, evidence=EvidenceStore(data_dir / "evidence", fsync=False))


def seed(store: StoreHandle, *, n_review: int = 4, n_fail: int = 2, n_pass: int = 40) -> Seeded:
    """NCRs for REVIEW and FAIL parts plus plain PASS rows, all through StoreSink."""
    refs: dict[str, list[NcrRef]] = {"review": [], "fail": []}
    sink = StoreSink(store.engine, store.evidence, defaults=DEFAULTS, batch_size=1000, flush_interval_s=3600)
    seq = 0
    pass_ids = []
    for _ in range(n_pass):
        seq += 1
        sink.write(inspection(seq, Verdict.PASS, score=0.2, part_id=f"P{seq:05d}"))
        pass_ids.append(f"insp-{seq:06d}")
    for kind, verdict, score in (("review", Verdict.REVIEW, 0.62), ("fail", Verdict.FAIL, 0.93)):
        for _ in range(n_review if kind == "review" else n_fail):
            seq += 1
            refs[kind].append(sink.open(inspection(seq, verdict, score=score + seq / 1000, part_id=f"P{seq:05d}")))
    sink.close()
    return Seeded(store=store, review=refs["review"], fails=refs["fail"], pass_ids=pass_ids)


def add_users(store: StoreHandle, passwords: PasswordService) -> dict[str, int]:
    """One active account per role (username = role), all with PASSWORD."""
    ids = {}
    hashed = passwords.hash(PASSWORD)
    with session_scope(store.engine) as session:
        for role in ROLES:
            user = create_user(
                role,
                session=session,
                display_name=f"{role.replace('_', ' ').title()} Person",
                role=role,
                password_hash=hashed,
                actor="system:test",
            )  # type: ignore[arg-type]
            ids[role] = user.id
    return ids


def build_app(
    data_dir: Path,
    store: StoreHandle,
    *,
    options: ApiOptions = TEST_OPTIONS,  # type: ignore[no-untyped-def]
    **overrides: Any,
):
    settings = Settings(data_dir=data_dir, **overrides)
    return create_app(
        settings, store=store, registry=ModelRegistry(data_dir / "models"), status=FixedStatus(STATUS), options=options
    )


def csrf_of(client: TestClient) -> str:
    token: str = client.get("/api/v1/auth/session").json()["csrf_token"]
    return token


def login(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Sign in through the JSON API; returns the new CSRF token."""
    response = client.post(
        "/api/v1/auth/login",
        json={"username": username, "password": password},
        headers={"X-CSRF-Token": csrf_of(client)},
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["csrf_token"]
    return token


def install_models(root: Path) -> None:
    """Manifest-only registry entries (enough for the models page; nothing loads them)."""
    for version, sha in (("2", "12" * 32), ("3", MODEL.sha256)):
        bundle = root / "tile" / version
        bundle.mkdir(parents=True, exist_ok=True)
        manifest = {
            "name": "tile",
            "version": version,
            "sha256": sha,
            "task": "anomaly",
            "input": {"channels": 1, "model_size_px": [32, 32]},
            "labels": [],
            "thresholds": {
                "fail_at": 0.71,
                "review_at": 0.55,
                "map_at": 0.71,
                "evidence": {
                    "target": "golden",
                    "n_good": 400,
                    "n_defect": 60,
                    "false_reject_rate": 0.01,
                    "escape_rate": 0.0,
                },
            },
            "training": {
                "dataset_root": "-",
                "dataset_layout": "classes",
                "dataset_sha256": "0" * 64,
                "n_train_good": 0,
                "n_train_defect": 0,
                "config": {},
                "metrics": {},
                "duration_s": 0.0,
            },
        }
        (bundle / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    (root / "tile" / "ACTIVE").write_text("3\n", encoding="utf-8")
