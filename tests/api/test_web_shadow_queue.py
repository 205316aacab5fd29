"""Issue 20 item 5 in the reviewer app: a candidate's shadow disagreements are listed on the review queue
page (newest first, both verdicts and scores, the frame), from what the real shadow sink wrote, and a
reviewer judges one (signed, counted, its frame kept as evidence)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from webseed import PASSWORD, TestClient, build_app, login

from vinspect.models.runtime import load_bundle
from vinspect.pipeline.gating import policy_for
from vinspect.pipeline.shadow import ShadowSink
from vinspect.store import session_scope
from vinspect.store.shadow_judgements import judgements
from vinspect.types import Decision, Frame, Inspection, StageTimings, Verdict


def _part(seq: int, level: int, active: Verdict) -> Inspection:
    frame = Frame(
        image=np.full((32, 32), level, np.uint8),
        source_id="cam",
        frame_id=seq,
        captured_at=datetime.now(UTC),
        pixel_format="Mono8",
        origin="synthetic",
        part_id=f"P{seq}",
    )
    decision = Decision(verdict=active, reasons=(), policy_id="a", fail_at=0.6, review_at=0.5)
    return Inspection(
        inspection_id=f"st-{seq:04d}",
        station_id="st",
        part_seq=seq,
        frame=frame,
        prediction=None,
        decision=decision,
        timings=StageTimings(),
        model=None,
    )


def test_queue_page_lists_shadow_disagreements_with_their_frames(
    tmp_path: Path, seeded, client_for, tiny_bundle_factory
) -> None:
    bundle = load_bundle(tiny_bundle_factory(fail_at=0.4, review_at=0.3))
    out = tmp_path / "data" / "shadow" / "tiny@2"
    with ShadowSink(
        bundle, policy=policy_for(bundle), out=out, deadline_ms=None, queue_size=64, active_model="tiny"
    ) as sink:
        sink.write(_part(1, 25, Verdict.PASS))  # agree
        sink.write(_part(2, 115, Verdict.PASS))  # the candidate FAILs it
        sink.write(_part(3, 120, Verdict.PASS))  # the candidate FAILs it
    with (out / "disagreements.jsonl").open("a") as fh:
        fh.write("{torn line\n")
    client, _ = client_for("reviewer")
    html = client.get("/queue").text
    section = html.split('id="shadow-tiny@2"')[1].split("</section>")[0]
    assert "Shadow disagreements: tiny@2" in section and "3 part(s) judged beside the active model (tiny)" in section
    assert "2 disagreement(s)" in section and "1 unreadable line(s) skipped" in section
    rows = section.split("<tr data-inspection=")[1:]
    assert [r.split('"')[1] for r in rows] == ["st-0003", "st-0002"]  # newest first
    assert "PASS" in rows[0] and "FAIL" in rows[0]
    image = client.get("/evidence/shadow/tiny@2/st-0002")
    assert image.status_code == 200 and image.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get("/evidence/shadow/tiny@2/st-0001").status_code == 404  # agreed: no frame kept
    assert client.get("/evidence/shadow/..%2F..%2Fetc/passwd").status_code == 404
    operator, _ = client_for("operator")
    assert operator.get("/evidence/shadow/tiny@2/st-0002").status_code == 403


def test_queue_page_without_shadow_runs_has_no_section(tmp_path: Path, seeded) -> None:
    with TestClient(
        build_app(tmp_path / "data", seeded.store), base_url="http://127.0.0.1:8600", follow_redirects=False
    ) as client:
        login(client, "reviewer")
        assert "Shadow disagreements" not in client.get("/queue").text


def test_a_reviewer_judges_a_shadow_disagreement_signed_and_counted(
    tmp_path: Path, seeded, client_for, tiny_bundle_factory
) -> None:
    bundle = load_bundle(tiny_bundle_factory(fail_at=0.4, review_at=0.3))
    out = tmp_path / "data" / "shadow" / "tiny@2"
    with ShadowSink(
        bundle, policy=policy_for(bundle), out=out, deadline_ms=None, queue_size=64, active_model="tiny"
    ) as sink:
        sink.write(_part(2, 115, Verdict.PASS))  # the candidate FAILs it
        sink.write(_part(3, 120, Verdict.PASS))
    reviewer, token = client_for("reviewer")
    page = reviewer.get("/shadow/tiny@2/st-0002")
    assert page.status_code == 200 and 'id="judge-form"' in page.text and "Candidate tiny@2" in page.text
    assert reviewer.get("/shadow/tiny@2/st-0001").status_code == 404  # they agreed: nothing recorded
    queue = reviewer.get("/queue").text
    assert "No disagreement judged yet" in queue and 'href="/shadow/tiny@2/st-0002">Judge' in queue
    answer = {
        "csrf_token": token,
        "truth": "defective",
        "defect_code": "",
        "reason": "a dark spot",
        "password": PASSWORD,
    }
    refused = reviewer.post("/shadow/tiny@2/st-0002", data=answer)
    assert refused.status_code == 303 and refused.headers["location"] == "/shadow/tiny@2/st-0002"
    assert "Judgement refused: a defective part needs its defect code" in reviewer.get("/shadow/tiny@2/st-0002").text
    reviewer.post("/shadow/tiny@2/st-0002", data={**answer, "defect_code": "spot", "password": "wrong"})
    assert "password does not match" in reviewer.get("/shadow/tiny@2/st-0002").text
    done = reviewer.post("/shadow/tiny@2/st-0002", data={**answer, "defect_code": "spot"})
    assert done.headers["location"] == "/queue#shadow-tiny@2"
    queue = reviewer.get("/queue").text
    assert "Judged part st-0002 as spot: the candidate was right about it." in queue
    assert "Of 1 judged disagreement(s) the candidate was right in 1 and the active model in 0." in queue
    assert "spot: candidate right" in queue
    again = reviewer.post("/shadow/tiny@2/st-0002", data={**answer, "defect_code": "spot"})
    assert again.status_code == 303
    assert 'id="judgement"' in reviewer.get("/shadow/tiny@2/st-0002").text  # the page shows the judgement given
    with session_scope(seeded.store.engine, readonly=True) as session:
        (j,) = judgements(session=session, candidate="tiny@2")
    assert j.station_id == "st" and j.active["model"] == "tiny" and j.shadow["verdict"] == "FAIL"
    assert j.image_sha256 is not None and seeded.store.evidence.read(j.image_sha256)[:8] == b"\x89PNG\r\n\x1a\n"
    operator, otoken = client_for("operator")
    assert operator.post("/shadow/tiny@2/st-0003", data={**answer, "csrf_token": otoken}).status_code == 403
