"""Labelling in headless system Chromium (issue 19): import a folder (bad files named), label 20+
images by keyboard, draw a box, a brush mask and a polygon, undo, refused input that loses
nothing, export and validate; two labellers blind, kappa against a hand-computed value, a third settles, and the
audit trail shows each label.

With VINSPECT_SCREENSHOTS=1 the pages are written to docs/screenshots/i19-*.png.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
TAKE_SHOTS = os.environ.get("VINSPECT_SCREENSHOTS") == "1"  # read at import: clean_env strips VINSPECT_*
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "store"))  # labelseed


def _shot(page: Any, name: str) -> None:
    if TAKE_SHOTS:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"i19-{name}.png"), full_page=True)


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[dict[str, Any]]:
    import uvicorn
    from webseed import PASSWORD, TEST_OPTIONS, add_users, build_app, open_store

    from vinspect.api.auth import PasswordService
    from vinspect.store.db import session_scope
    from vinspect.store.users import create_user

    data_dir = tmp_path / "data"
    store = open_store(data_dir)
    passwords = PasswordService(time_cost=TEST_OPTIONS.argon2_time_cost, memory_cost_kib=TEST_OPTIONS.argon2_memory_kib)
    add_users(store, passwords)
    with session_scope(store.engine) as db:  # a third labeller
        create_user(
            "rita",
            session=db,
            display_name="Rita Third",
            role="reviewer",  # type: ignore[arg-type]
            password_hash=passwords.hash(PASSWORD),
            actor="system:test",
        )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = build_app(data_dir, store)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield {"url": f"http://127.0.0.1:{port}", "data_dir": data_dir, "store": store}
    server.should_exit = True
    thread.join(timeout=10)


def _login(page: Any, base: str, username: str) -> None:
    from webseed import PASSWORD

    page.context.clear_cookies()
    page.goto(f"{base}/login?next=%2Flabelling")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")


def _wait_saved(page: Any, label: str) -> None:
    page.wait_for_selector(f"#labeller[data-label='{label}']:not([data-busy])")


def _label_all(page: Any, spots: set[str], *, flip: str | None = None) -> int:
    """Label every image from the current one to the last by keyboard: ``1`` for a spot, ``G``
    otherwise (``flip``: that file gets the other label). Returns how many were labelled."""
    count = 0
    while True:
        page.wait_for_selector("#labeller[data-ready='1']")
        name = page.inner_text("h1 small").split(" · ")[0]
        spot = any(s in name for s in spots)
        if flip is not None and flip in name:
            spot = not spot
        page.keyboard.press("1" if spot else "g")
        _wait_saved(page, "contamination" if spot else "good")
        count += 1
        if not page.get_attribute("#labeller", "data-after"):
            return count
        with page.expect_navigation():
            page.keyboard.press("ArrowRight")


def _drag(page: Any, start: tuple[float, float], end: tuple[float, float], steps: int = 8) -> None:
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=steps)
    page.mouse.up()


def test_label_by_keyboard_regions_undo_export(server: dict[str, Any], browser_page: Any, tmp_path: Path) -> None:
    from labelseed import write_folder

    page, base = browser_page, server["url"]
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    folder = write_folder(tmp_path / "captured", n=24, spots=4)
    spots = {"img020", "img021", "img022", "img023"}

    _login(page, base, "quality_engineer")
    assert page.url.endswith("/labelling")
    page.fill("input[name=folder]", str(folder))
    page.fill("input[name=set_name]", "line1")
    with page.expect_navigation():
        page.click("#import-form button[type=submit]")
    report = page.inner_text("#import-report")
    assert "24 image(s) added, 3 skipped" in report
    assert "notes.txt: not an image (suffix .txt" in report
    assert "broken.png: not a readable image" in report
    assert "zz-copy.png: duplicate image: same content as a/img000.png" in report
    _shot(page, "import")

    with page.expect_navigation():
        page.click("#import-report a.button")
    assert page.locator("#thumbs li").count() == 24
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert _label_all(page, spots) == 24  # 20+ images labelled by keyboard only

    # The last image (b/img023) has a spot: draw a box, then a brush mask, undo the mask.
    assert "img023" in page.inner_text("h1 small")
    box = page.locator("#label-image").bounding_box()
    assert box is not None
    sx, sy = box["width"] / 96, box["height"] / 96  # image pixels -> screen pixels
    page.keyboard.press("b")
    _drag(page, (box["x"] + 10 * sx, box["y"] + 12 * sy), (box["x"] + 40 * sx, box["y"] + 30 * sy))
    page.wait_for_selector("#labeller[data-regions='1']:not([data-busy])")
    page.keyboard.press("r")
    _drag(page, (box["x"] + 60 * sx, box["y"] + 60 * sy), (box["x"] + 80 * sx, box["y"] + 70 * sy))
    page.wait_for_selector("#labeller[data-regions='2']:not([data-busy])")
    _shot(page, "regions")
    page.keyboard.press("Control+z")
    page.wait_for_selector("#labeller[data-regions='1']:not([data-busy])")
    page.keyboard.press("r")
    _drag(page, (box["x"] + 60 * sx, box["y"] + 60 * sy), (box["x"] + 70 * sx, box["y"] + 80 * sy))
    page.wait_for_selector("#labeller[data-regions='2']:not([data-busy])")
    page.keyboard.press("p")  # a polygon: three clicks, Enter closes it
    for px, py in ((20, 60), (40, 60), (30, 85)):
        page.mouse.click(box["x"] + px * sx, box["y"] + py * sy)
    page.keyboard.press("Enter")
    page.wait_for_selector("#labeller[data-regions='3']:not([data-busy])")

    # Refused input: a box dragged past the image's edge, a good label with regions, a code not in
    # the catalogue. Each names the problem and keeps what was saved.
    page.keyboard.press("b")
    _drag(page, (box["x"] + 50 * sx, box["y"] + 50 * sy), (box["x"] + box["width"] + 40, box["y"] + 70 * sy))
    page.wait_for_selector("#label-error:not([hidden])")
    assert "lies outside the 96x96 image" in page.inner_text("#label-error")
    assert "Your last saved label is unchanged" in page.inner_text("#label-error")
    _shot(page, "refused")
    page.keyboard.press("g")
    page.wait_for_selector("#label-error:has-text('a good image has no defect regions')")
    status = page.evaluate("""async () => {
        const r = await fetch(location.pathname.replace('/labelling/', '/api/v1/labelling/') + '/label', {
          method: 'POST', headers: {'Content-Type': 'application/json',
          'X-CSRF-Token': document.querySelector('meta[name=csrf-token]').content},
          body: JSON.stringify({label: 'crack', regions: []})});
        return [r.status, (await r.json()).detail]; }""")
    assert status[0] == 422 and "'crack' is not 'good' or a code of the product's catalogue" in status[1]
    page.reload()
    page.wait_for_selector("#labeller[data-ready='1']")
    assert page.get_attribute("#labeller", "data-label") == "contamination"
    assert page.get_attribute("#labeller", "data-regions") == "3"

    # Export from a shell, as a quality engineer would; validate accepts it; the manifest matches.
    out = tmp_path / "export"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "vinspect",
            "dataset",
            "export-labels",
            "line1",
            "--out",
            str(out),
            "--data-dir",
            str(server["data_dir"]),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "wrote 24 image(s)" in done.stdout and "contamination 4, good 20" in done.stdout
    valid = subprocess.run(
        [sys.executable, "-m", "vinspect", "dataset", "validate", str(out)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert valid.returncode == 0, valid.stdout + valid.stderr
    doc = json.loads((out / "labels.json").read_text())
    last = next(e for e in doc["images"] if e["source_file"].endswith("img023.png"))
    assert last["label"] == "contamination" and last["labeller"] == "quality_engineer"
    assert [r["kind"] for r in last["regions"]] == ["box", "brush", "polygon"]
    drawn = last["regions"][2]["points"]
    assert len(drawn) == 3 and all(
        abs(a - b) <= 1
        for p, q in zip(drawn, [[20, 60], [40, 60], [30, 85]], strict=True)
        for a, b in zip(p, q, strict=True)
    )
    assert (out / last["mask"]).is_file() and (out / last["boxes"]).read_text().startswith("10 12 40 30 contamination")

    page.goto(f"{base}/audit?entity=label_event")
    assert page.locator("text=label.label").count() >= 24
    assert page.locator("text=label.undo").count() >= 1
    assert [e for e in errors if "status of 422" not in e] == [], errors  # the three refusals above are 422s


def test_blind_labellers_kappa_and_third_settles(server: dict[str, Any], browser_page: Any, tmp_path: Path) -> None:
    from labelseed import write_folder

    from vinspect.store.label_files import LabelFiles
    from vinspect.store.labelling import import_folder

    page, base = browser_page, server["url"]
    folder = write_folder(tmp_path / "blind", n=10, spots=4, bad=False)
    import_folder(
        folder,
        engine=server["store"].engine,
        files=LabelFiles(server["data_dir"] / "labelling"),
        set_name="blind1",
        actor="system:test",
        blind_labellers=2,
    )
    spots = {"img006", "img007", "img008", "img009"}
    for who, flip in (("reviewer", None), ("quality_engineer", "img005")):
        _login(page, base, who)
        page.goto(f"{base}/labelling/blind1")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert _label_all(page, spots, flip=flip) == 10
    # Hand-computed: reviewer 6 good / 4 contamination; QE the same except img005 -> contamination.
    # p_o = 9/10, p_e = (6*5 + 4*5) / 100 = 0.5, kappa = (0.9 - 0.5) / (1 - 0.5) = 0.8.
    page.goto(f"{base}/labelling/blind1/agreement")
    assert page.inner_text("#kappa") == "0.800"
    assert page.inner_text("#unsettled-count") == "1"
    assert "you labelled it: a third person settles" in page.inner_text("#disagreements")
    _login(page, base, "rita")
    page.goto(f"{base}/labelling/blind1/agreement")
    _shot(page, "agreement")
    with page.expect_navigation():
        page.click("#disagreements a.button")
    assert "quality_engineer: contamination" in page.inner_text("#others")
    _shot(page, "settle")
    page.keyboard.press("g")
    _wait_saved(page, "good")
    page.goto(f"{base}/labelling/blind1/agreement")
    assert page.inner_text("#unsettled-count") == "0"
    _login(page, base, "quality_engineer")
    page.goto(f"{base}/audit?entity=label_event")
    assert page.locator("text=label.settle").count() == 1
    _shot(page, "audit")
