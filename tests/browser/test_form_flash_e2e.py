"""A refused page form answers on its own page with one line naming the problem (issue 15: one
post -> flash -> redirect helper), in real headless Chromium.

With VINSPECT_SCREENSHOTS=1 the page is also written to docs/screenshots/i15-users-refused.png."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
TAKE_SHOTS = os.environ.get("VINSPECT_SCREENSHOTS") == "1"  # read at import: clean_env strips VINSPECT_*
PASSWORD = "correct horse battery staple"


def test_a_refused_account_is_one_line_on_the_users_page(live_server: dict[str, Any], browser_page: Any) -> None:
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
    page.fill("form.stack input[name=password]", "password1234")  # long enough for the browser, too common for us
    with page.expect_navigation():
        page.click("form.stack button[type=submit]")
    assert page.url == f"{base}/users"
    main = page.inner_text("main")
    assert "Refused: " in main
    assert "password" in main.lower()
    assert "Traceback" not in main
    assert "rita" not in page.inner_text("table")  # nothing was created
    if TAKE_SHOTS:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "i15-users-refused.png"), full_page=True)
