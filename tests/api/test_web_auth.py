"""Accounts, sessions, lockout, bootstrap and security headers (S1, S8, S9, D4 for logins)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from webseed import PASSWORD, TestClient, build_app, csrf_of, login, open_store

from vinspect.api.auth import SessionStore, ensure_bootstrap_secret, password_problems
from vinspect.api.security import COOKIE_NAME
from vinspect.store import session_scope
from vinspect.store.review_queries import audit_rows

Client = Callable[[str | None], tuple[TestClient, str]]
DEFAULT_PAIRS = [
    ("admin", "admin"),
    ("admin", "password"),
    ("admin", "admin123"),
    ("root", "root"),
    ("admin", "changeme"),
    ("administrator", "administrator"),
    ("admin", "1234"),
    ("user", "user"),
    ("admin", ""),
    ("operator", "operator"),
    ("guest", "guest"),
    ("admin", "default"),
    ("reviewer", "reviewer"),
    ("vinspect", "vinspect"),
    ("admin", "vinspect"),
    ("root", "toor"),
    ("admin", "letmein"),
    ("admin", "Passw0rd"),
    ("test", "test"),
    ("admin", "123456"),
]


def _actions(app: Any, **filters: Any) -> list[str]:
    with session_scope(app.state.services.store.engine, readonly=True) as session:
        return [r.action for r in audit_rows(session=session, limit=1000, **filters)]


def test_login_sets_httponly_samesite_cookie_and_rotates_session(app: Any) -> None:
    client = TestClient(app, base_url="http://127.0.0.1:8600")
    csrf_of(client)
    anonymous_sid = client.cookies[COOKIE_NAME]
    response = client.post(
        "/api/v1/auth/login",
        json={"username": "reviewer", "password": PASSWORD},
        headers={"X-CSRF-Token": csrf_of(client)},
    )
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert client.cookies[COOKIE_NAME] != anonymous_sid
    stale = TestClient(app, base_url="http://127.0.0.1:8600", cookies={COOKIE_NAME: anonymous_sid})
    assert stale.get("/api/v1/ncrs").status_code == 401


def test_wrong_password_is_generic_401_and_audited(client_for: Client, app: Any) -> None:
    client, token = client_for(None)
    for username in ("reviewer", "no-such-user"):
        response = client.post(
            "/api/v1/auth/login",
            json={"username": username, "password": "wrong-password-1"},
            headers={"X-CSRF-Token": token},
        )
        assert response.status_code == 401
        assert response.json()["detail"] == "invalid username or password"
    assert _actions(app, entity="login").count("login.failure") == 2


def test_lockout_after_five_failures_in_window(client_for: Client, app: Any) -> None:
    client, token = client_for(None)
    for _ in range(5):
        client.post(
            "/api/v1/auth/login",
            json={"username": "reviewer", "password": "nope-nope-nope"},
            headers={"X-CSRF-Token": token},
        )
    response = client.post(
        "/api/v1/auth/login", json={"username": "reviewer", "password": PASSWORD}, headers={"X-CSRF-Token": token}
    )
    assert response.status_code == 429
    assert "retry-after" in response.headers
    assert "login.locked" in _actions(app, entity="login")
    other, other_token = client_for(None)  # the lockout is per account, not global
    assert (
        other.post(
            "/api/v1/auth/login",
            json={"username": "operator", "password": PASSWORD},
            headers={"X-CSRF-Token": other_token},
        ).status_code
        == 200
    )


def test_common_default_pairs_never_log_in(client_for: Client) -> None:
    client, token = client_for(None)
    for username, password in DEFAULT_PAIRS:
        response = client.post(
            "/api/v1/auth/login",
            json={"username": username, "password": password or "x"},
            headers={"X-CSRF-Token": token},
        )
        assert response.status_code in (401, 422, 429), (username, password)


def test_logout_ends_session(client_for: Client) -> None:
    client, token = client_for("reviewer")
    assert client.get("/api/v1/queue").status_code == 200
    assert client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": token}).status_code == 204
    assert client.get("/api/v1/queue").status_code == 401


def test_idle_session_expires() -> None:
    store = SessionStore(idle_timeout_s=0.0)
    session = store.create()
    assert store.get(session.sid) is None


def test_deactivated_user_loses_session(client_for: Client) -> None:
    admin, admin_token = client_for("admin")
    reviewer, _ = client_for("reviewer")
    users = {u["username"]: u["id"] for u in admin.get("/api/v1/users").json()["data"]}
    response = admin.post(
        f"/api/v1/users/{users['reviewer']}/deactivate", json={"reason": "left"}, headers={"X-CSRF-Token": admin_token}
    )
    assert response.status_code == 200 and response.json()["active"] is False
    assert reviewer.get("/api/v1/queue").status_code == 401


def test_password_policy_on_user_creation(client_for: Client) -> None:
    admin, token = client_for("admin")
    for weak in ("short", "password1234", "newbie-is-my-password"):
        response = admin.post(
            "/api/v1/users",
            json={"username": "newbie", "display_name": "N", "role": "operator", "password": weak},
            headers={"X-CSRF-Token": token},
        )
        assert response.status_code == 422, weak
    assert password_problems("a long enough passphrase", username="newbie") == []


def test_mass_assignment_of_role_is_rejected(client_for: Client) -> None:
    admin, token = client_for("admin")
    response = admin.post(
        "/api/v1/users",
        json={
            "username": "sneaky",
            "display_name": "S",
            "role": "operator",
            "password": "a long enough passphrase",
            "active": True,
            "id": 1,
        },
        headers={"X-CSRF-Token": token},
    )
    assert response.status_code == 422


def test_bootstrap_secret_creates_first_admin_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh"
    store = open_store(data_dir)
    path = ensure_bootstrap_secret(data_dir)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    secret = path.read_text().strip()
    app = build_app(data_dir, store)
    client = TestClient(app, base_url="http://127.0.0.1:8600", follow_redirects=False)
    assert client.get("/login").headers["location"] == "/setup"
    form = {"username": "boss", "display_name": "Big Boss", "password": "a long enough passphrase"}
    token = csrf_of(client)
    wrong = client.post("/setup", data={**form, "secret": "guess", "csrf_token": token})
    assert wrong.status_code == 403
    assert client.post("/setup", data={**form, "secret": secret, "csrf_token": token}).status_code == 303
    assert not path.exists()
    again = client.post("/setup", data={**form, "username": "boss2", "secret": secret, "csrf_token": token})
    assert again.status_code == 404
    login(client, "boss", "a long enough passphrase")
    assert client.get("/api/v1/users").status_code == 200
    assert "setup.failure" in _actions(app)


def test_security_headers_on_pages_and_api(client_for: Client) -> None:
    client, _ = client_for("quality_engineer")
    for path in ("/ncrs", "/api/v1/ncrs", "/login"):
        headers = client.get(path).headers
        csp = headers["content-security-policy"]
        assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["cache-control"] == "no-store"
    assert client.get("/docs").status_code == 404  # no Swagger UI (its CDN scripts would need a weaker CSP)


def test_authorization_denial_is_audited(client_for: Client, app: Any) -> None:
    client, _ = client_for("operator")
    assert client.get("/api/v1/audit").status_code == 403
    assert "authz.deny" in _actions(app, entity="route")


@pytest.mark.parametrize("target", ["/queue", "/ncrs?status=OPEN"])
def test_pages_redirect_anonymous_to_login(app: Any, target: str) -> None:
    client = TestClient(app, base_url="http://127.0.0.1:8600", follow_redirects=False)
    response = client.get(target)
    assert response.status_code == 303 and response.headers["location"].startswith("/login?next=")


def test_login_next_cannot_redirect_off_site(client_for: Client) -> None:
    client, token = client_for(None)
    for evil in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        response = client.post(
            "/login", data={"username": "reviewer", "password": PASSWORD, "next": evil, "csrf_token": token}
        )
        assert response.status_code == 303 and response.headers["location"] == "/", evil
        token = csrf_of(client)


def test_oversized_body_is_refused_before_reading(client_for: Client) -> None:
    client, token = client_for(None)
    response = client.post(
        "/api/v1/auth/login",
        content=b"x" * (1 << 20 | 1),
        headers={"X-CSRF-Token": token, "Content-Type": "application/json"},
    )
    assert response.status_code == 413
