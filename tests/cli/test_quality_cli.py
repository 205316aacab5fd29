"""``vinspect spc baseline|check`` and ``vinspect report`` on a real store (issue 17)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from vinspect.cli import main
from vinspect.store import repository as repo
from vinspect.store.db import make_engine, session_scope
from vinspect.store.migrations import upgrade
from vinspect.store.ncr import NcrDefaults
from vinspect.types import Decision, Frame, Inspection, ModelRef, Prediction, StageTimings, Verdict

MODEL = ModelRef(name="disc", version="7", sha256="cd" * 32)
DEFAULTS = NcrDefaults(
    part_number="DISC-42",
    part_revision="A",
    part_name="disc",
    requirement_ref="DWG-1",
    site_id="plant",
    line_id="line-1",
)


def _part(seq: int, fail: bool, at: datetime) -> Inspection:
    image = np.zeros((16, 16), dtype=np.uint8)
    frame = Frame(
        image=image,
        source_id="cam",
        frame_id=seq,
        captured_at=at - timedelta(milliseconds=12),
        pixel_format="Mono8",
        origin="synthetic",
        part_id=f"SN{seq}",
    )
    prediction = Prediction(score=0.9 if fail else 0.2, defect_code="spot" if fail else None)
    decision = Decision(
        verdict=Verdict.FAIL if fail else Verdict.PASS,
        reasons=("score",) if fail else (),
        policy_id="p",
        fail_at=0.7,
        review_at=0.5,
    )
    return Inspection(
        inspection_id=f"disc-{seq:07d}",
        station_id="disc-1",
        part_seq=seq,
        frame=frame,
        prediction=prediction,
        decision=decision,
        timings=StageTimings(),
        model=MODEL,
    )


def _fill(data_dir: Path, start: datetime, rejects: list[int], size: int = 60) -> None:
    engine = make_engine(f"sqlite:///{data_dir / 'vinspect.db'}")
    upgrade(engine)
    seq = 0
    with session_scope(engine) as session:
        for h, d in enumerate(rejects):
            at = start + timedelta(hours=h, minutes=20)
            passes = []
            for i in range(size):
                seq += 1
                if i < d:
                    repo.open_ncr(_part(seq, True, at), session=session, defaults=DEFAULTS, now=at)
                else:
                    passes.append(_part(seq, False, at))
            repo.add_inspections(passes, session=session, now=at)
    engine.dispose()


def test_baseline_check_and_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = now - timedelta(hours=26)
    _fill(data, start, [1, 2, 1, 1, 2, 1, 1, 2, 1, 1, 2, 1, 1, 1, 2, 1, 1, 2, 1, 1, 1, 12, 1, 1, 1, 1])
    day = f"{start:%Y-%m-%dT%H:%M:%SZ}"
    assert (
        main(
            [
                "spc",
                "baseline",
                "--data-dir",
                str(data),
                "--station",
                "disc-1",
                "--since",
                day,
                "--until",
                f"{start + timedelta(hours=20):%Y-%m-%dT%H:%M:%SZ}",
                "--reason",
                "setup approved",
            ]
        )
        == 0
    )
    assert "frozen from 20 hourly subgroups (26 model rejects of 1200 parts)" in capsys.readouterr().out
    assert main(["spc", "check", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert "reject_rate rule 1 on disc-1" in out and "1 new alarm(s)" in out
    assert main(["spc", "check", "--data-dir", str(data)]) == 0
    assert "0 new alarm(s)" in capsys.readouterr().out
    report = tmp_path / "report"
    until = f"{now + timedelta(hours=1):%Y-%m-%dT%H:%M:%SZ}"
    assert main(["report", "--data-dir", str(data), "--since", day, "--until", until, "--out", str(report)]) == 0
    index = (report / "index.html").read_text(encoding="utf-8")
    assert "1560 parts inspected" in index and "Nelson 1" in index and "disc-1" in index
    pngs = sorted(p.name for p in report.glob("*.png"))
    assert pngs == ["pareto-codes.png", "pareto-stations.png", "pchart-1.png"]
    assert all((report / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert json.dumps(index).count("src=") >= 3


def test_baseline_refuses_too_few_subgroups_with_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    start = datetime(2026, 3, 1, 6, tzinfo=UTC)
    _fill(data, start, [1, 2, 1])
    code = main(
        [
            "spc",
            "baseline",
            "--data-dir",
            str(data),
            "--station",
            "disc-1",
            "--since",
            "2026-03-01",
            "--until",
            "2026-03-02",
            "--reason",
            "r",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "station disc-1: baseline: 3 subgroups, at least 20 needed" in err
    assert (
        main(
            [
                "report",
                "--data-dir",
                str(data),
                "--since",
                "2026-03-02",
                "--until",
                "2026-03-01",
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 2
    )
    assert "is not after since" in capsys.readouterr().err


def test_laney_baseline_is_frozen_with_its_sigma_z_and_drawn(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--laney` stores sigma_z with the frozen limits (audited); the chart and its rules use the wider limits."""
    from vinspect.quality.dashboard import station_chart
    from vinspect.store.analytics_queries import Window
    from vinspect.store.tables import AuditRecord

    data = tmp_path / "data"
    data.mkdir()
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = now - timedelta(hours=26)
    _fill(data, start, [1, 6, 0, 5, 1, 7, 0, 6, 2, 5, 1, 6, 0, 7, 1, 5, 2, 6, 0, 5, 1, 12, 1, 1, 1, 1])
    assert (
        main(
            [
                "spc",
                "baseline",
                "--data-dir",
                str(data),
                "--station",
                "disc-1",
                "--laney",
                "--since",
                f"{start:%Y-%m-%dT%H:%M:%SZ}",
                "--until",
                f"{start + timedelta(hours=20):%Y-%m-%dT%H:%M:%SZ}",
                "--reason",
                "setup approved",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "Laney sigma_z" in out
    engine = make_engine(f"sqlite:///{data / 'vinspect.db'}")
    with session_scope(engine, readonly=True) as session:
        pc = station_chart(session, Window(start, now + timedelta(hours=1)), "disc-1")
        logged = session.query(AuditRecord).filter(AuditRecord.action == "spc.baseline").one()
    engine.dispose()
    assert pc.baseline is not None and pc.baseline.sigma_z is not None and pc.baseline.sigma_z > 1.0
    assert json.loads(logged.new_value)["sigma_z"] == pc.baseline.sigma_z
    assert f"{pc.baseline.sigma_z:.4f}" in out
    # the classic p-chart limit for n = 60 at this p-bar, widened by sigma_z
    classic = pc.baseline.p_bar + 3 * (pc.baseline.p_bar * (1 - pc.baseline.p_bar) / 60) ** 0.5
    assert pc.points[0].ucl == pytest.approx(pc.baseline.p_bar + (classic - pc.baseline.p_bar) * pc.baseline.sigma_z)
