"""Two quality engineers sign a candidate's promotion on the models page and one promotes it, in
headless system Chromium (issue 20); the trainer cannot sign, and the page names what still
blocks. With VINSPECT_SCREENSHOTS=1 the page is written to docs/screenshots/."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from testkit.bundles import state_operating_point, write_tiny_bundle
from vinspect.api.auth import PasswordService
from vinspect.models.promotion_criteria import Criteria, Evaluation
from vinspect.models.registry import ModelRegistry
from vinspect.store import make_engine, session_scope
from vinspect.store.promotion import fix_criteria, record_evaluation
from vinspect.store.users import create_user

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
TAKE_SHOTS = os.environ.get("VINSPECT_SCREENSHOTS") == "1"
PASSWORD = "correct horse battery staple"


def _login(page: Any, base: str, username: str) -> None:
    page.context.clear_cookies()
    page.goto(f"{base}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")


def _sign(page: Any, base: str, reason: str) -> str:
    page.goto(f"{base}/models")
    form = page.locator("#model-tiny-7 form[action$='/sign']")
    form.locator("input[name=reason]").fill(reason)
    form.locator("input[name=password]").fill(PASSWORD)
    with page.expect_navigation():
        form.locator("button[type=submit]").click()
    return str(page.inner_text("main"))


def test_two_quality_engineers_sign_and_promote_a_candidate(
    live_server: dict[str, Any], browser_page: Any, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    rng = np.random.default_rng(1)
    bundle = state_operating_point(
        write_tiny_bundle(tmp_path / "cand", labels=("spot",)),
        rng.normal(0.2, 0.02, 150),
        rng.normal(0.9, 0.02, 30),
        version="7",
    )
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["training"]["trained_by"] = "admin"
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    registry = ModelRegistry(data / "models")
    registry.install(write_tiny_bundle(tmp_path / "running", labels=("spot",), version="6"))
    registry.activate("tiny", "6")  # the version on the line that the promotion replaces
    registry.install(bundle)
    engine = make_engine(f"sqlite:///{data / 'vinspect.db'}")
    with session_scope(engine) as session:
        create_user(
            "qe2",
            session=session,
            display_name="Second Engineer",
            role="quality_engineer",
            password_hash=PasswordService(time_cost=1, memory_cost_kib=8).hash(PASSWORD),
            actor="system:test",
        )
        fix_criteria(
            session=session,
            name="tiny",
            version="7",
            sha256=manifest["sha256"],
            trained_by="admin",
            criteria=Criteria(max_false_reject_rate=0.05, max_escape_rate=0.0),
            actor="cli:test",
            reason="retrained on reviewed false rejects",
        )
        op = {"operating_point": {"false_reject_rate": 0.01, "escape_rate": 0.0}, "auroc": 0.999}
        record_evaluation(
            session=session,
            name="tiny",
            version="7",
            sha256=manifest["sha256"],
            actor="cli:test",
            evaluation=Evaluation(
                frozen_set={"name": "tiles-eval", "version": "2026-12", "set_sha256": "ab" * 32},
                golden_defects=3,
                golden_defects_failed=3,
                golden_goods=3,
                golden_goods_passed=3,
                challenger=op,
                champion={"operating_point": {"false_reject_rate": 0.04, "escape_rate": 0.0}, "auroc": 0.99},
                shadow_parts=812,
                shadow={"agreement": 0.97},
            ),
        )
    engine.dispose()
    page, base = browser_page, live_server["url"]

    _login(page, base, "quality_engineer")
    page.goto(f"{base}/models")
    section = page.locator("#model-tiny-7")
    text = section.inner_text()
    assert "Under promotion control" in text and "tiles-eval 2026-12" in text
    assert "0 of 2 promotion signatures" in text
    assert section.locator("form[action$='/activate']").count() == 0  # no plain activation for it
    main = _sign(page, base, "comparison and disagreements reviewed")
    assert "You signed the promotion of tiny 7 (1 of 2 signatures)" in main
    assert page.locator("#model-tiny-7 form[action$='/sign']").count() == 0  # one signature per person
    assert page.locator("#model-tiny-7 form[action$='/promote']").count() == 0  # not ready yet

    _login(page, base, "qe2")
    main = _sign(page, base, "second review of the frozen-set evidence")
    assert "(2 of 2 signatures)" in main
    section = page.locator("#model-tiny-7")
    assert "ready to promote" in section.inner_text()
    assert section.locator("form[action$='/sign']").count() == 0
    if TAKE_SHOTS:
        SHOTS.mkdir(parents=True, exist_ok=True)
        section.screenshot(path=str(SHOTS / "i20-model-promotion.png"))
    form = section.locator("form[action$='/promote']")
    form.locator("input[name=password]").fill(PASSWORD)
    with page.expect_navigation():
        form.locator("button[type=submit]").click()
    assert "tiny 7 is now the active version" in page.inner_text("main")
    assert registry.active_version("tiny") == "7"

    section = page.locator("#model-tiny-7")  # the promoted version offers the signed rollback
    section.locator("details.rollback-form summary").click()
    form = section.locator("form[action='/models/tiny/rollback']")
    assert "Roll back to " in form.inner_text()
    form.locator("input[name=reason]").fill("false rejects rose on line 2")
    form.locator("input[name=password]").fill(PASSWORD)
    if TAKE_SHOTS:
        section.screenshot(path=str(SHOTS / "i20-model-rollback.png"))
    with page.expect_navigation():
        form.locator("button[type=submit]").click()
    assert "tiny rolled back from 7 to 6" in page.inner_text("main")
    assert registry.active_version("tiny") == "6"
    assert page.locator("form[action='/models/tiny/rollback']").count() == 0  # a rollback is not undone by one
