"""The NCR writer that the kill -9 (D1) and power-cut (D2) harnesses kill, and its bookkeeping.

A zygote process imports the store once and forks one writer per round (fork before any engine,
thread or connection exists). The writer runs the real StoreSink: PASS rows batched, FAIL rows
opening NCRs with image and heatmap evidence, single writes mixed with group commits of 3 and 8
(``write_batch``); it appends an NCR's uuid to its acknowledgement file only after the NCR's
commit returned. Modes: ``full`` (the product), and two controls for the power-cut harness,
``normal`` (``synchronous=NORMAL``, which the app itself refuses) and ``evidence_nofsync``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from vinspect.store import repository as repo
from vinspect.store.db import make_engine, session_scope
from vinspect.store.evidence import EvidenceStore, ScrubReport, scrub
from vinspect.store.tables import NcrRecord
from vinspect.store.verify import StoreReport, verify_store
from vinspect.types import Books

STORE_TESTS = Path(__file__).resolve().parents[1] / "store"
MODES = ("full", "normal", "evidence_nofsync")

ZYGOTE = r"""
import os, random, signal, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from store_factories import DEFAULTS, make_inspection
import vinspect.store.db as db
from vinspect.store.evidence import EvidenceStore
from vinspect.store.sink import StoreSink
from vinspect.types import Verdict

def writer(url, data_dir, base, ack_path, mode):
    if mode == "normal":
        db._SQLITE_PRAGMAS = (("journal_mode", "WAL", "wal"), ("synchronous", "NORMAL", 1), ("foreign_keys", "ON", 1))
    fd = os.open(ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    evidence = EvidenceStore(Path(data_dir) / "evidence", fsync=mode != "evidence_nofsync")
    sink = StoreSink(db.make_engine(url), evidence, defaults=DEFAULTS, batch_size=7,
                     on_ncr=lambda ref: os.write(fd, (ref.ncr_uuid + "\n").encode()))
    os.write(fd, b"ready\n")
    seq, rng = base, random.Random(base)
    while True:
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
    url, data_dir, base, ack, records, mode = line.split()
    pid = os.fork()
    if pid == 0:
        try:
            if records != "-":
                os.environ["POWERCUT_DIR"] = records
            writer(url, data_dir, int(base), ack, mode)
        finally:
            os._exit(3)
    print(pid, flush=True)
"""


class Zygote:
    """Imports the store once; forks one writer per ``spawn`` (with ``preload`` in its environment)."""

    def __init__(self, *, preload: Path | None = None) -> None:
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        env.pop("POWERCUT_DIR", None)
        if preload is not None:
            env["LD_PRELOAD"] = str(preload)
        self._proc = subprocess.Popen(
            [sys.executable, "-c", ZYGOTE, str(STORE_TESTS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def spawn(
        self, *, url: str, data_dir: Path, base: int, ack: Path, records: Path | None = None, mode: str = "full"
    ) -> int:
        """Start a writer; returns its pid. ``records``: where the power-cut shim records syncs."""
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: one of {MODES}")
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(f"{url} {data_dir} {base} {ack} {records or '-'} {mode}\n")
        self._proc.stdin.flush()
        return int(self._proc.stdout.readline())

    def close(self) -> None:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.close()
        self._proc.wait(timeout=30)
        self._proc.stdout.close()


def wait_ready(ack: Path, timeout_s: float = 30.0) -> None:
    """Block until the writer has opened its store."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ack.exists() and ack.read_bytes().startswith(b"ready\n"):
            return
        time.sleep(0.01)
    raise AssertionError(f"writer never became ready ({ack})")


def wait_first_ack(ack: Path, timeout_s: float = 30.0) -> None:
    """Block until the writer has acknowledged at least one NCR (so a kill lands mid-stream)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if acked(ack):
            return
        time.sleep(0.005)
    raise AssertionError(f"writer acknowledged nothing within {timeout_s} s ({ack})")


def acked(ack: Path) -> set[str]:
    """The NCR uuids a writer acknowledged (a torn last line never was)."""
    lines = ack.read_bytes().decode().split("\n")[:-1]
    return {line for line in lines[1:] if len(line) == 36}


@dataclass(frozen=True, slots=True)
class StoreState:
    """What a store holds after a crash: NCR uuids, integrity/chain/record check, evidence scrub, books."""

    stored: set[str]
    report: StoreReport
    scrub: ScrubReport
    books: Books


def read_state(url: str, evidence_dir: Path) -> StoreState:
    """Open the store read-only and check everything a crash could have broken."""
    engine = make_engine(url)
    try:
        with session_scope(engine, readonly=True) as session:
            return StoreState(
                stored=set(session.scalars(repo.select(NcrRecord.ncr_uuid))),
                report=verify_store(session=session),
                scrub=scrub(EvidenceStore(evidence_dir), session=session),
                books=repo.count_books(session=session),
            )
    finally:
        engine.dispose()
