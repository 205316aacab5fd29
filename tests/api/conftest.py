"""Fixtures for the web tests: a seeded store, the app, and signed-in TestClients per role."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from webseed import TEST_OPTIONS, Seeded, TestClient, add_users, build_app, csrf_of, login, open_store, seed

from vinspect.api.auth import PasswordService


@pytest.fixture()
def seeded(tmp_path: Path) -> Seeded:
    store = open_store(tmp_path / "data")
    data = seed(store)
    add_users(
        store, PasswordService(time_cost=TEST_OPTIONS.argon2_time_cost, memory_cost_kib=TEST_OPTIONS.argon2_memory_kib)
    )
    return data


@pytest.fixture()
def app(tmp_path: Path, seeded: Seeded) -> Any:
    return build_app(tmp_path / "data", seeded.store)


@pytest.fixture()
def client_for(app: Any) -> Iterator[Callable[[str | None], tuple[TestClient, str]]]:
    """``client_for(role)`` → (client signed in as that role, its CSRF token); None = anonymous."""
    clients: list[TestClient] = []

    def make(role: str | None) -> tuple[TestClient, str]:
        client = TestClient(app, base_url="http://127.0.0.1:8600", follow_redirects=False)
        clients.append(client)
        token = login(client, role) if role else csrf_of(client)
        return client, token

    yield make
    for client in clients:
        client.close()
