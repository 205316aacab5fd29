"""A quality engineer activates a model that cannot meet its targets, in headless system
Chromium: the page states the rates and warnings, and only an explicit, signed acceptance
activates it (issue 12). With VINSPECT_SCREENSHOTS=1 the page is written to docs/screenshots/."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from testkit.bundles import state_operating_point, write_tiny_bundle
from vinspect.models.registry import ModelRegistry

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
TAKE_SHOTS = os.environ.get("VINSPECT_SCREENSHOTS") == "1"
PASSWORD = "correct horse battery staple"


def test_quality_engineer_accepts_stated_rates_to_activate(
    live_server: dict[str, Any], browser_page: Any, tmp_path: Path
) -> None:
    rng = np.random.default_rng(7)
    bundle = state_operating_point(
        write_tiny_bundle(tmp_path / "risky"), rng.normal(0.0, 1.0, 200), rng.normal(1.5, 1.0, 40), version="5"
    )
    registry = ModelRegistry(tmp_path / "data" / "models")
    registry.install(bundle)
    page, base = browser_page, live_server["url"]
    page.goto(f"{base}/login")
    page.fill("input[name=username]", "quality_engineer")
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.goto(f"{base}/models")
    section = page.locator("#model-tiny-5")
    text = section.inner_text()
    assert "This model cannot meet its targets" in text and "at zero escapes" in text
    assert "good parts rejected" in text
    if TAKE_SHOTS:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "16-model-risk-acceptance.png"), full_page=True)
    form = section.locator("form[action$='/activate']")  # not the criteria form below it (issue 20)
    form.locator("input[name=reason]").fill("reviewers staffed for the band")
    form.locator("input[name=password]").fill(PASSWORD)
    form.locator("button[type=submit]").click()  # the unchecked acceptance box blocks the submit
    assert page.url.endswith("/models") and registry.active_version("tiny") is None
    form.locator("input[name=accept_risk]").check()
    with page.expect_navigation():
        form.locator("button[type=submit]").click()
    assert "tiny 5 is now active (signed, stated risk accepted)" in page.inner_text("main")
    assert registry.active_version("tiny") == "5"
