"""Authorization matrix: every OpenAPI operation × {anonymous, 4 roles} against authz_matrix.yaml (S2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image
from webseed import PASSWORD, ROLES, TEST_OPTIONS, TestClient, add_users, build_app, open_store, seed

from vinspect.api.auth import PasswordService
from vinspect.store import session_scope
from vinspect.store.label_files import LabelFiles
from vinspect.store.label_queries import get_set, set_images
from vinspect.store.labelling import import_folder
from vinspect.store.review_queries import is_sampled
from vinspect.store.users import create_user

MATRIX: dict[str, list[str]] = yaml.safe_load((Path(__file__).parent / "authz_matrix.yaml").read_text())
PRINCIPALS = ("anonymous", *ROLES)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data_dir = tmp_path_factory.mktemp("authz") / "data"
    store = open_store(data_dir)
    seeded = seed(store, n_review=3, n_fail=1, n_pass=40)
    passwords = PasswordService(time_cost=TEST_OPTIONS.argon2_time_cost, memory_cost_kib=TEST_OPTIONS.argon2_memory_kib)
    add_users(store, passwords)
    with session_scope(store.engine) as session:
        victim = create_user(
            "victim",
            session=session,
            display_name="Victim",
            role="operator",  # type: ignore[arg-type]
            password_hash=passwords.hash(PASSWORD),
            actor="system:test",
        )
    app = build_app(data_dir, store)
    ncr = seeded.review[0].ncr_uuid
    client = TestClient(app, base_url="http://127.0.0.1:8600")
    with session_scope(store.engine, readonly=True) as session:
        from vinspect.store.repository import get_ncr

        doc = get_ncr(ncr, session=session)
    assert doc is not None
    sample = next(i for i in seeded.pass_ids if is_sampled(i, TEST_OPTIONS.pass_sample_rate))
    client.close()
    images = tmp_path_factory.mktemp("authz-images")
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(images / "one.png")
    FORM_BODIES["POST /labelling/import"] = {"folder": str(images), "set_name": "authz", "blind": "0"}
    report = import_folder(
        images, engine=store.engine, files=LabelFiles(data_dir / "labelling"), set_name="authz", actor="system:test"
    )
    assert report.added == 1
    with session_scope(store.engine, readonly=True) as session:
        label_set = get_set(session, "authz")
        assert label_set is not None
        image_id = set_images(session, label_set)[0].id
    return {
        "app": app,
        "params": {
            "ncr_uuid": ncr,
            "inspection_id": sample,
            "sha256": doc["evidence"][0]["sha256"],
            "user_id": str(victim.id),
            "name": "tiny",
            "version": "1",
            "alarm_id": "1",
            "number": "CAPA-2026-9999",
            "step": "D1",
            "set_name": "authz",
            "image_id": str(image_id),
            "candidate": "tiny@2",
            "image": "0-champion.png",
        },
    }


def _operations(app: Any) -> list[str]:
    spec = app.openapi()
    return [f"{method.upper()} {path}" for path, ops in spec["paths"].items() for method in ops]


JSON_BODIES: dict[str, dict[str, Any]] = {
    "POST /api/v1/auth/login": {"username": "operator", "password": PASSWORD},
    "POST /api/v1/samples/{inspection_id}/review": {"decision": "CONFORMS", "reason": "ok", "password": PASSWORD},
    "POST /api/v1/ncrs/{ncr_uuid}/review": {"decision": "NEEDS_MRB", "reason": "board", "password": PASSWORD},
    "POST /api/v1/ncrs/{ncr_uuid}/disposition": {"code": "SCRAP", "quantity": 1, "password": PASSWORD},
    "POST /api/v1/ncrs/{ncr_uuid}/dispute": {"reason": "looks fine to me"},
    "POST /api/v1/users": {
        "username": "newbie",
        "display_name": "New Bie",
        "role": "operator",
        "password": "a long enough passphrase",
    },
    "POST /api/v1/users/{user_id}/deactivate": {"reason": "left the company"},
    "POST /api/v1/users/{user_id}/unlock": {"reason": "called the help desk", "password": PASSWORD},
    "POST /api/v1/users/{user_id}/password": {
        "reason": "forgot it",
        "new_password": "another long passphrase",
        "password": PASSWORD,
    },
    "POST /api/v1/users/{user_id}/role": {"reason": "moved to QA", "role": "reviewer", "password": PASSWORD},
    "POST /api/v1/models/{name}/{version}/activate": {"password": PASSWORD},
    "POST /api/v1/labelling/{set_name}/images/{image_id}/label": {"label": "good", "regions": []},
    "POST /api/v1/labelling/{set_name}/images/{image_id}/settle": {"label": "good", "regions": []},
    "POST /api/v1/models/{name}/{version}/promotion/signatures": {"password": PASSWORD, "reason": "reviewed"},
    "POST /api/v1/models/{name}/{version}/promotion/promote": {"password": PASSWORD},
}
FORM_BODIES: dict[str, dict[str, str]] = {
    "POST /login": {"username": "operator", "password": PASSWORD},
    "POST /setup": {"secret": "x", "username": "admin2", "display_name": "A", "password": "p" * 12},
    "POST /review/{ncr_uuid}": {"decision": "NEEDS_MRB", "reason": "board", "password": PASSWORD},
    "POST /samples/{inspection_id}": {"decision": "CONFORMS", "password": PASSWORD},
    "POST /ncrs/{ncr_uuid}/disposition": {"code": "SCRAP", "password": PASSWORD},
    "POST /ncrs/{ncr_uuid}/dispute": {"reason": "looks fine"},
    "POST /users/{user_id}/deactivate": {"reason": "left"},
    "POST /users/{user_id}/unlock": {"reason": "help desk", "password": PASSWORD},
    "POST /users/{user_id}/password": {
        "reason": "forgot",
        "new_password": "another long passphrase",
        "password": PASSWORD,
    },
    "POST /users/{user_id}/role": {"reason": "moved", "role": "reviewer", "password": PASSWORD},
    "POST /models/{name}/{version}/activate": {"password": PASSWORD},
    "POST /models/{name}/{version}/sign": {"password": PASSWORD, "reason": "reviewed"},
    "POST /models/{name}/{version}/promote": {"password": PASSWORD},
    "POST /models/{name}/rollback": {"password": PASSWORD, "reason": "rose"},
    "POST /users": {
        "username": "formbie",
        "display_name": "F",
        "role": "operator",
        "password": "a long enough passphrase",
    },
}


def _call(client: TestClient, operation: str, params: dict[str, str], token: str) -> Any:
    method, template = operation.split(" ", 1)
    path = template.format(**params)
    headers = {"X-CSRF-Token": token}
    if operation in JSON_BODIES:
        return client.request(method, path, json=JSON_BODIES[operation], headers=headers)
    if operation in FORM_BODIES:
        return client.request(method, path, data={**FORM_BODIES[operation], "csrf_token": token})
    return client.request(method, path, headers=headers)


def test_matrix_covers_every_operation(world: dict[str, Any]) -> None:
    operations = _operations(world["app"])
    missing = sorted(set(operations) - set(MATRIX))
    stale = sorted(set(MATRIX) - set(operations))
    assert not missing, f"operations without an authz_matrix.yaml entry: {missing}"
    assert not stale, f"authz_matrix.yaml entries for operations that no longer exist: {stale}"
    for op, allowed in MATRIX.items():
        assert set(allowed) <= {"anyone", *ROLES}, op


@pytest.mark.parametrize("operation", sorted(MATRIX))
def test_operation_honours_matrix(world: dict[str, Any], operation: str) -> None:
    """Allowed principals never get 401/403; others get 401 (anonymous) or 403 (roles)."""
    allowed = MATRIX[operation]
    for principal in PRINCIPALS:
        with TestClient(world["app"], base_url="http://127.0.0.1:8600", follow_redirects=False) as client:
            token = client.get("/api/v1/auth/session").json()["csrf_token"]
            if principal != "anonymous":
                login = client.post(
                    "/api/v1/auth/login",
                    json={"username": principal, "password": PASSWORD},
                    headers={"X-CSRF-Token": token},
                )
                assert login.status_code == 200, login.text
                token = login.json()["csrf_token"]
            response = _call(client, operation, world["params"], token)
        code = response.status_code
        assert code < 500, f"{operation} as {principal}: {code} {response.text[:200]}"
        if "anyone" in allowed or principal in allowed:
            assert code not in (401, 403) and not _to_login(response), (
                f"{operation} as {principal} should be allowed, got {code} {response.text[:200]}"
            )
        elif principal == "anonymous":
            assert code == 401 or _to_login(response), f"{operation} anonymous: {code}"
        else:
            assert code == 403, f"{operation} as {principal} should be 403, got {code} {response.text[:200]}"


def _to_login(response: Any) -> bool:
    return response.status_code == 303 and response.headers.get("location", "").startswith("/login?next=")
