"""A quality engineer supersedes a signed review from the NCR page (issue 14), in real Chromium.

With VINSPECT_SCREENSHOTS=1 the page is also written to docs/screenshots/15-supersede.png.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from vinspect.store import session_scope
from vinspect.store.lifecycle import add_review, claim_ncr
from vinspect.store.ncr import ReviewDecision, ReviewInput
from vinspect.store.users import get_user

pytestmark = pytest.mark.browser
PASSWORD = "correct horse battery staple"
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
TAKE_SHOTS = os.environ.get("VINSPECT_SCREENSHOTS") == "1"  # read at import: clean_env strips VINSPECT_*


def test_quality_engineer_supersedes_an_mrb_review(live_server: dict[str, Any], browser_page: Any) -> None:
    page, base = browser_page, live_server["url"]
    seeded = live_server["seeded"]
    ncr = seeded.review[0].ncr_uuid
    with session_scope(seeded.store.engine) as session:
        reviewer = get_user(session=session, username="reviewer")
        assert reviewer is not None
        claim_ncr(ncr, session=session, user_id=reviewer.id)
        add_review(
            ncr,
            session=session,
            review=ReviewInput(
                user_id=reviewer.id, decision=ReviewDecision.NEEDS_MRB, reason="borderline scratch, board to decide"
            ),
        )
    page.goto(f"{base}/login")
    page.fill("input[name=username]", "quality_engineer")
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.goto(f"{base}/ncrs/{ncr}")
    page.click("#supersede summary")
    page.select_option("#supersede-decision", "FALSE_REJECT")
    page.fill("#supersede-reason", "MRB 2026-12-05: scratch is within the cosmetic limit")
    page.fill("#supersede-password", PASSWORD)
    with page.expect_navigation():
        page.click("#supersede-submit")
    main = page.inner_text("main")
    assert "Review superseded: FALSE_REJECT (signed)." in main
    history = page.inner_text("table.history")
    assert "REVIEWED" in history and "SUPERSEDED" in history and "MRB 2026-12-05" in history
    assert page.locator("#supersede-form").count() == 0  # VOID now: nothing left to supersede
    if TAKE_SHOTS:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "15-supersede.png"), full_page=True)
