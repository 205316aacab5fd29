"""Device listing for ``vinspect cameras``: what each device is and which key features it has.

``genicam.describe_devices`` opens each device briefly and fills a :class:`DeviceDescription`
through :func:`key_features`; :func:`format_table` renders the list for a terminal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from vinspect.camera.features import NodeLookup

__all__ = ["KEY_FEATURES", "DeviceDescription", "format_table", "key_features"]

KEY_FEATURES = ("TriggerMode", "TriggerSource", "ExposureTime", "Gain", "OffsetX", "LineSelector", "UserOutputSelector")
"""Features whose presence decides how a camera can be used on a line."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceDescription:
    """One device as ``vinspect cameras`` lists it."""

    index: int
    device_id: str
    vendor: str
    model: str
    serial_number: str
    user_defined_name: str
    status: str
    features: dict[str, str] = field(default_factory=dict)


def key_features(lookup: NodeLookup) -> dict[str, str]:
    """Size, pixel formats, frame rate and the presence of :data:`KEY_FEATURES`, as text."""
    out: dict[str, str] = {}
    for name in ("Width", "Height"):
        node = lookup(name)
        if node is not None:
            out[name] = f"{node.value} (max {node.max})"
    node = lookup("PixelFormat")
    if node is not None:
        out["PixelFormat"] = f"{node.value} of {'/'.join(node.symbolics)}"
    node = lookup("AcquisitionFrameRate")
    if node is not None:
        out["AcquisitionFrameRate"] = f"{node.value:g} Hz (max {node.max:g})"
    out["has"] = " ".join(name for name in KEY_FEATURES if lookup(name) is not None) or "-"
    out["lacks"] = " ".join(name for name in KEY_FEATURES if lookup(name) is None) or "-"
    return out


def format_table(devices: Sequence[DeviceDescription]) -> str:
    """A plain-text table: one line per device, then its key features indented below it."""
    if not devices:
        return "no devices found\n"
    header = ("#", "device", "vendor", "model", "serial", "user name", "status")
    rows = [
        (str(d.index), d.device_id, d.vendor, d.model, d.serial_number, d.user_defined_name or "-", d.status)
        for d in devices
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(header, widths, strict=True)).rstrip()]
    for device, row in zip(devices, rows, strict=True):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        lines.extend(f"    {name}: {value}" for name, value in device.features.items())
    return "\n".join(lines) + "\n"
