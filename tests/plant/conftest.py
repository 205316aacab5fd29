"""Plant fixtures: one private PostgreSQL cluster per session (see tests/store/store_pg.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "store"))

from store_pg import PgCluster, pg_available


@pytest.fixture(scope="session")
def plant_pg() -> Iterator[PgCluster]:
    reason = pg_available()
    if reason is not None:
        pytest.skip(reason)
    cluster = PgCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture()
def plant_db(plant_pg: PgCluster) -> Iterator[str]:
    """A fresh, empty (unmigrated) PostgreSQL database."""
    url = plant_pg.create_database("plant")
    try:
        yield url
    finally:
        plant_pg.drop_database(url)
