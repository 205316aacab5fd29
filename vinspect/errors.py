"""The one exception tree of vinspect.

Every error the package raises on purpose derives from :class:`VinspectError`; foreign
exceptions are translated at the boundary that meets them, to the most specific class below,
chained with ``raise ... from exc``::

    VinspectError
    ├── ConfigError            settings, station YAML, CLI arguments
    ├── DatasetError           dataset layout or content problems
    │   └── ImageDecodeError   a file that is not a decodable, supported image
    ├── CameraError            acquisition
    │   ├── CameraTimeout      a fetch ran past its timeout
    │   ├── CameraDisconnected the device went away (unplug, invalid handle)
    │   └── FeatureMissing     a required GenICam feature the device lacks
    ├── ModelError             bundle missing, tampered, incompatible or failing at run time
    │   ├── ModelIntegrityError sha256 mismatch, pickle, edited manifest
    │   └── FrameRejected      a frame the model refuses to judge (wrong size, blank, unregistrable);
    │                          its ``reason`` becomes the FAIL reason (``alignment``, ``frame_size``, ...)
    ├── SignalError            line output failures
    │   └── PlcUnreachable     the PLC/broker cannot be reached
    ├── StoreError             the NCR/inspection store cannot read or write
    └── StateError             a lifecycle transition that is not allowed

Messages name the thing (file, field, device) and the problem, so an operator can act on them.
"""

from __future__ import annotations

__all__ = [
    "CameraDisconnected",
    "CameraError",
    "CameraTimeout",
    "ConfigError",
    "DatasetError",
    "FeatureMissing",
    "FrameRejected",
    "ImageDecodeError",
    "ModelError",
    "ModelIntegrityError",
    "PlcUnreachable",
    "SignalError",
    "StateError",
    "StoreError",
    "VinspectError",
]


class VinspectError(Exception):
    """Base of every error vinspect raises on purpose."""


class ConfigError(VinspectError):
    """Invalid settings, station file or command-line arguments."""


class DatasetError(VinspectError):
    """A dataset folder that cannot be read as any supported layout, or bad content in it."""


class ImageDecodeError(DatasetError):
    """A file that is not a decodable image of a supported kind and size."""


class CameraError(VinspectError):
    """Acquisition failed."""


class CameraTimeout(CameraError):
    """No buffer arrived within the fetch timeout."""


class CameraDisconnected(CameraError):
    """The device is gone: unplugged, powered off, or its handle became invalid."""


class FeatureMissing(CameraError):
    """The station configuration requires a GenICam feature the device does not have."""


class ModelError(VinspectError):
    """A model bundle is missing, incompatible, or failed at run time."""


class ModelIntegrityError(ModelError):
    """A bundle whose bytes do not match its manifest, or that is not plain ONNX."""


class FrameRejected(ModelError):
    """A frame the model cannot judge; ``reason`` is the short FAIL reason recorded with the part.

    Args:
        reason: machine-readable reason (``alignment``, ``frame_size``, ``blank_frame``,
            ``saturated_frame``).
        detail: what was measured and which limit it broke.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class SignalError(VinspectError):
    """A line output (PLC, broker, camera output) failed."""


class PlcUnreachable(SignalError):
    """The PLC or broker cannot be reached."""


class StoreError(VinspectError):
    """The store cannot read or write."""


class StateError(VinspectError):
    """A lifecycle transition that is not allowed from the current state."""
