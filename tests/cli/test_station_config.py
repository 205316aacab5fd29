"""Issue 20 item 7: the station file is a signed controlled document.

A store-backed ``vinspect run`` refuses a configuration nobody approved (naming the file, the hash
and the command); only a quality engineer or admin approves, with password re-entry; an approved
configuration starts and every inspection carries its hash (store row and JSONL line); a running
station whose file changes on disk keeps running the approved version, says so in its status and
raises a quality alarm.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from testkit.bundles import write_golden_samples
from testkit.stations import approve_station
from vinspect.api.auth import PasswordService
from vinspect.cli import main
from vinspect.station_file import StationConfig, load_station
from vinspect.store import make_engine, session_scope, upgrade
from vinspect.store.audit_key import ANCHOR_FILE, attach, open_keyring
from vinspect.store.ncr import Role
from vinspect.store.station_configs import station_history
from vinspect.store.tables import InspectionRecord, QualityAlarmRecord, StationRow
from vinspect.store.users import create_user
from vinspect.store.verify import verify_store

GOLDEN = [
    ("good", np.full((20, 20), 50, np.uint8), "PASS", 50 / 255),
    ("bad", np.full((20, 20), 200, np.uint8), "FAIL", 200 / 255),
]
PRODUCT = "{part_number: TL-1, part_revision: A, part_name: tile, requirement_ref: DWG-1, site_id: p1, line_id: l1}"
PASSWORD = "Config-approval-pw-1"


def _station(tmp_path: Path, bundle: Path, *, fail_at: float = 0.31, fps: int = 60) -> Path:
    write_golden_samples(bundle, GOLDEN)
    path = tmp_path / "station.yaml"
    path.write_text(
        f"station_id: t1\ndeadline_ms: 200\nmodel: {{path: {bundle}}}\nsignal: {{kind: null}}\n"
        f"source: {{kind: synthetic, fps: {fps}, size_px: 64, defect_rate: 0.3, overflow: reject}}\n"
        f"policy: {{fail_at: {fail_at}, review_at: 0.3}}\n"
        f"sinks: [{{kind: store, product: {PRODUCT}}}, jsonl]\n"
    )
    return path


def _run(station: Path, data: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "vinspect",
            "--log-level",
            "WARNING",
            "run",
            "--station",
            str(station),
            "--data-dir",
            str(data),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )


def _engine(data: Path):  # type: ignore[no-untyped-def]
    data.mkdir(parents=True, exist_ok=True)
    engine = make_engine(f"sqlite:///{(data / 'vinspect.db').resolve()}")
    upgrade(engine)
    attach(engine, open_keyring(data), anchor_path=data / ANCHOR_FILE)
    return engine


def _users(data: Path) -> None:
    engine = _engine(data)
    digest = PasswordService().hash(PASSWORD)
    try:
        with session_scope(engine) as session:
            for name, shown, role in (
                ("quinn", "Quinn Engineer", Role.QUALITY_ENGINEER),
                ("ada", "Ada Admin", Role.ADMIN),
                ("rita", "Rita Reviewer", Role.REVIEWER),
            ):
                create_user(
                    name, session=session, display_name=shown, role=role, password_hash=digest, actor="system:test"
                )
    finally:
        engine.dispose()


def _approve(monkeypatch, capsys, station: Path, data: Path, user: str, password: str = PASSWORD) -> tuple[int, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(password + "\n"))
    code = main(
        [
            "config",
            "approve",
            "--station",
            str(station),
            "--data-dir",
            str(data),
            "--user",
            user,
            "--reason",
            "line trial settings reviewed",
            "--password-stdin",
        ]
    )
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.fixture()
def station(tmp_path, tiny_bundle) -> Path:
    return _station(tmp_path, tiny_bundle)


def test_unapproved_configuration_is_refused_at_start_with_the_command(tmp_path, station) -> None:
    data = tmp_path / "data"
    digest = load_station(station).config_sha256()
    done = _run(station, data, "--max-parts", "3")
    assert done.returncode == 2
    assert f"{station}: station t1 configuration {digest} is not approved" in done.stderr
    assert f"vinspect config approve --station {station} --data-dir {data} --user" in done.stderr
    engine = _engine(data)
    try:
        with session_scope(engine, readonly=True) as session:
            assert session.scalar(select(InspectionRecord.id)) is None, "a refused station recorded parts"
    finally:
        engine.dispose()


def test_only_a_quality_engineer_or_admin_approves_with_their_password(tmp_path, station, monkeypatch, capsys) -> None:
    data = tmp_path / "data"
    _users(data)
    code, text = _approve(monkeypatch, capsys, station, data, "rita")
    assert code == 2 and "rita (reviewer) may not sign CONFIG_APPROVAL" in text
    code, text = _approve(monkeypatch, capsys, station, data, "quinn", password="wrong-password-1")
    assert code == 2 and "signature refused" in text
    code, text = _approve(monkeypatch, capsys, station, data, "ada")
    assert code == 0 and "signed by Ada Admin" in text
    code, text = _approve(monkeypatch, capsys, station, data, "quinn")
    assert code == 2 and "is already approved (by Ada Admin" in text
    engine = _engine(data)
    try:
        with session_scope(engine, readonly=True) as session:
            history = station_history(session=session, station_id="t1")
            report = verify_store(session=session)
    finally:
        engine.dispose()
    assert [h.approved_by for h in history] == ["Ada Admin"]
    assert history[0].config_sha256 == load_station(station).config_sha256()
    assert report.ok, report.problems


def test_approved_configuration_starts_and_every_inspection_carries_its_hash(
    tmp_path, station, monkeypatch, capsys
) -> None:
    data = tmp_path / "data"
    _users(data)
    assert _approve(monkeypatch, capsys, station, data, "quinn")[0] == 0
    digest = load_station(station).config_sha256()
    done = _run(station, data, "--max-parts", "6")
    assert done.returncode == 0, done.stderr
    closing = json.loads(done.stdout.splitlines()[-1])
    assert closing["config"]["sha256"] == digest and closing["config"]["approved_by"] == "Quinn Engineer"
    lines = [json.loads(line) for line in (data / "inspections.jsonl").read_text().splitlines()]
    assert len(lines) == 6 and {line["config_sha256"] for line in lines} == {digest}
    engine = _engine(data)
    try:
        with session_scope(engine, readonly=True) as session:
            assert set(session.scalars(select(InspectionRecord.config_sha256))) == {digest}
            assert session.scalar(select(StationRow.config_sha256)) == digest
            report = verify_store(session=session)
    finally:
        engine.dispose()
    assert report.ok, report.problems
    # a changed threshold is a new version: refused again, and `config show` names the change
    changed = tmp_path / "changed.yaml"
    changed.write_text(station.read_text().replace("fail_at: 0.31", "fail_at: 0.4"))
    assert main(["config", "show", "--station", str(changed), "--data-dir", str(data)]) == 1
    shown = capsys.readouterr().out
    assert "NOT approved" in shown and '-  "fail_at": 0.31,' in shown and '+  "fail_at": 0.4,' in shown
    assert _run(changed, data, "--max-parts", "2").returncode == 2


def test_a_running_station_does_not_apply_a_changed_file(tmp_path, station, monkeypatch, capsys) -> None:
    data = tmp_path / "data"
    _users(data)
    assert _approve(monkeypatch, capsys, station, data, "quinn")[0] == 0
    approved = load_station(station).config_sha256()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vinspect",
            "--log-level",
            "WARNING",
            "run",
            "--station",
            str(station),
            "--data-dir",
            str(data),
            "--duration-s",
            "30",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        status = data / "status.json"
        end = time.monotonic() + 30
        while not (status.is_file() and json.loads(status.read_text()).get("state") == "OPERATIONAL"):
            assert time.monotonic() < end and proc.poll() is None, "station did not start"
            time.sleep(0.1)
        time.sleep(0.5)
        station.write_text(station.read_text().replace("fail_at: 0.31", "fail_at: 0.9"))  # would pass almost all
        edited = load_station(station).config_sha256()
        while (cfg := json.loads(status.read_text())["config"])["file_state"] != "changed, not approved":
            assert time.monotonic() < end, f"the change was not noticed: {cfg}"
            time.sleep(0.1)
        assert cfg["sha256"] == approved and cfg["file_sha256"] == edited
        assert "still running the approved configuration" in cfg["message"]
        assert "vinspect config approve --station" in cfg["message"]
        time.sleep(1.0)  # parts judged after the edit
    finally:
        proc.send_signal(2)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"changed on disk to configuration {edited[:12]}, which is not approved" in err
    engine = _engine(data)
    try:
        with session_scope(engine, readonly=True) as session:
            hashes = set(session.scalars(select(InspectionRecord.config_sha256)))
            fail_at = set(session.scalars(select(InspectionRecord.fail_at)))
            alarms = list(session.scalars(select(QualityAlarmRecord).where(QualityAlarmRecord.kind == "config")))
    finally:
        engine.dispose()
    assert hashes == {approved} and fail_at == {0.31}, "the unapproved edit was applied"
    assert len(alarms) == 1 and json.loads(alarms[0].detail)["file_sha256"] == edited


def test_testkit_approval_is_what_the_cli_checks(tmp_path, station) -> None:
    data = tmp_path / "data"
    assert approve_station(station, data) == load_station(station).config_sha256()
    assert approve_station(station, data) == load_station(station).config_sha256()  # idempotent
    done = _run(station, data, "--max-parts", "2")
    assert done.returncode == 0, done.stderr


def test_the_station_file_holds_no_secret_fields() -> None:
    """The hash covers the whole file, so it must never hold a secret: passwords and DSNs come from the
    environment and the settings. A new field with a secret-like name fails here."""

    def names(model: type, prefix: str = "") -> list[str]:
        out = []
        for name, field in model.model_fields.items():  # type: ignore[attr-defined]
            out.append(prefix + name)
            for arg in getattr(field.annotation, "__args__", (field.annotation,)):
                if isinstance(arg, type) and hasattr(arg, "model_fields"):
                    out.extend(names(arg, prefix + name + "."))
        return out

    secretish = [
        n
        for n in names(StationConfig)
        if any(w in n.split(".")[-1] for w in ("password", "secret", "token", "dsn", "database_url"))
    ]
    assert secretish == ["opcua.password_env"]
