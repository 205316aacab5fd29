"""`signal.kind: camera_output` is refused at start-up with what the camera must have (issue 15):
no bundled frame source exposes SFNC digital outputs (viky.cti has no DigitalIOControl nodes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vinspect.cli import main


def test_run_refuses_camera_output_and_names_the_missing_camera_feature(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    station = tmp_path / "station.yaml"
    station.write_text(
        f"station_id: k\nmodel: {{path: {tiny_bundle}}}\nsinks: []\n"
        "signal: {kind: camera_output, accept_output: UserOutput1}\n"
        "source: {kind: synthetic, fps: 30, size_px: 32}\n",
        encoding="utf-8",
    )
    code = main(["run", "--station", str(station), "--data-dir", str(tmp_path / "d"), "--max-parts", "1"])
    err = capsys.readouterr().err
    assert code == 2
    assert "signal.kind camera_output: source 'synthetic' exposes no camera outputs" in err
    assert "UserOutputSelector/UserOutputValue" in err
    assert "no frame source vinspect ships" in err
