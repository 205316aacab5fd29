"""Store fixtures: every test taking ``store_url`` runs on SQLite and on a private PostgreSQL 15.

The PostgreSQL cluster is started once per session (initdb + pg_ctl as the postgres user, random
port on 127.0.0.1) and each test gets a fresh database; without the binaries those tests skip
with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from store_pg import PgCluster, pg_available

from vinspect.store.db import make_engine
from vinspect.store.evidence import EvidenceStore
from vinspect.store.migrations import upgrade


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    reason = pg_available()
    if reason is not None:
        pytest.skip(reason)
    cluster = PgCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'vinspect.db'}"
        return
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    url = cluster.create_database()
    try:
        yield url
    finally:
        cluster.drop_database(url)


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    eng = make_engine(store_url)
    upgrade(eng)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def evidence(tmp_path: Path) -> EvidenceStore:
    return EvidenceStore(tmp_path / "evidence")


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def module_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Engine, EvidenceStore]]:
    """One migrated store per database shared by a module whose tests only read (or roll back)."""
    tmp = tmp_path_factory.mktemp("store")
    if request.param == "sqlite":
        url = f"sqlite:///{tmp / 'vinspect.db'}"
    else:
        url = request.getfixturevalue("pg_cluster").create_database("m")
    eng = make_engine(url)
    upgrade(eng)
    evidence_store = EvidenceStore(tmp / "evidence")
    try:
        yield eng, evidence_store
    finally:
        evidence_store.close()
        eng.dispose()
