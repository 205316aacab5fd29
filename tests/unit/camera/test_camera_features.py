"""Applying a camera configuration to a node map: order, missing and refused features (issue #3)."""

from __future__ import annotations

import logging

import pytest

from vinspect.camera.config import GenICamSourceConfig
from vinspect.camera.features import apply_features, check_device, plan_features
from vinspect.errors import ConfigError, FeatureMissing


class Refused(Exception):
    """Stands in for genicam.genapi.GenericException."""


class FakeNode:
    def __init__(self, name: str, log: list[str], *, value: object = 0, allowed: set[object] | None = None) -> None:
        self._name, self._log, self._value, self._allowed = name, log, value, allowed

    @property
    def value(self) -> object:
        return self._value

    @value.setter
    def value(self, new: object) -> None:
        if self._allowed is not None and new not in self._allowed:
            raise Refused(f"{self._name}: {new!r} not allowed")
        self._log.append(f"{self._name}={new}")
        self._value = new


def _camera(names: dict[str, set[object] | None]) -> tuple[dict[str, FakeNode], list[str]]:
    log: list[str] = []
    return {n: FakeNode(n, log, allowed=allowed) for n, allowed in names.items()}, log


def _apply(config: GenICamSourceConfig, nodes: dict[str, FakeNode]) -> None:
    apply_features(nodes.get, plan_features(config), device="fake", refused=(Refused,))


def test_apply_features_writes_in_sfnc_order() -> None:
    nodes, log = _camera({"Width": None, "Height": None, "PixelFormat": None, "AcquisitionFrameRate": None})
    config = GenICamSourceConfig(
        features={"AcquisitionFrameRate": 30.0, "Width": 640, "Height": 480, "PixelFormat": "Mono8"}
    )
    _apply(config, nodes)
    assert log == ["PixelFormat=Mono8", "Width=640", "Height=480", "AcquisitionFrameRate=30.0"]


def test_apply_features_missing_required_feature_fails_before_any_write() -> None:
    nodes, log = _camera({"Width": None})
    config = GenICamSourceConfig(features={"Width": 640, "TriggerMode": "On", "TriggerSource": "Line0"})
    with pytest.raises(FeatureMissing) as info:
        _apply(config, nodes)
    message = str(info.value)
    assert "features.TriggerMode" in message and "features.TriggerSource" in message
    assert "optional_features" in message  # tells the engineer how to fix it
    assert log == []


def test_apply_features_skips_missing_optional_feature_with_warning(caplog: pytest.LogCaptureFixture) -> None:
    nodes, log = _camera({"Width": None, "Gain": None})
    config = GenICamSourceConfig(features={"Width": 640}, optional_features={"ExposureTime": 800.0, "Gain": 2.0})
    with caplog.at_level(logging.WARNING):
        _apply(config, nodes)
    assert log == ["Width=640", "Gain=2.0"]  # one missing optional feature does not skip the others
    assert "lacks optional feature ExposureTime" in caplog.text


def test_apply_features_refused_required_value_is_config_error() -> None:
    nodes, _ = _camera({"PixelFormat": {"Mono8", "RGBa8"}})
    with pytest.raises(ConfigError, match=r"features.PixelFormat='BayerRG8' refused"):
        _apply(GenICamSourceConfig(features={"PixelFormat": "BayerRG8"}), nodes)


def test_apply_features_optional_output_line_is_skipped_as_a_group() -> None:
    """A LineSelector the camera refuses must not let LineSource land on another line."""
    nodes, log = _camera({"LineSelector": {"Line0"}, "LineMode": None, "LineSource": None})
    config = GenICamSourceConfig.model_validate(
        {
            "output_lines": [
                {"line": "Line2", "source": "UserOutput1", "required": False},
                {"line": "Line0", "source": "ExposureActive"},
            ]
        }
    )
    _apply(config, nodes)
    assert log == ["LineSelector=Line0", "LineMode=Output", "LineSource=ExposureActive"]


def test_check_device_rejects_unconvertible_pixel_format() -> None:
    nodes, _ = _camera({"PixelFormat": None})
    nodes["PixelFormat"].value = "YUV422_8"
    with pytest.raises(ConfigError, match="YUV422_8 is not supported"):
        check_device(nodes.get, device="fake")
