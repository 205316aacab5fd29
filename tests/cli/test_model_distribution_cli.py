"""`vinspect models distribute` / `distribution` (issue 18) on a SQLite store: the approval rules of
activation (a bundle that cannot meet its targets only with a signed risk acceptance), stations by
id or line, clear refusals, and the listing of each station's assignment and outcome."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from testkit.bundles import state_operating_point
from vinspect.cli import main
from vinspect.settings import load_settings
from vinspect.store import make_engine, session_scope, upgrade
from vinspect.store.distribution import current_assignments
from vinspect.store.stations import StationIdentity, report_station
from vinspect.store.tables import SignatureRecord

PASSWORD = "a long enough passphrase"


def _overlapping(bundle: Path) -> Path:
    rng = np.random.default_rng(7)
    return state_operating_point(bundle, rng.normal(0.0, 1.0, 200), rng.normal(1.5, 1.0, 40))


def _engine(data: Path):  # type: ignore[no-untyped-def]
    return make_engine(load_settings(data_dir=data).resolved_database_url)


def _setup(data: Path, bundle: Path, monkeypatch: pytest.MonkeyPatch, *, signer: bool = True) -> None:
    assert main(["models", "--data-dir", str(data), "install", str(bundle)]) == 0
    if signer:
        monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
        assert (
            main(
                [
                    "users",
                    "add",
                    "qe",
                    "--display-name",
                    "Q. Engineer",
                    "--role",
                    "quality_engineer",
                    "--password-stdin",
                    "--data-dir",
                    str(data),
                ]
            )
            == 0
        )
    engine = _engine(data)
    upgrade(engine)
    for sid, line in (("st01", "L1"), ("st02", "L1"), ("st03", "L2")):
        report_station(
            engine,
            StationIdentity(station_id=sid, line_id=line),
            {"state": "OPERATIONAL"},
            started_at=datetime.now(UTC),
            period_s=2.0,
            parts_per_s=None,
            reject_rate=None,
        )
    engine.dispose()


def test_a_risky_version_goes_out_only_with_a_signed_acceptance(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "qe"
    _setup(data, _overlapping(tiny_bundle), monkeypatch)
    capsys.readouterr()
    base = ["models", "distribute", "--name", "tiny", "--version", "1", "--data-dir", str(data)]
    assert main([*base, "--line", "L1"]) == 2
    assert "refused to activate tiny 1: it cannot meet its targets" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert (
        main(
            [*base, "--line", "L1", "--accept-risk", "--user", "qe", "--reason", "trial on line 1", "--password-stdin"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "assigned tiny 1" in out and "to st01, st02" in out and "risk accepted by qe" in out
    engine = _engine(data)
    try:
        with session_scope(engine, readonly=True) as session:
            assert sorted(current_assignments(session=session)) == ["st01", "st02"]
            assert session.query(SignatureRecord).filter_by(entity="model", entity_id="tiny@1").count() == 1
    finally:
        engine.dispose()
    assert main(["models", "distribution", "--data-dir", str(data)]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in listing] == ["st01", "st02", "st03"]
    assert "assigned tiny 1" in listing[0] and "PENDING" in listing[0] and "assigned -" in listing[2]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--stations", "st01,st07"], "unknown station(s) st07"),
        (["--line", "L9"], "line 'L9': no station of that line has registered"),
        ([], "name the stations (--stations a,b) or a line (--line L)"),
    ],
)
def test_refusals_name_what_is_wrong(
    tiny_bundle: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    data = tmp_path / "qe"
    rng = np.random.default_rng(1)
    _setup(
        data,
        state_operating_point(tiny_bundle, rng.normal(0.2, 0.02, 150), rng.normal(0.9, 0.02, 30)),
        monkeypatch,
        signer=False,
    )
    capsys.readouterr()
    assert main(["models", "distribute", "--name", "tiny", "--version", "1", "--data-dir", str(data), *args]) == 2
    assert message in capsys.readouterr().err
