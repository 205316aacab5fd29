"""kill -9 of the NCR writer at random points (goal D1): no acknowledged NCR is ever lost.

A zygote process imports the store once and forks one writer per round (fork before any engine,
thread or connection exists). The writer runs the real StoreSink: PASS rows batched, FAIL rows
opening NCRs with image and heatmap evidence, single writes mixed with group commits of 3 and 8
(``write_batch``); it appends an NCR's uuid to its acknowledgement file only after the NCR's
commit returned. The parent SIGKILLs it after a random delay, then checks: every acknowledged
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
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from vinspect.store import repository as repo
from vinspect.store.db import make_engine, session_scope
from vinspect.store.evidence import EvidenceStore, scrub
from vinspect.store.migrations import upgrade
from vinspect.store.tables import InspectionRecord, NcrRecord
from vinspect.store.verify import verify_store

STORE_TESTS = Path(__file__).resolve().parents[1] / "store"
KILLS = 20

ZYGOTE = r"""
import os, random, signal, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from store_factories import DEFAULTS, make_inspection
from vinspect.store.db import make_engine
from vinspect.store.evidence import EvidenceStore
from vinspect.store.sink import StoreSink
from vinspect.types import Verdict

def writer(url, data_dir, base, ack_path):
    fd = os.open(ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sink = StoreSink(make_engine(url), EvidenceStore(Path(data_dir) / "evidence"), defaults=DEFAULTS,
                     batch_size=7, on_ncr=lambda ref: os.write(fd, (ref.ncr_uuid + "\n").encode()))
    os.write(fd, b"ready\n")
    seq, rng = base, random.Random(base)
    while True:  # single writes and group commits (the record thread's write_batch), mixed
        n = rng.choice((1, 1, 3, 8))
        group = [make_inspection(s, verdict=Verdict.PASS if s % 3 == 0 else Verdict.FAIL, size=64)
                 for s in range(seq, seq + n)]
        seq += n
        if n == 1:
            sink.write(group[0])
        else:
            errors = [e for e in sink.write_batch(group) if e is not None]
            if errors:
                raise errors[0]

signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # killed writers are reaped by the kernel
for line in sys.stdin:
    url, data_dir, base, ack = line.split()
    pid = os.fork()
    if pid == 0:
        try:
            writer(url, data_dir, int(base), ack)
        finally:
            os._exit(3)
    print(pid, flush=True)
"""


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, STORE_TESTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Zygote:
    def __init__(self) -> None:
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        self._proc = subprocess.Popen([sys.executable, "-c", ZYGOTE, str(STORE_TESTS)], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True, env=env)

    def spawn(self, *, url: str, data_dir: Path, base: int, ack: Path) -> int:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(f"{url} {data_dir} {base} {ack}\n")
        self._proc.stdin.flush()
        return int(self._proc.stdout.readline())

    def close(self) -> None:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.close()
        self._proc.wait(timeout=30)
        self._proc.stdout.close()


def _wait_ready(ack: Path, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ack.exists() and ack.read_bytes().startswith(b"ready\n"):
            return
        time.sleep(0.01)
    raise AssertionError(f"writer never became ready ({ack})")


def _acked(ack: Path) -> set[str]:
    lines = ack.read_bytes().decode().split("\n")[:-1]  # a torn last line was never acknowledged
    return {line for line in lines[1:] if len(line) == 36}


def _kill_rounds(url: str, data_dir: Path, *, kills: int, crash_server: object = None) -> set[str]:
    rng = random.Random(20260115)
    zygote = Zygote()
    acknowledged: set[str] = set()
    try:
        for round_ in range(kills):
            ack = data_dir / f"ack-{round_}.txt"
            pid = zygote.spawn(url=url, data_dir=data_dir, base=(round_ + 1) * 1_000_000, ack=ack)
            _wait_ready(ack)
            time.sleep(rng.uniform(0.05, 0.4))
            if crash_server is not None and round_ % 10 == 9:
                crash_server.stop(mode="immediate")  # type: ignore[attr-defined]
                time.sleep(0.1)
                with contextlib.suppress(ProcessLookupError):  # it may already have died of StoreError
                    os.kill(pid, signal.SIGKILL)
                crash_server.start()  # type: ignore[attr-defined]
            else:
                os.kill(pid, signal.SIGKILL)
            acknowledged |= _acked(ack)
    finally:
        zygote.close()
    return acknowledged


def _verify(url: str, data_dir: Path, acknowledged: set[str]) -> None:
    engine = make_engine(url)
    try:
        with session_scope(engine, readonly=True) as session:
            stored = set(session.scalars(repo.select(NcrRecord.ncr_uuid)))
            report = verify_store(session=session)
            evidence = scrub(EvidenceStore(data_dir / "evidence"), session=session)
            books = repo.count_books(session=session)
            rows = session.scalar(repo.select(repo.func.count()).select_from(InspectionRecord))
    finally:
        engine.dispose()
    lost = acknowledged - stored
    assert not lost, f"{len(lost)} acknowledged NCRs lost"
    assert report.ok, report
    assert evidence.ok and evidence.checked >= len(acknowledged), evidence
    assert books.discrepancy == 0 and books.triggers == rows and books.failed_defect >= len(acknowledged)


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
