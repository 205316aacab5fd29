"""kill -9 of the NCR writer at random points (goal D1): no acknowledged NCR is ever lost.

The writer (:mod:`store_writer`: the real StoreSink, single writes and group commits, each NCR
acknowledged only after its commit) is SIGKILLed after a random delay; then: every acknowledged
uuid is in the store, SQLite ``integrity_check`` is ok, the audit chain and every record
verify, every referenced evidence file hashes to its name, and the books close.
On PostgreSQL every tenth round also crashes the server (``pg_ctl stop -m immediate``) and restart it.
The T2 size lives in ``bench/store_bench.py --kills N``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from store_writer import Zygote, acked, read_state, wait_first_ack, wait_ready

from vinspect.store.db import make_engine
from vinspect.store.migrations import upgrade

STORE_TESTS = Path(__file__).resolve().parents[1] / "store"
KILLS = 20


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, STORE_TESTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _kill_rounds(url: str, data_dir: Path, *, kills: int, crash_server: object = None) -> set[str]:
    rng = random.Random(20260115)
    zygote = Zygote()
    acknowledged: set[str] = set()
    try:
        for round_ in range(kills):
            ack = data_dir / f"ack-{round_}.txt"
            pid = zygote.spawn(url=url, data_dir=data_dir, base=(round_ + 1) * 1_000_000, ack=ack)
            wait_ready(ack)
            # the delay counts from the first acknowledged NCR, not from start-up: on a loaded machine
            # a writer may need longer than the delay to commit its first group
            wait_first_ack(ack)
            time.sleep(rng.uniform(0.05, 0.4))
            if crash_server is not None and round_ % 10 == 9:
                crash_server.stop(mode="immediate")  # type: ignore[attr-defined]
                time.sleep(0.1)
                with contextlib.suppress(ProcessLookupError):  # it may already have died of StoreError
                    os.kill(pid, signal.SIGKILL)
                crash_server.start()  # type: ignore[attr-defined]
            else:
                os.kill(pid, signal.SIGKILL)
            acknowledged |= acked(ack)
    finally:
        zygote.close()
    return acknowledged


def _verify(url: str, data_dir: Path, acknowledged: set[str]) -> None:
    state = read_state(url, data_dir / "evidence")
    lost = acknowledged - state.stored
    assert not lost, f"{len(lost)} acknowledged NCRs lost"
    assert state.report.ok, state.report
    assert state.scrub.ok and state.scrub.checked >= len(acknowledged), state.scrub
    books = state.books
    assert books.discrepancy == 0 and books.triggers == state.report.counts["inspections"]
    assert books.failed_defect >= len(acknowledged)


def test_store_kill9_sqlite_loses_no_acknowledged_ncr(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'vinspect.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    acknowledged = _kill_rounds(url, tmp_path, kills=KILLS)
    assert len(acknowledged) >= KILLS  # the kills landed while NCRs were being written
    _verify(url, tmp_path, acknowledged)


@pytest.fixture(scope="module")
def pg() -> Iterator[object]:
    store_pg = _load("store_pg")
    reason = store_pg.pg_available()
    if reason is not None:
        pytest.skip(reason)
    cluster = store_pg.PgCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.mark.postgres
def test_store_kill9_postgres_loses_no_acknowledged_ncr(pg: object, tmp_path: Path) -> None:
    """Writer SIGKILLs plus, every tenth round, an immediate (crash) stop of the server."""
    url = pg.create_database()  # type: ignore[attr-defined]
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    acknowledged = _kill_rounds(url, tmp_path, kills=KILLS, crash_server=pg)
    assert len(acknowledged) >= KILLS
    _verify(url, tmp_path, acknowledged)
