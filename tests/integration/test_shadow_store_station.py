"""A store-backed station runs a candidate in shadow (issue 20): its statistics and disagreements go to the
store, not its data directory, and a reviewer app on another data directory (a plant's central app)
lists them with their frames and lets a reviewer judge one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))  # the shared webseed helpers

from webseed import PASSWORD, TEST_OPTIONS, TestClient, add_users, build_app, login

from testkit.bundles import write_golden_samples, write_tiny_bundle
from testkit.stations import approve_station
from vinspect.api.auth import PasswordService
from vinspect.models.registry import ModelRegistry
from vinspect.store import make_engine, session_scope
from vinspect.store.evidence import EvidenceStore
from vinspect.store.review_queries import StoreHandle
from vinspect.store.shadow_judgements import judgements
from vinspect.store.shadow_records import count_disagreements, merged_stats

PARTS = 60


def _bundle(root: Path, version: str, fail_at: float, review_at: float) -> Path:
    bundle = write_tiny_bundle(root / f"b{version}", fail_at=fail_at, review_at=review_at, version=version)
    write_golden_samples(
        bundle,
        [
            ("good", np.full((20, 20), 50, np.uint8), "PASS", 50 / 255),
            ("bad", np.full((20, 20), 245, np.uint8), "FAIL", 245 / 255),
        ],
    )
    return bundle


@pytest.mark.slow
def test_store_backed_station_writes_its_shadow_to_the_store_and_the_central_app_lists_it(tmp_path: Path) -> None:
    station_data = tmp_path / "station"
    registry = ModelRegistry(station_data / "models")
    registry.install(_bundle(tmp_path, "1", fail_at=0.32, review_at=0.313), activate=True)
    registry.install(_bundle(tmp_path, "2", fail_at=0.9, review_at=0.85))  # passes what the active one rejects
    product = (
        "{part_number: P-1, part_revision: A, part_name: disc, requirement_ref: DWG-1, site_id: plant1, line_id: l1}"
    )
    station = tmp_path / "st.yaml"
    station.write_text(
        "station_id: st-a\nmodel: {name: tiny}\nsignal: {kind: null}\n"
        "source: {kind: synthetic, fps: 40, size_px: 64, defect_rate: 0.3, distinct_parts: 32}\n"
        f"sinks: [{{kind: shadow, model: {{name: tiny, version: '2'}}, queue_size: 64}}, "
        f"{{kind: store, product: {product}}}, {{kind: jsonl}}]\n",
        encoding="utf-8",
    )
    approve_station(station, station_data)
    run = ["run", "--station", str(station), "--data-dir", str(station_data), "--max-parts", str(PARTS)]
    done = subprocess.run(
        [sys.executable, "-m", "vinspect", "--log-level", "ERROR", *run],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert not (station_data / "shadow").exists()  # store-backed: nothing under the station's data directory

    engine = make_engine(f"sqlite:///{station_data / 'vinspect.db'}")
    with session_scope(engine, readonly=True) as session:
        stats = merged_stats(session=session, candidate="tiny@2")
        n = count_disagreements(session=session, candidate="tiny@2")
    assert stats is not None and stats["stations"] == ["st-a"]
    assert stats["parts"] + stats["dropped_busy"] == PARTS and stats["parts"] > 0
    assert n > 0 and n == sum(stats["disagree"].values())

    # the plant's central app: its own data directory, the plant's store and evidence
    store = StoreHandle(engine=engine, evidence=EvidenceStore(station_data / "evidence"))
    add_users(
        store, PasswordService(time_cost=TEST_OPTIONS.argon2_time_cost, memory_cost_kib=TEST_OPTIONS.argon2_memory_kib)
    )
    app_data = tmp_path / "app"
    app_data.mkdir()
    with TestClient(build_app(app_data, store), base_url="http://127.0.0.1:8600", follow_redirects=False) as client:
        token = login(client, "reviewer")
        html = client.get("/queue").text
        section = html.split('id="shadow-tiny@2"')[1].split("</section>")[0]
        assert f"{stats['parts']} part(s) judged beside the active model" in section
        assert "Stations (from the store): st-a" in section and f"{n} disagreement(s)" in section
        first = section.split("<tr data-inspection=")[1].split('"')[1]
        image = client.get(f"/evidence/shadow/tiny@2/{first}")
        assert image.status_code == 200 and image.content[:8] == b"\x89PNG\r\n\x1a\n"
        judged = client.post(
            f"/shadow/tiny@2/{first}",
            data={"csrf_token": token, "truth": "defective", "defect_code": "other", "reason": "a dark blotch"}
            | {"password": PASSWORD},
        )
        assert judged.headers["location"] == "/queue#shadow-tiny@2"
        assert "Of 1 judged disagreement(s)" in client.get("/queue").text
    with session_scope(engine, readonly=True) as session:
        (j,) = judgements(session=session, candidate="tiny@2")
    assert j.station_id == "st-a" and j.image_sha256 is not None
    store.evidence.close()
    engine.dispose()
