"""A reviewer judges a candidate's shadow disagreement from the review queue, in headless system Chromium
(issue 20): the frame and both verdicts on the judgement page, a signed answer, the queue's count, and
the count in the candidate's promotion section on the Models page. With VINSPECT_SCREENSHOTS=1 the
pages are written to docs/screenshots/."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from testkit.lifecycle import NAME, install_pair
from vinspect.models.manifest import read_manifest
from vinspect.models.promotion_criteria import Criteria
from vinspect.models.runtime import load_bundle
from vinspect.pipeline.gating import policy_for
from vinspect.pipeline.shadow import ShadowSink
from vinspect.store import make_engine, session_scope
from vinspect.store.promotion import fix_criteria
from vinspect.types import Decision, Frame, Inspection, StageTimings, Verdict

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
TAKE_SHOTS = os.environ.get("VINSPECT_SCREENSHOTS") == "1"
PASSWORD = "correct horse battery staple"


def _part(seq: int, level: int) -> Inspection:
    frame = Frame(
        image=np.full((64, 64), level, np.uint8),
        source_id="cam",
        frame_id=seq,
        captured_at=datetime.now(UTC),
        pixel_format="Mono8",
        origin="synthetic",
        part_id=f"P{seq}",
    )
    decision = Decision(verdict=Verdict.PASS, reasons=(), policy_id="a", fail_at=0.6, review_at=0.5)
    return Inspection(
        inspection_id=f"st-1-{seq:04d}",
        station_id="st-1",
        part_seq=seq,
        frame=frame,
        prediction=None,
        decision=decision,
        timings=StageTimings(),
        model=None,
    )


def test_a_reviewer_judges_a_shadow_disagreement_and_the_count_reaches_the_promotion(
    live_server: dict[str, Any], browser_page: Any, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    registry = install_pair(data, tmp_path)
    candidate = load_bundle(registry.resolve(NAME, "2"))
    with ShadowSink(
        candidate,
        policy=policy_for(candidate),
        out=data / "shadow" / f"{NAME}@2",
        deadline_ms=None,
        queue_size=16,
        active_model=NAME,
    ) as sink:
        for seq, level in ((1, 40), (2, 235), (3, 240)):  # 2 and 3: the candidate FAILs what the line passed
            sink.write(_part(seq, level))
    engine = make_engine(f"sqlite:///{data / 'vinspect.db'}")
    with session_scope(engine) as session:
        fix_criteria(
            session=session,
            name=NAME,
            version="2",
            sha256=read_manifest(registry.resolve(NAME, "2")).sha256,
            trained_by="trainer",
            criteria=Criteria(max_false_reject_rate=0.05),
            actor="cli:test",
            reason="retrained on reviewed false rejects",
        )
    engine.dispose()
    page, base = browser_page, live_server["url"]
    page.goto(f"{base}/login")
    page.fill("input[name=username]", "reviewer")
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.goto(f"{base}/queue")
    section = page.locator(f"[id='shadow-{NAME}@2']")
    assert "No disagreement judged yet" in section.inner_text()
    with page.expect_navigation():
        section.locator("tr[data-inspection='st-1-0003'] a.button").click()
    assert "Shadow disagreement: part #3" in page.inner_text("main")
    assert page.locator("#shadow-image").evaluate("img => img.naturalWidth") == 64  # the frame loaded
    form = page.locator("#judge-form")
    form.locator("input[value=defective]").check()
    form.locator("select[name=defect_code]").select_option("other")
    form.locator("input[name=reason]").fill("dark blotch over the whole part")
    form.locator("input[name=password]").fill(PASSWORD)
    if TAKE_SHOTS:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.locator("main").screenshot(path=str(SHOTS / "i20-shadow-judge.png"))
    with page.expect_navigation():
        form.locator("button[type=submit]").click()
    main = page.inner_text("main")
    assert "Judged part st-1-0003 as other: the candidate was right about it." in main
    section = page.locator(f"[id='shadow-{NAME}@2']")
    text = section.inner_text()
    assert "Of 1 judged disagreement(s) the candidate was right in 1 and the active model in 0." in text
    assert "other: candidate right" in section.locator("tr[data-inspection='st-1-0003']").inner_text()
    if TAKE_SHOTS:
        section.screenshot(path=str(SHOTS / "i20-shadow-queue.png"))

    page.goto(f"{base}/models")
    promotion = page.locator(f"#model-{NAME}-2 .promotion")
    assert "of 1 judged disagreement(s) the candidate was right in 1 and the running model in 0" in (
        promotion.inner_text()
    )
