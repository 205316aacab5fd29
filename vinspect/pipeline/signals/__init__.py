"""Line outputs behind one :class:`Signaller` protocol.

``modbus``, ``mqtt`` and ``camera_output`` each import their library lazily; import them by
module path (``vinspect.pipeline.signals.modbus``) only where they are configured.
"""

from vinspect.pipeline.signals.base import (
    AlarmSignaller,
    LockedSignaller,
    LogSignaller,
    NullSignaller,
    RecordingSignaller,
    Signalled,
    Signaller,
    verdict_code,
)

__all__ = [
    "AlarmSignaller",
    "LockedSignaller",
    "LogSignaller",
    "NullSignaller",
    "RecordingSignaller",
    "Signalled",
    "Signaller",
    "verdict_code",
]
