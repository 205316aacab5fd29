"""In headless Chromium (issue 13): zoom around the pointer, drag to pan, wheel zoom; keyboard
signing with Enter outside a field; a suggested reason is visible before signing; no defect code
on a false reject; a wrong signing password keeps the form; the demo's role lands on its queue."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser
PASSWORD = "correct horse battery staple"
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
TAKE_SHOTS = os.environ.get("VINSPECT_SCREENSHOTS") == "1"


def _shot(page: Any, name: str) -> None:
    if TAKE_SHOTS:
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _login(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")


def _image_point(page: Any, vx: float, vy: float) -> tuple[float, float]:
    """The image coordinate (fraction of its width/height) shown at viewport point (vx, vy)."""
    box = page.eval_on_selector(
        "#part-image", "e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; }"
    )
    return (vx - box[0]) / box[2], (vy - box[1]) / box[3]


def test_zoom_keeps_the_point_under_the_cursor_and_drag_pans(live_server: dict[str, Any], browser_page: Any) -> None:
    page, base = browser_page, live_server["url"]
    _login(page, base, "reviewer")
    page.goto(f"{base}/review/{live_server['seeded'].review[0].ncr_uuid}")
    page.wait_for_function("document.getElementById('part-image').complete")
    vp = page.eval_on_selector(
        "#viewport", "e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; }"
    )
    # A point near the bottom-right corner: the part of the image the old zoom could never show.
    px, py = vp[0] + vp[2] * 0.9, vp[1] + vp[3] * 0.9
    before = _image_point(page, px, py)
    page.mouse.move(px, py)
    for _ in range(4):
        page.mouse.wheel(0, -100)
    page.wait_for_timeout(300)
    zoom = float(page.get_attribute("#stage", "data-zoom") or "1")
    assert zoom > 2
    _shot(page, "14-zoomed-at-pointer")
    after = _image_point(page, px, py)
    assert abs(after[0] - before[0]) < 0.02 and abs(after[1] - before[1]) < 0.02
    # Drag to pan: the image moves with the pointer.
    cx, cy = vp[0] + vp[2] / 2, vp[1] + vp[3] / 2
    start = _image_point(page, cx, cy)
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + 80, cy + 60, steps=5)
    page.mouse.up()
    page.wait_for_timeout(200)
    moved = _image_point(page, cx, cy)
    assert moved[0] < start[0] - 0.01 and moved[1] < start[1] - 0.01
    page.keyboard.press("0")
    page.wait_for_timeout(200)
    assert page.get_attribute("#stage", "data-zoom") == "1"


def test_keyboard_signing_shows_what_is_signed(live_server: dict[str, Any], browser_page: Any) -> None:
    page, base = browser_page, live_server["url"]
    review = [ref.ncr_uuid for ref in live_server["seeded"].review]
    _login(page, base, "reviewer")
    assert page.url.endswith("/queue")
    page.goto(f"{base}/review/{review[0]}")
    page.keyboard.press("f")  # false reject: no defect code, reason first
    assert page.is_disabled("#defect-code")
    assert page.evaluate("document.activeElement.id") == "reason"
    page.keyboard.press("Escape")
    page.keyboard.press("c")  # confirm: the suggested reason is visible and editable
    assert not page.is_disabled("#defect-code")
    assert page.input_value("#reason") == "confirmed scratch on image"
    page.keyboard.press("Escape")
    page.keyboard.press("1")  # another code: the suggestion follows it
    code = page.input_value("#defect-code")
    assert page.input_value("#reason") == f"confirmed {code} on image"
    page.keyboard.press("Enter")  # outside a field: to the password
    assert page.evaluate("document.activeElement.id") == "sign-password"
    page.keyboard.type("wrong password")
    page.keyboard.press("Escape")
    with page.expect_navigation():
        page.keyboard.press("Enter")  # outside a field, password filled: signs
    assert "Not signed: signature refused" in page.inner_text("#form-error")
    _shot(page, "12-signing-refused-form-kept")
    assert page.input_value("#reason") == f"confirmed {code} on image"
    assert page.input_value("#defect-code") == code and page.input_value("#decision") == "CONFIRMED_DEFECT"
    assert "chosen" in (page.get_attribute("[data-decision=CONFIRMED_DEFECT]", "class") or "")
    page.fill("#sign-password", PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url.endswith(f"/review/{review[1]}")
    assert "Recorded CONFIRMED_DEFECT (signed)." in page.inner_text("main")


def test_error_page_has_the_menu(live_server: dict[str, Any], browser_page: Any) -> None:
    page, base = browser_page, live_server["url"]
    _login(page, base, "admin")
    assert page.url.endswith("/users")
    page.goto(f"{base}/queue")
    assert "403" in page.inner_text("main") and page.is_visible("header nav >> text=Users")
    _shot(page, "13-error-page")
    with page.expect_navigation():
        page.click("text=Go to your start page")
    assert page.url.endswith("/users")
