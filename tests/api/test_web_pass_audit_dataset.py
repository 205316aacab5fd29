"""Issue 20 item 1: audited PASS samples become training data in ``vinspect dataset from-reviews``.

A PASS part drawn into the blind audit sample keeps its image (the station's store sink); an
auditor answers in the reviewer app. CONFORMS puts the image in good/, ESCAPE (a defect the
machine let through) in its defect code's folder, each with a provenance file naming the
inspection, the auditor, the audit row and the model. Unaudited samples give nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from webseed import DEFAULTS, PASSWORD, TEST_OPTIONS, TestClient, add_users, build_app, inspection, login, open_store

from vinspect.api.auth import PasswordService
from vinspect.cli import main
from vinspect.dataset.layouts import open_dataset
from vinspect.store.review_queries import is_sampled
from vinspect.store.sink import StoreSink
from vinspect.types import Verdict


def test_audited_pass_samples_are_labelled_by_the_auditors_answer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    store = open_store(data)
    rate = TEST_OPTIONS.pass_sample_rate
    with StoreSink(store.engine, store.evidence, defaults=DEFAULTS, pass_sample_rate=rate) as sink:
        for seq in range(1, 31):
            sink.write(inspection(seq, Verdict.PASS, score=0.2, part_id=f"P{seq:05d}"))
    sampled = [f"insp-{seq:06d}" for seq in range(1, 31) if is_sampled(f"insp-{seq:06d}", rate)]
    assert len(sampled) >= 3, sampled
    add_users(
        store, PasswordService(time_cost=TEST_OPTIONS.argon2_time_cost, memory_cost_kib=TEST_OPTIONS.argon2_memory_kib)
    )
    with TestClient(build_app(data, store), base_url="http://127.0.0.1:8600", follow_redirects=False) as client:
        token = login(client, "reviewer")
        for inspection_id, body in (
            (sampled[0], {"decision": "CONFORMS", "reason": "clean part"}),
            (sampled[1], {"decision": "ESCAPE", "reason": "scratch at the edge", "defect_code": "scratch"}),
        ):
            answer = client.post(
                f"/api/v1/samples/{inspection_id}/review",
                headers={"X-CSRF-Token": token},
                json=body | {"password": PASSWORD},
            )
            assert answer.status_code == 204, answer.text
    out = tmp_path / "set"
    assert main(["dataset", "from-reviews", "--data-dir", str(data), "--out", str(out)]) == 0
    assert "2 from reviews" in capsys.readouterr().out
    index = open_dataset(out)
    assert sorted((s.label, s.stem) for s in index.samples) == [
        ("good", f"pass-{sampled[0]}"),
        ("scratch", f"pass-{sampled[1]}"),
    ]
    prov = json.loads((out / "scratch" / f"pass-{sampled[1]}.provenance.json").read_text())
    assert prov["source"] == "pass-audit" and prov["decision"] == "ESCAPE" and prov["label"] == "scratch"
    assert prov["inspection_id"] == sampled[1] and prov["auditor"] == "Reviewer Person"
    assert prov["model"]["name"] == "tile" and len(prov["audit_row_hash"]) == 64 and prov["audit_seq"] > 0
    assert json.loads((out / "good" / f"pass-{sampled[0]}.provenance.json").read_text())["decision"] == "CONFORMS"
