"""End to end in headless system Chromium: log in, adjudicate three parts by keyboard, sign a
disposition, see it in the NCR history and the audit trail (issue #6).

With VINSPECT_SCREENSHOTS=1 the main pages are also written to docs/screenshots/*.png.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
TAKE_SHOTS = os.environ.get("VINSPECT_SCREENSHOTS") == "1"  # read at import: clean_env strips VINSPECT_*
PASSWORD = "correct horse battery staple"


def _shot(page: Any, name: str) -> None:
    if TAKE_SHOTS:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _sign_and_next(page: Any) -> None:
    page.keyboard.type(PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")


def test_keyboard_review_and_signed_disposition(live_server: dict[str, Any], browser_page: Any) -> None:
    page, base = browser_page, live_server["url"]
    review = [ref.ncr_uuid for ref in live_server["seeded"].review]
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

    page.goto(f"{base}/login")
    _shot(page, "01-login")
    page.fill("input[name=username]", "quality_engineer")
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url.endswith("/queue")
    _shot(page, "02-queue")

    with page.expect_navigation():
        page.keyboard.press("Enter")  # start reviewing
    assert page.url.endswith(f"/review/{review[0]}")
    page.wait_for_function("document.getElementById('part-image').complete")
    page.keyboard.press("2")  # second defect code
    page.keyboard.press("c")  # confirm defect -> focus moves to the signature password
    assert page.evaluate("document.activeElement.id") == "sign-password"
    _shot(page, "03-review-item")
    _sign_and_next(page)

    assert page.url.endswith(f"/review/{review[1]}")
    page.keyboard.press("h")  # heatmap off and on again
    assert page.is_hidden("#heatmap")
    page.keyboard.press("h")
    page.keyboard.press("+")
    page.keyboard.press("0")
    page.keyboard.press("f")  # false reject -> reason first
    assert page.evaluate("document.activeElement.id") == "reason"
    page.keyboard.type("dust on the lens, part is clean")
    page.keyboard.press("Enter")  # reason done -> password
    _sign_and_next(page)

    assert page.url.endswith(f"/review/{review[2]}")
    page.keyboard.press("c")
    _sign_and_next(page)
    assert page.url.endswith(f"/review/{review[3]}")
    with page.expect_navigation(wait_until="load"):
        page.keyboard.press("n")  # skip: the next item is a blind PASS sample
    page.wait_for_url(re.compile(r".*/samples/insp-\d+$"))
    assert "0.2000" not in page.inner_text("main") and "hidden to avoid anchoring" in page.inner_text("main")
    _shot(page, "10-pass-sample-blind")

    page.goto(f"{base}/ncrs/{review[0]}")
    page.select_option("#disposition-code", "SCRAP")
    page.fill("#disposition-password", PASSWORD)
    with page.expect_navigation():
        page.click("#disposition-submit")
    assert "Disposition SCRAP signed." in page.inner_text("main")
    manifest = page.inner_text(".manifest")
    assert "Quality Engineer Person" in manifest and "DISPOSITION" in manifest
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z UTC", manifest)
    history = page.inner_text("table.history")
    for event in ("OPENED", "CLAIMED", "REVIEWED", "DISPOSITIONED"):
        assert event in history
    audit = page.inner_text("#ncr-audit")
    assert "ncr.dispositioned" in audit and audit.count("signature.create") == 2
    _shot(page, "04-ncr-detail")

    page.goto(f"{base}/audit")
    trail = page.inner_text("#audit-table")
    assert "ncr.dispositioned" in trail and "login.success" in trail and "ncr.reviewed" in trail
    _shot(page, "05-audit-trail")

    page.goto(f"{base}/ncrs")
    listing = page.inner_text("table.ncrs")
    assert "DISPOSITIONED" in listing and "VOID" in listing and "SCRAP" in listing
    _shot(page, "06-ncr-list")

    page.goto(f"{base}/station")
    page.wait_for_timeout(1200)  # one live refresh
    assert page.inner_text("#station-state") == "OPERATIONAL"
    _shot(page, "07-station")
    page.goto(f"{base}/models")
    assert "tile" in page.inner_text("main")
    _shot(page, "08-models")
    page.goto(f"{base}/export")
    _shot(page, "09-export")

    assert not [e for e in errors if "Content Security Policy" in e or "Refused" in e], errors


def test_admin_creates_an_account(live_server: dict[str, Any], browser_page: Any) -> None:
    page, base = browser_page, live_server["url"]
    page.goto(f"{base}/login")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.goto(f"{base}/users")
    page.fill("form.stack input[name=username]", "rita")
    page.fill("form.stack input[name=display_name]", "Rita Reviewer")
    page.select_option("form.stack select[name=role]", "reviewer")
    page.fill("form.stack input[name=password]", "a long enough passphrase")
    with page.expect_navigation():
        page.click("form.stack button[type=submit]")
    assert "Created rita (reviewer)." in page.inner_text("main")
    page.click("#manage-rita summary")  # the per-account controls: unlock, reset, role, deactivate
    _shot(page, "11-users")
    page.goto(f"{base}/queue")
    assert "403" in page.inner_text("main")  # admins administer; they do not adjudicate
