"""A live reviewer app on 127.0.0.1 (uvicorn in a thread) and headless system Chromium."""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))  # the shared webseed helpers

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture()
def live_server(tmp_path: Path) -> Iterator[dict[str, Any]]:
    import uvicorn
    from webseed import TEST_OPTIONS, add_users, build_app, install_models, open_store, seed

    from vinspect.api.auth import PasswordService

    data_dir = tmp_path / "data"
    store = open_store(data_dir)
    seeded = seed(store, n_review=4, n_fail=2, n_pass=40)
    add_users(
        store, PasswordService(time_cost=TEST_OPTIONS.argon2_time_cost, memory_cost_kib=TEST_OPTIONS.argon2_memory_kib)
    )
    install_models(data_dir / "models")
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(build_app(data_dir, store), host="127.0.0.1", port=port, log_config=None, lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield {"url": f"http://127.0.0.1:{port}", "seeded": seeded}
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture()
def browser_page() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (install Debian's chromium; never a downloaded browser)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1360, "height": 900})
        page = context.new_page()
        page.set_default_timeout(15_000)
        try:
            yield page
        finally:
            context.close()
            browser.close()
