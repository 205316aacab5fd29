"""Source configuration parsing and its error messages (issue #3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vinspect.camera.base import OverflowPolicy
from vinspect.camera.config import (
    FolderSourceConfig,
    GenICamSourceConfig,
    OverlaySourceConfig,
    ReplaySourceConfig,
    load_source_config,
    parse_source_config,
)
from vinspect.camera.features import plan_features
from vinspect.errors import ConfigError


def _station(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "station.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_load_source_config_reads_the_station_example_genicam_source(tmp_path: Path) -> None:
    path = _station(
        tmp_path,
        """
station_id: tile-line-1
source:
  kind: genicam
  producer: viky.cti
  device: {serial_number: "0"}
  features: {Width: 640, Height: 480, PixelFormat: Mono8, AcquisitionFrameRate: 30.0}
  optional_features: {ExposureTime: 800.0}
  fetch_timeout_ms: 200
  overflow: reject
""",
    )
    config = load_source_config(path)
    assert isinstance(config, GenICamSourceConfig)
    assert config.producers == [Path("viky.cti")]  # a bare name stays a name
    assert config.device.serial_number == "0"
    assert config.features == {"Width": 640, "Height": 480, "PixelFormat": "Mono8", "AcquisitionFrameRate": 30.0}
    assert isinstance(config.features["Width"], int) and isinstance(config.features["AcquisitionFrameRate"], float)
    assert config.overflow is OverflowPolicy.REJECT


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ({"kind": "folder", "path": "data"}, FolderSourceConfig),
        ({"kind": "replay", "path": "data", "speed": 2.0}, ReplaySourceConfig),
        ({"kind": "genicam+replay", "replay": "data"}, OverlaySourceConfig),
        ({"kind": "genicam"}, GenICamSourceConfig),
    ],
)
def test_parse_source_config_dispatches_on_kind(source: dict[str, object], kind: type) -> None:
    assert isinstance(parse_source_config(source), kind)


def test_folder_defaults_block_and_replay_is_lossless() -> None:
    folder = parse_source_config({"kind": "folder", "path": "x"})
    assert isinstance(folder, FolderSourceConfig)
    assert (folder.fps, folder.loop, folder.overflow) == (None, False, OverflowPolicy.BLOCK)


def test_load_source_config_resolves_relative_paths_against_the_station_file(tmp_path: Path) -> None:
    path = _station(tmp_path, "source: {kind: folder, path: data/parts, part_ids_csv: ids.csv}\n")
    config = load_source_config(path)
    assert isinstance(config, FolderSourceConfig)
    assert config.path == tmp_path / "data" / "parts"
    assert config.part_ids_csv == tmp_path / "ids.csv"


@pytest.mark.parametrize(
    ("source", "field", "reason"),
    [
        ("{kind: folder, path: x, fps: -1}", "source.fps", "greater than 0"),
        ("{kind: folder, path: x, colour: red}", "source.colour", "Extra inputs"),
        ("{kind: webcam}", "source", "does not match any of the expected tags"),
        ("{kind: genicam, device: {serial_number: '0', index: 1}}", "source.device", "exactly one"),
        ("{kind: genicam, features: {Width: [1]}}", "source.features.Width", "expected one of bool/int/float/str"),
        ("{kind: genicam, features: {Gain: 1}, optional_features: {Gain: 2}}", "source", "both required"),
        ("{kind: replay, path: x, fps: 5, speed: 2}", "source", "fps or speed"),
        (
            "{kind: genicam, reconnect: {initial_backoff_ms: 500, max_backoff_ms: 100}}",
            "source.reconnect",
            "max_backoff_ms",
        ),
    ],
)
def test_load_source_config_errors_name_file_field_and_reason(
    tmp_path: Path, source: str, field: str, reason: str
) -> None:
    path = _station(tmp_path, f"source: {source}\n")
    with pytest.raises(ConfigError) as info:
        load_source_config(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert field in message
    assert reason in message


@pytest.mark.parametrize(
    ("text", "reason"),
    [("station_id: x\n", "source: missing"), ("source: [unclosed\n", "not valid YAML")],
)
def test_load_source_config_rejects_files_without_a_source(tmp_path: Path, text: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        load_source_config(_station(tmp_path, text))


def test_load_source_config_missing_file_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read station file"):
        load_source_config(tmp_path / "nope.yaml")


def test_plan_features_orders_sfnc_features_and_expands_output_lines() -> None:
    config = GenICamSourceConfig.model_validate(
        {
            "features": {
                "OffsetX": 8,
                "Custom": 1,
                "Width": 640,
                "TriggerSource": "Line0",
                "TriggerSelector": "FrameStart",
                "PixelFormat": "Mono8",
            },
            "optional_features": {"ExposureTime": 800.0},
            "output_lines": [{"line": "Line1", "source": "UserOutput1", "required": False}],
        }
    )
    writes = plan_features(config)
    assert [w.name for w in writes] == [
        "PixelFormat",
        "Width",
        "OffsetX",
        "ExposureTime",
        "TriggerSelector",
        "TriggerSource",
        "Custom",
        "LineSelector",
        "LineMode",
        "LineSource",
    ]
    assert [w.required for w in writes][-3:] == [False, False, False]
    assert writes[3].group == "optional_features"
