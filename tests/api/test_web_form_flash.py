"""Page forms answer through one post -> flash -> redirect helper (issue 15): the message of a
done action, or "<what> refused: <detail>" on the same page, never a raw error."""

from __future__ import annotations

from collections.abc import Callable

from webseed import TestClient

Client = Callable[[str | None], tuple[TestClient, str]]


def test_a_refused_new_account_flashes_the_first_problem_and_stays_on_users(client_for: Client) -> None:
    admin, token = client_for("admin")
    weak = admin.post(
        "/users",
        data={"csrf_token": token, "username": "rita", "display_name": "Rita", "role": "reviewer", "password": "short"},
    )
    assert weak.status_code == 303
    assert weak.headers["location"] == "/users"
    page = admin.get("/users").text
    assert "Refused: " in page
    assert "Created rita" not in page
    done = admin.post(
        "/users",
        data={
            "csrf_token": token,
            "username": "rita",
            "display_name": "Rita",
            "role": "reviewer",
            "password": "a long enough passphrase",
        },
    )
    assert done.headers["location"] == "/users"
    assert "Created rita (reviewer)." in admin.get("/users").text


def test_a_refused_deactivation_names_why(client_for: Client) -> None:
    admin, token = client_for("admin")
    gone = admin.post("/users/999999/deactivate", data={"csrf_token": token, "reason": "left the plant"})
    assert gone.status_code == 303
    assert gone.headers["location"] == "/users"
    assert "Refused: " in admin.get("/users").text
