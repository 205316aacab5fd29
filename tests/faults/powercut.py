"""Simulated power cuts for the NCR store (goal D2): what survives is exactly what was synced.

The writer (the real StoreSink, single writes mixed with group commits) runs with
``powercut_shim.c`` preloaded, which records the content of every file and the entries of every
directory at each ``fsync``/``fdatasync``. The writer is SIGKILLed at a random moment; then
:func:`durable_image` rebuilds the disk a power cut would leave:

* a file's content is its content at its last sync in this round, else what was durable before;
* a file created in this round exists only if its directory was synced after it was created
  (likewise a new directory), and is empty unless the file itself was synced; a deletion counts
  only once its directory was synced; SQLite's ``-shm`` never survives.

Every round continues from the previous round's durable image, as a plant does after each power
cycle, and the store is verified on a copy (opening it runs recovery). The harness must bite:
the same cuts with ``synchronous=NORMAL`` must lose acknowledged NCRs, and with evidence files
not fsynced the scrub must find missing files (see ``tests/faults/test_store_powercut.py``).

Departure from the reliability notes (an APSW VFS shim): vinspect's engine is SQLAlchemy on the
standard ``sqlite3`` module, which cannot use a VFS registered in APSW's own SQLite; an
``LD_PRELOAD`` shim sees the syncs of SQLite *and* of the evidence files, so one harness covers
both halves of an NCR.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from store_writer import StoreState, Zygote, acked, read_state, wait_ready

from vinspect.store.db import make_engine
from vinspect.store.migrations import upgrade

FAULTS = Path(__file__).resolve().parent


def build_shim(out_dir: Path) -> Path:
    """Compile the preload library (needs a C compiler, as on every machine vinspect supports)."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("the power-cut harness needs a C compiler (apt install gcc)")
    library = out_dir / "powercut_shim.so"
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-O2", "-o", str(library), str(FAULTS / "powercut_shim.c"), "-ldl"],
        check=True,
        capture_output=True,
    )
    return library


def new_store(directory: Path) -> Path:
    """An empty, migrated store folder (the state before the first cut)."""
    directory.mkdir()
    engine = make_engine(f"sqlite:///{directory / 'vinspect.db'}")
    upgrade(engine)
    engine.dispose()
    return directory


def inspect_image(image: Path, scratch: Path) -> StoreState:
    """The state of a durable image, read from a clone (opening runs recovery, which rewrites files)."""
    copy = scratch / f"verify-{image.name}"
    clone_store(image, copy)
    state = read_state(f"sqlite:///{copy / 'vinspect.db'}", copy / "evidence")
    assert state.books.triggers == state.report.counts["inspections"]
    return state


def clone_store(source: Path, dest: Path) -> None:
    """Copy a store folder: SQLite files for real (opened, they change in place), evidence as hard links.

    Evidence files are never changed in place (created once, a damaged one replaced by rename),
    so linking them keeps each round cheap however large the store grows.
    """

    def clone(src: str, dst: str) -> None:
        if Path(src).name.startswith("vinspect.db"):
            shutil.copy2(src, dst)
        else:
            os.link(src, dst)

    shutil.copytree(source, dest, copy_function=clone)


def _escaped(path: Path) -> str:
    return str(path).replace("/", "%")


def _listing(records: Path, directory: Path) -> set[str] | None:
    """Entries of ``directory`` as of its last sync this round, or None if it was not synced."""
    file = records / "d" / _escaped(directory)
    return set(file.read_text().split("\n")) - {""} if file.exists() else None


def durable_image(*, work: Path, before: Path, records: Path, dest: Path) -> None:
    """Write to ``dest`` what a power cut leaves of ``work`` (which started as a copy of ``before``)."""
    names = {p.relative_to(work) for p in work.rglob("*")} | {p.relative_to(before) for p in before.rglob("*")}
    dest.mkdir(parents=True)
    for rel in sorted(names, key=lambda r: len(r.parts)):
        target = dest / rel
        if (
            rel.name.endswith("-shm")
            or not target.parent.is_dir()
            or not _survives(rel, work=work, before=before, records=records)
        ):
            continue  # (a lost directory takes its entries with it)
        if (work / rel).is_dir() or (before / rel).is_dir():
            target.mkdir(exist_ok=True)
            continue
        synced = records / "f" / _escaped(work / rel)
        source = synced if synced.exists() else before / rel
        if source.exists():
            os.link(source, target)  # images are never written: the next round works on a clone
        else:
            target.touch()  # the entry is durable, the data never was: an empty file (delayed allocation)


def _survives(rel: Path, *, work: Path, before: Path, records: Path) -> bool:
    existed = (before / rel).exists()
    listing = _listing(records, (work / rel).parent)
    if listing is None:
        return existed  # the directory was never synced this round: its entries are as they were
    return rel.name in listing  # synced without it: created later, or a durable deletion


@dataclass(frozen=True, slots=True)
class CutRound:
    """One cut: the durable image it left (only the last round's is kept) and the NCRs acknowledged before it."""

    image: Path
    acknowledged: set[str]


def cut_rounds(
    *,
    initial: Path,
    workdir: Path,
    shim: Path,
    cuts: int,
    mode: str,
    seed: int = 20261202,
) -> list[CutRound]:
    """Run ``cuts`` write-then-power-cut rounds starting from the store in ``initial``.

    ``initial`` holds ``vinspect.db`` (migrated) and ``evidence/``; round *k* writes in
    ``workdir/work-k`` and leaves its durable image in ``workdir/image-k``.
    """
    rng = random.Random(seed)
    zygote = Zygote(preload=shim)
    rounds: list[CutRound] = []
    before = initial
    try:
        for k in range(cuts):
            work, records, image = workdir / f"work-{k}", workdir / f"records-{k}", workdir / f"image-{k}"
            clone_store(before, work)
            (records / "f").mkdir(parents=True)
            (records / "d").mkdir()
            ack = workdir / f"ack-{k}.txt"
            pid = zygote.spawn(
                url=f"sqlite:///{work / 'vinspect.db'}",
                data_dir=work,
                base=(k + 1) * 1_000_000,
                ack=ack,
                records=records,
                mode=mode,
            )
            wait_ready(ack)
            time.sleep(rng.uniform(0.1, 0.5))
            os.kill(pid, signal.SIGKILL)
            _reap(pid)
            durable_image(work=work, before=before, records=records, dest=image)
            rounds.append(CutRound(image=image, acknowledged=acked(ack)))
            shutil.rmtree(work)
            shutil.rmtree(records)
            if before != initial:
                shutil.rmtree(before)  # only the newest image is kept (and checked)
            before = image
    finally:
        zygote.close()
    return rounds


def _reap(pid: int, timeout_s: float = 10.0) -> None:
    """Wait until the killed writer is gone (its files are then quiet)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.005)
    raise AssertionError(f"writer {pid} survived SIGKILL")
