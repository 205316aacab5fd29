"""Issue 18 step 1: stations started together on a fresh PostgreSQL all migrate; SQLite takes one station."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from vinspect.errors import StoreError
from vinspect.store.db import make_engine
from vinspect.store.migrations import MIGRATION_LOCK_KEY, check_current, upgrade
from vinspect.store.station_lock import station_lock

_UPGRADE = (
    "import sys, logging; logging.basicConfig(level=logging.WARNING); "
    "from vinspect.store import make_engine, upgrade; "
    "upgrade(make_engine(sys.argv[1], application_name=sys.argv[2])); print('migrated')"
)


@pytest.mark.postgres
def test_four_processes_migrate_a_fresh_postgres_together(plant_db: str) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _UPGRADE, plant_db, f"station s{k}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(4)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [err for _, err in outs]
    assert all(out.strip() == "migrated" for out, _ in outs)
    engine = make_engine(plant_db)
    try:
        check_current(engine)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_waiting_migration_names_the_holder(plant_db: str) -> None:
    holder = make_engine(plant_db, application_name="vinspect run holder-7")
    watcher = make_engine(plant_db)  # pg_stat_activity is a snapshot per transaction: poll from outside
    try:
        with holder.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            proc = subprocess.Popen(
                [sys.executable, "-c", _UPGRADE, plant_db, "station waiter"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            deadline = time.monotonic() + 60
            waiting = False
            while time.monotonic() < deadline and not waiting:  # the waiter blocks on the lock, not a timer
                with watcher.connect() as look:
                    waiting = bool(
                        look.execute(
                            text(
                                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE "
                                "l.locktype = 'advisory' AND NOT l.granted AND a.application_name = 'station waiter'"
                            )
                        ).scalar()
                    )
                time.sleep(0.05)
            assert waiting, "the second migration did not wait on the lock"
            assert proc.poll() is None
        _, err = proc.communicate(timeout=120)
    finally:
        holder.dispose()
        watcher.dispose()
    assert proc.returncode == 0, err
    assert "waiting for PostgreSQL backend pid" in err and "vinspect run holder-7" in err
    assert "to finish migrating the schema" in err
    engine = make_engine(plant_db)
    try:
        check_current(engine)
    finally:
        engine.dispose()


def test_sqlite_refuses_a_second_station_naming_the_first(tmp_path: Path) -> None:
    db = tmp_path / "vinspect.db"
    upgrade(make_engine(f"sqlite:///{db}"))
    with station_lock(db, "line1-cam1"):
        code = (
            "import sys; from pathlib import Path; from vinspect.store.station_lock import station_lock\n"
            "with station_lock(Path(sys.argv[1]), 'line1-cam2'): pass"
        )
        done = subprocess.run([sys.executable, "-c", code, str(db)], capture_output=True, text=True, timeout=60)
        assert done.returncode != 0
        assert "station 'line1-cam1' (pid " in done.stderr
        assert "station 'line1-cam2' cannot share it" in done.stderr
    with station_lock(db, "line1-cam2"):  # released when the first station stops
        pass


def test_station_lock_is_released_by_a_killed_process(tmp_path: Path) -> None:
    db = tmp_path / "vinspect.db"
    code = (
        "import sys, time; from pathlib import Path; from vinspect.store.station_lock import station_lock\n"
        "with station_lock(Path(sys.argv[1]), 'dead'):\n print('held', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(StoreError, match="station 'dead'"), station_lock(db, "alive"):
            pass
    finally:
        proc.kill()
        proc.wait(timeout=30)
        assert proc.stdout is not None
        proc.stdout.close()
    with station_lock(db, "alive"):
        pass


def test_vinspect_run_refuses_a_second_station_on_one_sqlite_file(tmp_path: Path) -> None:
    """Two real ``vinspect run`` processes on one SQLite file: one runs, the other is refused by name."""
    from plant_run import Plant

    db = tmp_path / "shared.db"
    plant = Plant(tmp_path, f"sqlite:///{db}", 2, fps=20)
    plant.start(duration_s=8)
    plant.wait(timeout_s=120)
    ran = [st for st in plant.stations if st.closing]
    refused = [st for st in plant.stations if not st.closing]
    assert len(ran) == 1 and len(refused) == 1, [st.err[-500:] for st in plant.stations]
    assert refused[0].proc is not None and refused[0].proc.returncode == 2
    assert (
        f"station {ran[0].station_id!r} (pid {ran[0].proc.pid} on " in refused[0].err  # type: ignore[union-attr]
        and f"station {refused[0].station_id!r} cannot share it" in refused[0].err
    ), refused[0].err


@pytest.mark.postgres
def test_the_least_privilege_app_role_can_report_a_station(plant_pg, plant_db: str) -> None:
    """`vinspect db grant` covers the station registry: a station running as the app role reports."""
    import uuid
    from datetime import UTC, datetime

    import psycopg
    from sqlalchemy.engine import make_url

    from vinspect.store.db import session_scope
    from vinspect.store.roles import grant_app_role
    from vinspect.store.stations import StationIdentity, list_stations, report_station

    role = f"app_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"host=127.0.0.1 port={plant_pg.port} user=postgres dbname=postgres", autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
    owner = make_engine(plant_db)
    try:
        upgrade(owner)
        grant_app_role(owner, role)
    finally:
        owner.dispose()
    app = make_engine(make_url(plant_db).set(username=role).render_as_string(hide_password=False))
    status = {"state": "OPERATIONAL", "books": {"triggers": 5, "passed": 5}, "model": None, "latency_ms": {}}
    try:
        for triggers in (5, 9):  # insert, then the upsert's update
            report_station(
                app,
                StationIdentity(station_id="st01", site_id="p1", line_id="L1"),
                status | {"books": {"triggers": triggers, "passed": triggers}},
                started_at=datetime.now(UTC),
                period_s=2.0,
                parts_per_s=None,
                reject_rate=None,
            )
        with session_scope(app, readonly=True) as session:
            assert [(v.station_id, v.triggers) for v in list_stations(session=session)] == [("st01", 9)]
    finally:
        app.dispose()


def test_the_least_privilege_app_role_can_distribute_and_report_but_not_rewrite_a_bundle(
    plant_pg, plant_db: str
) -> None:
    """`vinspect db grant` covers model distribution: the app role stores a bundle and an assignment, a
    station running as it reports its outcome, and nobody but the owner rewrites stored bytes."""
    import uuid
    from datetime import UTC, datetime

    import psycopg
    from sqlalchemy.engine import make_url

    from vinspect.store.db import session_scope
    from vinspect.store.distribution import current_assignment, distribute, report_outcome
    from vinspect.store.roles import grant_app_role

    role = f"app_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"host=127.0.0.1 port={plant_pg.port} user=postgres dbname=postgres", autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
    owner = make_engine(plant_db)
    try:
        upgrade(owner)
        grant_app_role(owner, role)
    finally:
        owner.dispose()
    app = make_engine(make_url(plant_db).set(username=role).render_as_string(hide_password=False))
    try:
        with session_scope(app) as session:
            [a] = distribute(
                session=session,
                name="tiny",
                version="2",
                sha256="ab" * 32,
                archive=b"tar",
                archive_sha256="cd" * 32,
                station_ids=["st01"],
                approval="test",
                actor="cli:qe",
            )
        report_outcome(
            app,
            assignment_id=a.id,
            station_id="st01",
            outcome="SWITCHED",
            reason=None,
            at=datetime.now(UTC),
            running_sha256="ab" * 32,
        )
        got = current_assignment(app, "st01")
        assert got is not None and got.outcome == "SWITCHED"
        with pytest.raises(StoreError, match="permission denied for table model_bundles"), session_scope(app) as s:
            s.execute(text("UPDATE model_bundles SET archive = 'x'"))
    finally:
        app.dispose()
