"""Station-file settings of the record queue (``record_queue_mb``, ``record_stall_s``) and the
configuration hash an approval binds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vinspect.cli import main
from vinspect.errors import ConfigError
from vinspect.pipeline.runner import PipelineConfig
from vinspect.station_file import load_station

MINIMAL = (
    "station_id: cam-1\n"
    "source: {kind: synthetic, fps: 30, defect_rate: 0.2, size_px: 64, overflow: reject}\n"
    "model: {name: tile, version: active}\n"
)
# config_sha256 of MINIMAL on 7f1c7f0, before the record settings were station-file settings: a
# configuration approved then must keep its hash (and so its approval) while it leaves them alone.
MINIMAL_SHA256_BEFORE = "dd13c7e6719b1e8b1e77b7c613ce560ec63bb1d44ef33b79ab11eef33380e285"


def _station(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "station.yaml"
    path.write_text(MINIMAL + extra, encoding="utf-8")
    return path


def test_record_settings_reach_the_runner(tmp_path: Path) -> None:
    config = load_station(_station(tmp_path, "record_queue_mb: 64\nrecord_stall_s: 2.5\n")).pipeline_config()
    assert config.record_queue_mb == 64.0
    assert config.record_stall_s == 2.5


def test_record_settings_default_to_the_runners_defaults(tmp_path: Path) -> None:
    config = load_station(_station(tmp_path)).pipeline_config()
    runner = PipelineConfig(station_id="cam-1")
    assert config.record_queue_mb == runner.record_queue_mb
    assert config.record_stall_s == runner.record_stall_s


def test_an_approved_configuration_keeps_its_hash_while_the_new_settings_are_left_alone(tmp_path: Path) -> None:
    assert load_station(_station(tmp_path)).config_sha256() == MINIMAL_SHA256_BEFORE
    written_out = load_station(_station(tmp_path, "record_queue_mb: 512\nrecord_stall_s: 30\n"))
    assert written_out.config_sha256() == MINIMAL_SHA256_BEFORE  # the defaults, spelled out: same configuration


@pytest.mark.parametrize("extra", ["record_queue_mb: 64\n", "record_stall_s: 5\n"])
def test_a_changed_record_setting_is_a_new_configuration(tmp_path: Path, extra: str) -> None:
    station = load_station(_station(tmp_path, extra))
    assert station.config_sha256() != MINIMAL_SHA256_BEFORE
    assert extra.split(":")[0] in station.config_text()


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ("record_queue_mb: 0\n", "record_queue_mb: Input should be greater than 0"),
        ("record_queue_mb: -8\n", "record_queue_mb: Input should be greater than 0"),
        ("record_queue_mb: lots\n", "record_queue_mb: Input should be a valid number"),
        ("record_queue_mb: .inf\n", "record_queue_mb: Input should be a finite number"),
        ("record_stall_s: 0\n", "record_stall_s: Input should be greater than 0"),
        ("record_stall_s: .nan\n", "record_stall_s: Input should be a finite number"),
        ("record_stall_s: [30]\n", "record_stall_s: Input should be a valid number"),
    ],
)
def test_a_bad_record_setting_names_the_file_and_the_field(tmp_path: Path, extra: str, problem: str) -> None:
    path = _station(tmp_path, extra)
    with pytest.raises(ConfigError) as caught:
        load_station(path)
    assert str(caught.value).startswith(f"{path}: {problem}")


@pytest.mark.parametrize(
    ("extra", "field"),
    [("deadline_ms: .inf\n", "deadline_ms"), ("policy: {fail_at: .nan}\n", "policy.fail_at")],
)
def test_an_infinite_setting_is_refused_by_name_not_a_traceback(tmp_path: Path, extra: str, field: str) -> None:
    """Before, these loaded and then broke hashing the configuration (ValueError at run/approve)."""
    path = _station(tmp_path, extra)
    refusal = rf"^{re.escape(str(path))}: {field}: must be a finite number, not \.inf or \.nan$"
    with pytest.raises(ConfigError, match=refusal):
        load_station(path)


def test_the_cli_refuses_a_bad_record_setting_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _station(tmp_path, "record_stall_s: -1\n")
    code = main(["config", "show", "--station", str(path), "--data-dir", str(tmp_path / "data")])
    err = capsys.readouterr().err
    assert code == 2
    assert err == f"vinspect config: error: {path}: record_stall_s: Input should be greater than 0\n"
    assert not (tmp_path / "data").exists(), "nothing is created for a refused file"
