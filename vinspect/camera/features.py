"""Writing a camera configuration to a GenICam node map, in SFNC order.

Library-free (no harvesters/genicam import): :func:`plan_features` turns a
:class:`~vinspect.camera.config.GenICamSettings` into an ordered list of writes and
:func:`apply_features` performs them through a node lookup and the library's exception types,
both handed in by ``genicam.py``. A required feature the camera lacks fails the start-up with
:class:`~vinspect.errors.FeatureMissing` before anything is written; an optional one is logged
and skipped (with the rest of its output-line group, so no write lands on the wrong line).

Order matters on real cameras: the pixel format and the image size
before the offsets that depend on them, a selector before the features it selects, the
frame-rate enable before the rate, the trigger selector before the trigger mode and source.
Features not in :data:`SFNC_ORDER` keep their configuration order, after the known ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from vinspect.camera.config import FeatureValue, GenICamSettings
from vinspect.camera.pixels import SUPPORTED_FORMATS
from vinspect.errors import ConfigError, FeatureMissing

__all__ = ["SFNC_ORDER", "FeatureWrite", "NodeLookup", "apply_features", "check_device", "plan_features"]

logger = logging.getLogger(__name__)

NodeLookup = Callable[[str], Any]
"""Returns the node object (with ``.value``) for a feature name, or None when not implemented."""

SFNC_ORDER: tuple[str, ...] = (
    "PixelFormat",
    "BinningHorizontal",
    "BinningVertical",
    "Width",
    "Height",
    "OffsetX",
    "OffsetY",
    "AcquisitionMode",
    "ExposureMode",
    "ExposureAuto",
    "ExposureTime",
    "GainAuto",
    "Gain",
    "AcquisitionFrameRateEnable",
    "AcquisitionFrameRate",
    "TriggerSelector",
    "TriggerMode",
    "TriggerSource",
    "TriggerActivation",
    "TriggerDelay",
)
"""SFNC features in the order they are written."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureWrite:
    """One node write; ``group`` names the config entry it came from, for messages."""

    name: str
    value: FeatureValue
    required: bool
    group: str

    @property
    def chain(self) -> str:
        """Writes with the same chain are skipped together: an output line's selector and settings."""
        return self.group if self.group.startswith("output_lines") else f"{self.group}.{self.name}"


def plan_features(settings: GenICamSettings) -> list[FeatureWrite]:
    """Every write the configuration asks for, in the order to perform them."""
    merged: list[FeatureWrite] = [
        FeatureWrite(name=name, value=value, required=True, group="features")
        for name, value in settings.features.items()
    ] + [
        FeatureWrite(name=name, value=value, required=False, group="optional_features")
        for name, value in settings.optional_features.items()
    ]
    rank = {name: i for i, name in enumerate(SFNC_ORDER)}
    ordered = sorted(enumerate(merged), key=lambda item: (rank.get(item[1].name, len(rank)), item[0]))
    writes = [write for _, write in ordered]
    for i, line in enumerate(settings.output_lines):
        group = f"output_lines[{i}]"
        writes.append(FeatureWrite(name="LineSelector", value=line.line, required=line.required, group=group))
        writes.append(FeatureWrite(name="LineMode", value=line.mode, required=line.required, group=group))
        if line.source is not None:
            writes.append(FeatureWrite(name="LineSource", value=line.source, required=line.required, group=group))
        if line.inverter is not None:
            writes.append(FeatureWrite(name="LineInverter", value=line.inverter, required=line.required, group=group))
    return writes


def apply_features(
    lookup: NodeLookup, writes: Sequence[FeatureWrite], *, device: str, refused: tuple[type[BaseException], ...]
) -> None:
    """Write ``writes`` in order through ``lookup``.

    Args:
        lookup: Node by feature name (None when the device lacks it).
        writes: From :func:`plan_features`.
        device: Device name for messages.
        refused: The node library's exception types for a refused write.

    Raises:
        FeatureMissing: a required feature is absent (every absent one is named).
        ConfigError: the device refused a required value.
    """
    missing = [f"{w.group}.{w.name}" for w in writes if w.required and lookup(w.name) is None]
    if missing:
        raise FeatureMissing(
            f"camera {device} lacks required feature(s) {', '.join(dict.fromkeys(missing))}; "
            "remove them from `features`, or move them to `optional_features`"
        )
    skipped: set[str] = set()
    for w in writes:
        node = None if w.chain in skipped else lookup(w.name)
        if node is None:
            if w.chain not in skipped:
                logger.warning("camera %s lacks optional feature %s; skipped", device, w.name)
            skipped.add(w.chain)
            continue
        try:
            node.value = w.value
            actual = node.value
        except refused as exc:
            if w.required:
                raise ConfigError(f"camera {device}: {w.group}.{w.name}={w.value!r} refused: {exc}") from exc
            logger.warning("camera %s refused optional %s=%r: %s", device, w.name, w.value, exc)
            skipped.add(w.chain)
            continue
        if actual != w.value and not (isinstance(actual, float) and abs(actual - float(w.value)) < 1e-6):
            logger.warning("camera %s set %s to %r (asked for %r)", device, w.name, actual, w.value)


def check_device(lookup: NodeLookup, *, device: str) -> None:
    """Start-up checks after configuration: a convertible pixel format, a sane heartbeat.

    Raises:
        ConfigError: the camera's PixelFormat is one vinspect cannot convert.
    """
    pixel_format = lookup("PixelFormat")
    if pixel_format is not None and pixel_format.value not in SUPPORTED_FORMATS:
        raise ConfigError(
            f"camera {device}: PixelFormat {pixel_format.value} is not supported; "
            f"choose one of {', '.join(sorted(SUPPORTED_FORMATS))}"
        )
    for name in ("GevHeartbeatTimeout", "DeviceLinkHeartbeatTimeout"):
        node = lookup(name)
        if node is not None and node.value > 10_000:
            logger.warning("camera %s: %s is %s ms; an unplug goes unnoticed that long", device, name, node.value)
