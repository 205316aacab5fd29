"""A way out of a lockout (issue 13): the message says for how long; an admin unlocks, resets a
password or changes a role, signed and audited, on /users, in the JSON API and in the shell."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from webseed import PASSWORD, Seeded, TestClient, csrf_of

from vinspect.cli import main
from vinspect.store import session_scope
from vinspect.store.review_queries import audit_rows
from vinspect.store.users import get_user

Client = Callable[[str | None], tuple[TestClient, str]]


def _form_login(client: TestClient, username: str, password: str) -> object:
    return client.post("/login", data={"csrf_token": csrf_of(client), "username": username, "password": password})


def _user_id(seeded: Seeded, username: str) -> int:
    with session_scope(seeded.store.engine, readonly=True) as session:
        user = get_user(session=session, username=username)
    assert user is not None
    return user.id


def test_lockout_says_how_long_and_an_admin_unlocks_it(client_for: Client, seeded: Seeded) -> None:
    stranger, _ = client_for(None)
    for _ in range(5):
        assert _form_login(stranger, "reviewer", "wrong guess").status_code == 401  # type: ignore[attr-defined]
    locked = _form_login(stranger, "reviewer", PASSWORD)
    assert locked.status_code == 429  # type: ignore[attr-defined]
    assert "locked for up to 15 minutes" in locked.text and "vinspect users unlock reviewer" in locked.text  # type: ignore[attr-defined]
    admin, token = client_for("admin")
    page = admin.get("/users").text
    assert 'action="/users/{}/unlock"'.format(_user_id(seeded, "reviewer")) in page
    refused = admin.post(
        f"/users/{_user_id(seeded, 'reviewer')}/unlock",
        data={"csrf_token": token, "reason": "called the help desk", "password": "not mine"},
    )
    assert "Refused: signature refused" in admin.get(refused.headers["location"]).text
    done = admin.post(
        f"/users/{_user_id(seeded, 'reviewer')}/unlock",
        data={"csrf_token": token, "reason": "called the help desk", "password": PASSWORD},
    )
    assert "Unlocked sign-in for reviewer (signed)." in admin.get(done.headers["location"]).text
    assert _form_login(stranger, "reviewer", PASSWORD).status_code == 303  # type: ignore[attr-defined]
    with session_scope(seeded.store.engine, readonly=True) as session:
        unlock = audit_rows(session=session, action="login.unlock")[0]
    assert unlock.reason == "called the help desk" and unlock.entity_id == "reviewer"


def test_admin_resets_a_password_and_changes_a_role(client_for: Client, seeded: Seeded) -> None:
    admin, token = client_for("admin")
    operator_id = _user_id(seeded, "operator")
    weak = admin.post(
        f"/api/v1/users/{operator_id}/password",
        headers={"X-CSRF-Token": token},
        json={"new_password": "short", "reason": "forgot", "password": PASSWORD},
    )
    assert weak.status_code == 422
    reset = admin.post(
        f"/api/v1/users/{operator_id}/password",
        headers={"X-CSRF-Token": token},
        json={"new_password": "a brand new passphrase", "reason": "forgot it", "password": PASSWORD},
    )
    assert reset.status_code == 200, reset.text
    stranger, _ = client_for(None)
    assert _form_login(stranger, "operator", PASSWORD).status_code == 401  # type: ignore[attr-defined]
    assert _form_login(stranger, "operator", "a brand new passphrase").status_code == 303  # type: ignore[attr-defined]
    role = admin.post(
        f"/api/v1/users/{operator_id}/role",
        headers={"X-CSRF-Token": token},
        json={"role": "reviewer", "reason": "joins the review team", "password": PASSWORD},
    )
    assert role.status_code == 200 and role.json()["role"] == "reviewer"
    assert stranger.get("/").headers["location"] == "/login"  # sessions of a changed account end
    own = admin.post(
        f"/api/v1/users/{_user_id(seeded, 'admin')}/role",
        headers={"X-CSRF-Token": token},
        json={"role": "reviewer", "reason": "x", "password": PASSWORD},
    )
    assert own.status_code == 409
    with session_scope(seeded.store.engine, readonly=True) as session:
        actions = {r.action: r for r in audit_rows(session=session, entity="user")}
    assert actions["user.set_role"].old_value == "operator" and actions["user.set_role"].new_value == "reviewer"
    assert actions["user.set_password"].reason == "forgot it" and actions["user.set_password"].new_value is None


def test_shell_recovery_when_no_admin_can_sign_in(
    seeded: Seeded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(tmp_path / "data")  # the seeded store's folder (see the seeded fixture)
    assert main(["users", "unlock", "admin", "--reason", "locked out", "--data-dir", data]) == 0
    assert (
        main(
            ["users", "set-role", "quality_engineer", "--role", "admin", "--reason", "second admin", "--data-dir", data]
        )
        == 0
    )
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("a fresh passphrase for me\n"))
    assert (
        main(["users", "reset-password", "admin", "--password-stdin", "--reason", "forgotten", "--data-dir", data]) == 0
    )
    out = capsys.readouterr().out
    assert "unlocked sign-in for admin" in out and "quality_engineer is now admin" in out
    assert main(["users", "unlock", "nobody", "--reason", "x", "--data-dir", data]) == 2
    assert "no account named 'nobody'" in capsys.readouterr().err
    with session_scope(seeded.store.engine, readonly=True) as session:
        rows = audit_rows(session=session, actor=f"cli:{__import__('getpass').getuser()}")
    assert {r.action for r in rows} == {"login.unlock", "user.set_role", "user.set_password"}
