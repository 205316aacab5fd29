"""Deployment hardening of the reviewer app (issue 14 items 4, 5, 7 and the smaller items of 9).

The proxy and permission checks run the real ``vinspect serve`` (uvicorn) on loopback, because
forwarding headers are uvicorn's business and a TestClient never goes through it.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from webseed import (
    DEFAULTS,
    PASSWORD,
    TEST_OPTIONS,
    Seeded,
    TestClient,
    add_users,
    build_app,
    csrf_of,
    inspection,
    login,
    open_store,
)

from vinspect.api.auth import ClientLimiter, PasswordService, SessionStore, ensure_bootstrap_secret
from vinspect.cli import main as cli_main
from vinspect.cli import web
from vinspect.errors import ConfigError
from vinspect.store import StoreSink, session_scope
from vinspect.store.review_queries import audit_rows, is_sampled
from vinspect.types import Verdict

ROOT = Path(__file__).resolve().parents[2]
Client = Callable[[str | None], tuple[TestClient, str]]
CHEAP = PasswordService(time_cost=TEST_OPTIONS.argon2_time_cost, memory_cost_kib=TEST_OPTIONS.argon2_memory_kib)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., tuple[str, Path]]]:
    """``serve(users=True, **env)`` → (base URL, data dir) of a running ``vinspect serve``."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*, users: bool = True, **env: str) -> tuple[str, Path]:
        data = tmp_path / f"data{len(procs)}"
        if users:
            add_users(open_store(data), CHEAP)
        port = _free_port()
        environ = {k: v for k, v in os.environ.items() if not k.startswith("VINSPECT_")}
        environ.update({"PYTHONPATH": str(ROOT), **env})
        proc = subprocess.Popen(
            [sys.executable, "-m", "vinspect", "serve", "--data-dir", str(data), "--port", str(port)],
            env=environ,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(base + "/api/v1/auth/session", timeout=1)
                return base, data
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                time.sleep(0.1)
        raise AssertionError("vinspect serve did not start")

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()


def _failed_login(base: str, headers: dict[str, str]) -> httpx.Response:
    with httpx.Client(base_url=base) as client:
        token = client.get("/api/v1/auth/session").json()["csrf_token"]
        return client.post(
            "/api/v1/auth/login",
            json={"username": "reviewer", "password": "wrong"},
            headers={"X-CSRF-Token": token, **headers},
        )


def _login_sources(data: Path) -> list[str | None]:
    store = open_store(data)
    with session_scope(store.engine, readonly=True) as session:
        return [r.source for r in audit_rows(session=session, entity="login")]


def test_forwarding_headers_count_only_from_trusted_proxies(serve: Callable[..., tuple[str, Path]]) -> None:
    base, data = serve()
    forged = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    response = _failed_login(base, forged)
    assert response.status_code == 401
    assert "secure" not in response.headers.get("set-cookie", "").lower()
    assert _login_sources(data) == ["web:127.0.0.1"]

    base, data = serve(VINSPECT_API_TRUSTED_PROXIES="127.0.0.1")
    with httpx.Client(base_url=base) as client:
        session = client.get("/api/v1/auth/session", headers=forged)
        assert "; Secure" in session.headers["set-cookie"]
        assert session.headers["strict-transport-security"].startswith("max-age=")
    assert _failed_login(base, forged).status_code == 401
    assert _login_sources(data) == ["web:203.0.113.9"]


def test_serve_keeps_the_data_private(serve: Callable[..., tuple[str, Path]]) -> None:
    base, data = serve(users=False)
    assert stat.S_IMODE(data.stat().st_mode) == 0o750
    assert stat.S_IMODE((data / "vinspect.db").stat().st_mode) & 0o027 == 0
    assert stat.S_IMODE((data / "bootstrap-secret").stat().st_mode) == 0o600
    setup = httpx.get(base + "/setup")
    assert setup.status_code == 200 and str(data.resolve()) not in setup.text and str(data) not in setup.text


def test_systemd_units_set_umask_and_state_directory_mode() -> None:
    for unit in (ROOT / "deploy" / "systemd").glob("*.service"):
        text = unit.read_text(encoding="utf-8")
        assert re.search(r"^UMask=0027$", text, re.M) and re.search(r"^StateDirectoryMode=0750$", text, re.M), unit


def test_uvicorn_options_follow_the_trusted_proxies(tmp_path: Path) -> None:
    from vinspect.settings import Settings

    assert web.uvicorn_options(Settings(data_dir=tmp_path))["proxy_headers"] is False
    trusted = web.uvicorn_options(Settings(data_dir=tmp_path, api_trusted_proxies=["10.0.0.5"]))
    assert trusted["proxy_headers"] is True and trusted["forwarded_allow_ips"] == ["10.0.0.5"]


def test_host_header_must_be_a_served_name(app: object, tmp_path: Path, seeded: Seeded) -> None:
    client = TestClient(app, base_url="http://127.0.0.1:8600")
    assert client.get("/login").status_code == 200
    assert client.get("/login", headers={"Host": "localhost:8600"}).status_code == 200
    rebound = client.get("/api/v1/auth/session", headers={"Host": "attacker.example"})
    assert rebound.status_code == 400
    named = TestClient(
        build_app(tmp_path / "data", seeded.store, api_trusted_hosts=["qc.plant.example"], api_secure_cookies=True),
        base_url="http://qc.plant.example",
    )
    response = named.get("/api/v1/auth/session")
    assert response.status_code == 200 and "; Secure" in response.headers["set-cookie"]
    assert "strict-transport-security" in response.headers


def test_the_login_limiter_is_keyed_on_client_and_account() -> None:
    limiter = ClientLimiter(limit=3, client_limit=5, window_s=60)
    for _ in range(3):
        limiter.fail("web:10.0.0.7", "alice")
    assert limiter.blocked("web:10.0.0.7", "alice")
    assert not limiter.blocked("web:10.0.0.7", "bob") and not limiter.blocked("web:10.0.0.8", "alice")
    for name in ("carol", "dave"):
        limiter.fail("web:10.0.0.7", name)
    assert limiter.blocked("web:10.0.0.7", "erin")  # spraying many accounts from one client


def test_anonymous_sessions_never_evict_signed_in_ones() -> None:
    store = SessionStore(max_sessions=50)
    signed_in = store.login(None, user_id=1, username="reviewer")
    for _ in range(200):
        store.create()
    assert store.get(signed_in.sid) is signed_in


def test_polling_does_not_keep_a_session_alive(tmp_path: Path, seeded: Seeded) -> None:
    app = build_app(tmp_path / "data", seeded.store, options=dataclasses.replace(TEST_OPTIONS, session_idle_s=1.0))
    client = TestClient(app, base_url="http://127.0.0.1:8600")
    login(client, "operator")
    codes = []
    for pause in (0.4, 0.4, 0.5):
        time.sleep(pause)
        codes.append(client.get("/api/v1/station/status").status_code)
    assert codes == [200, 200, 401]
    login(client, "operator")
    for _ in range(3):  # real activity does
        time.sleep(0.4)
        assert client.get("/api/v1/ncrs").status_code == 200


def test_openapi_needs_a_login_and_there_are_no_docs(client_for: Client) -> None:
    anonymous, _ = client_for(None)
    refused = anonymous.get("/openapi.json")
    assert refused.status_code == 303 and refused.headers["location"].startswith("/login")
    assert anonymous.get("/docs").status_code == 404
    operator, _ = client_for("operator")
    document = operator.get("/openapi.json")
    assert document.status_code == 200 and "/api/v1/ncrs" in document.json()["paths"]


def test_login_with_an_admin_and_a_leftover_secret_shows_the_form(app: object, tmp_path: Path) -> None:
    ensure_bootstrap_secret(tmp_path / "data")
    client = TestClient(app, base_url="http://127.0.0.1:8600", follow_redirects=False)
    response = client.get("/login")
    assert response.status_code == 200 and 'name="password"' in response.text


def test_display_names_are_unique(client_for: Client) -> None:
    admin, token = client_for("admin")
    taken = admin.post(
        "/api/v1/users",
        headers={"X-CSRF-Token": token},
        json={
            "username": "rev2",
            "display_name": " reviewer  person",
            "role": "reviewer",
            "password": "a long enough passphrase",
        },
    )
    assert taken.status_code == 409 and "display name" in taken.json()["detail"]


def test_users_add_uses_the_web_username_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parser = cli_parser()
    for bad in ("Bad Name", "x", "9lives"):
        monkeypatch.setattr("sys.stdin", io.StringIO("a long enough passphrase\n"))
        args = parser.parse_args(
            [
                "users",
                "add",
                bad,
                "--display-name",
                "Some One",
                "--role",
                "reviewer",
                "--password-stdin",
                "--data-dir",
                str(tmp_path),
            ]
        )
        with pytest.raises(ConfigError, match="username"):
            args.handler(args)


def cli_parser() -> object:
    import argparse

    parser = argparse.ArgumentParser(prog="vinspect")
    web.register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_the_outbox_refuses_non_http_urls_without_crashing(
    seeded: Seeded, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "not-a-qms.txt"
    target.write_text("hello\n", encoding="utf-8")
    code = cli_main(
        ["outbox", "drain", "--data-dir", str(tmp_path / "data"), "--url", target.as_uri(), "--max-seconds", "2"]
    )
    assert code == 2 and "only http:// or https://" in capsys.readouterr().err


def test_the_review_page_keeps_a_blind_sample_blind(tmp_path: Path) -> None:
    store = open_store(tmp_path / "data")
    add_users(store, CHEAP)
    seq = next(s for s in range(1000, 2000) if is_sampled(f"insp-{s:06d}", TEST_OPTIONS.pass_sample_rate))
    sink = StoreSink(store.engine, store.evidence, defaults=DEFAULTS, batch_size=1000, flush_interval_s=3600)
    sink.write(inspection(seq, Verdict.PASS, score=0.1234, part_id="PX-1"))
    ncr = sink.open(inspection(seq + 5000, Verdict.REVIEW, score=0.6, part_id="PX-1")).ncr_uuid
    sink.close()
    client = TestClient(build_app(tmp_path / "data", store), base_url="http://127.0.0.1:8600")
    login(client, "reviewer")
    page = client.get(f"/review/{ncr}").text
    row = next(line for line in page.splitlines() if f"insp-{seq:06d}" in line)
    assert "0.1234" not in page and "PASS" not in row and "blind" in row
    token = csrf_of(client)
    assert (
        client.post(
            f"/api/v1/samples/insp-{seq:06d}/review",
            headers={"X-CSRF-Token": token},
            json={"decision": "CONFORMS", "reason": "clean", "password": PASSWORD},
        ).status_code
        == 204
    )
    assert "0.1234" in client.get(f"/review/{ncr}").text  # once audited, the history is whole again


def test_serve_on_a_wildcard_address_needs_trusted_hosts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VINSPECT_API_ALLOW_REMOTE", "true")
    args = cli_parser().parse_args(["serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path)])  # type: ignore[attr-defined]
    before = os.umask(0o022)
    os.umask(before)
    with pytest.raises(ConfigError, match="VINSPECT_API_TRUSTED_HOSTS"):
        args.handler(args)
    assert os.umask(before) == before  # refused before the process was changed
    assert not (tmp_path / "vinspect.db").exists()  # refused before anything was opened
