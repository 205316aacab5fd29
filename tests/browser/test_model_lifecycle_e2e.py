"""A quality engineer fixes a candidate's acceptance criteria and runs its evaluation from the Models page,
in headless system Chromium (issue 20): the criteria are signed, the evaluation runs in the background
and the page shows it done with the evidence; a criteria form left open in another tab is refused
once the evidence exists. With VINSPECT_SCREENSHOTS=1 the sections are written to docs/screenshots/."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from testkit.lifecycle import NAME, freeze_eval_set, install_pair

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
TAKE_SHOTS = os.environ.get("VINSPECT_SCREENSHOTS") == "1"
PASSWORD = "correct horse battery staple"


def _login(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")


def _fill_criteria(section: Any, reason: str) -> Any:
    section.locator("details.criteria-form summary").click()
    form = section.locator("form[action$='/criteria']")
    form.locator("input[name=max_false_reject_pct]").fill("5")
    form.locator("input[name=max_escape_pct]").fill("0")
    form.locator("input[name=max_latency_ms]").fill("500")
    form.locator("input[name=reason]").fill(reason)
    form.locator("input[name=password]").fill(PASSWORD)
    return form


def test_criteria_fixed_and_evaluation_run_from_the_models_page(
    live_server: dict[str, Any], browser_page: Any, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    install_pair(data, tmp_path)
    freeze_eval_set(data, tmp_path)
    page, base = browser_page, live_server["url"]
    _login(page, base, "quality_engineer")
    stale = page.context.new_page()  # a second tab, opened before anything was fixed
    stale.goto(f"{base}/models")
    stale_form = _fill_criteria(stale.locator(f"#model-{NAME}-2"), "a second attempt")

    page.goto(f"{base}/models")
    section = page.locator(f"#model-{NAME}-2")
    assert section.locator("form[action$='/evaluate']").count() == 0  # no criteria yet: nothing to evaluate
    if TAKE_SHOTS:
        SHOTS.mkdir(parents=True, exist_ok=True)
        section.locator("details.criteria-form summary").click()
        section.screenshot(path=str(SHOTS / "i20-criteria-form.png"))
        page.goto(f"{base}/models")
        section = page.locator(f"#model-{NAME}-2")
    form = _fill_criteria(section, "retrained on reviewed false rejects")
    with page.expect_navigation():
        form.locator("button[type=submit]").click()
    assert f"Acceptance criteria fixed for {NAME} 2 and signed by" in page.inner_text("main")
    section = page.locator(f"#model-{NAME}-2")
    text = section.inner_text()
    assert "Under promotion control" in text and "good parts rejected on the frozen set: at most 5.0 %" in text
    assert "not evaluated after its criteria were fixed" in text

    run = section.locator("form[action$='/evaluate']")
    assert "eval 1 (5 images" in run.inner_text()
    with page.expect_navigation():
        run.locator("button[type=submit]").click()
    assert f"Evaluation of {NAME} 2 on eval-1 started" in page.inner_text("main")
    # the page polls while the job runs and reloads when it ends
    page.wait_for_selector(f"#evaluation-{NAME}-2 .job-done", timeout=90_000)
    section = page.locator(f"#model-{NAME}-2")
    text = section.inner_text()
    assert "Evaluation on eval-1 done" in text and "eval 1" in text and "golden defects caught" in text
    assert "1 / 1" in text  # the golden defect was caught
    assert "Run the evaluation again" in text
    if TAKE_SHOTS:
        section.screenshot(path=str(SHOTS / "i20-evaluation-done.png"))

    with stale.expect_navigation():  # the tab opened before: criteria cannot change after the evidence
        stale_form.locator("button[type=submit]").click()
    assert "already evaluated; criteria are fixed before the evidence is seen" in stale.inner_text("main")
    stale.close()
