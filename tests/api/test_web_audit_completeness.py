"""Audit completeness over random API sequences (D4, S10): every login, denial, signing failure and
change writes exactly the expected audit rows, each with actor, UTC time, action and entity."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from webseed import PASSWORD, ROLES, TEST_OPTIONS, TestClient, add_users, build_app, open_store, seed

from vinspect.api.auth import PasswordService
from vinspect.store import session_scope
from vinspect.store.review_queries import audit_rows

READS = ["/api/v1/ncrs", "/api/v1/queue", "/api/v1/audit", "/api/v1/users", "/api/v1/station/status"]
READ_PERMISSION = {
    "/api/v1/ncrs": set(ROLES),
    "/api/v1/station/status": set(ROLES),
    "/api/v1/queue": {"reviewer", "quality_engineer"},
    "/api/v1/audit": {"quality_engineer", "admin"},
    "/api/v1/users": {"admin"},
}


class AuditMachine(RuleBasedStateMachine):
    """Random roles doing random things; the audit delta is predicted for every step."""

    def __init__(self) -> None:
        super().__init__()
        self.expected: Counter[str] = Counter()

    @initialize(role=st.sampled_from(ROLES))
    def setup(self, role: str) -> None:
        tmp = Path(TMP.mktemp("audit"))
        self.store = open_store(tmp / "data")
        self.ncrs = [r.ncr_uuid for r in seed(self.store, n_review=3, n_fail=1, n_pass=0).review]
        add_users(
            self.store,
            PasswordService(time_cost=TEST_OPTIONS.argon2_time_cost, memory_cost_kib=TEST_OPTIONS.argon2_memory_kib),
        )
        self.client = TestClient(
            build_app(tmp / "data", self.store), base_url="http://127.0.0.1:8600", follow_redirects=False
        )
        self.role: str | None = None
        self.token = self.client.get("/api/v1/auth/session").json()["csrf_token"]
        self.baseline = Counter(self._actions())
        self.log_in(role, True)

    def _actions(self) -> list[str]:
        with session_scope(self.store.engine, readonly=True) as session:
            return [r.action for r in audit_rows(session=session, limit=100_000)]

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        return self.client.post(path, json=body, headers={"X-CSRF-Token": self.token})

    @rule(role=st.sampled_from(ROLES), good=st.booleans())
    def log_in(self, role: str, good: bool) -> None:
        response = self._post("/api/v1/auth/login", {"username": role, "password": PASSWORD if good else "nope"})
        action = {200: "login.success", 401: "login.failure", 429: "login.locked"}[response.status_code]
        self.expected[action] += 1
        if response.status_code == 200:
            self.role, self.token = role, response.json()["csrf_token"]

    @rule(path=st.sampled_from(READS))
    def read(self, path: str) -> None:
        response = self.client.get(path)
        if self.role is None:
            assert response.status_code == 401
        elif self.role in READ_PERMISSION[path]:
            assert response.status_code == 200
        else:
            assert response.status_code == 403
            self.expected["authz.deny"] += 1

    @rule(
        index=st.integers(0, 2),
        decision=st.sampled_from(["CONFIRMED_DEFECT", "FALSE_REJECT", "NEEDS_MRB"]),
        good=st.booleans(),
    )
    def review(self, index: int, decision: str, good: bool) -> None:
        ncr = self.ncrs[index]
        before = self.client.get(f"/api/v1/ncrs/{ncr}").json().get("status") if self.role else None
        response = self._post(
            f"/api/v1/ncrs/{ncr}/review",
            {"decision": decision, "reason": "seen", "password": PASSWORD if good else "wrong"},
        )
        code = response.status_code
        if code == 403 and self.role in ("operator", "admin"):
            self.expected["authz.deny"] += 1
        elif code == 403:
            self.expected["signature.failure"] += 1
        elif code == 401 and self.role is not None and not good:  # repeated failed signatures end the session
            self.expected["signature.failure"] += 1
            self.role = None
        elif code == 429:  # the account is locked: signing refused without a password check
            self.expected["login.locked"] += 1
        elif code == 200:
            if before in ("OPEN", "CONTAINED"):
                self.expected["ncr.claimed"] += 1
            self.expected["signature.create"] += 1
            self.expected["ncr.reviewed"] += 1
        else:
            assert code in (401, 409), response.text

    @rule(index=st.integers(0, 2))
    def dispose(self, index: int) -> None:
        response = self._post(
            f"/api/v1/ncrs/{self.ncrs[index]}/disposition", {"code": "SCRAP", "quantity": 1, "password": PASSWORD}
        )
        if response.status_code == 403:
            self.expected["authz.deny"] += 1
        elif response.status_code == 200:
            self.expected["signature.create"] += 1
            self.expected["ncr.dispositioned"] += 1
        else:
            assert response.status_code in (401, 409), response.text

    @rule()
    def bad_csrf(self) -> None:
        response = self.client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": "forged"})
        assert response.status_code == 403
        self.expected["csrf.fail"] += 1

    @invariant()
    def audit_matches(self) -> None:
        if not hasattr(self, "store"):
            return
        delta = Counter(self._actions()) - self.baseline
        assert delta == self.expected, f"audit delta {dict(delta)} != expected {dict(self.expected)}"

    @invariant()
    def rows_are_complete(self) -> None:
        if not hasattr(self, "store"):
            return
        now = datetime.now(UTC)
        with session_scope(self.store.engine, readonly=True) as session:
            for row in audit_rows(session=session, limit=20):
                assert row.actor and row.action and row.entity and row.entity_id and row.row_hash
                assert row.at.tzinfo is not None and now - row.at < timedelta(minutes=10)
                if row.action in ("ncr.reviewed", "login.failure", "authz.deny", "csrf.fail"):
                    assert row.reason or row.action != "ncr.reviewed"
                    assert row.source or row.action == "ncr.reviewed"


TMP: pytest.TempPathFactory


def test_audit_trail_is_complete(tmp_path_factory: pytest.TempPathFactory) -> None:
    global TMP
    TMP = tmp_path_factory
    machine = settings(
        max_examples=10,
        stateful_step_count=15,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )(AuditMachine)
    machine.TestCase().runTest()
