"""Where the web app reads the station's status from.

The runtime's ``status.json`` has one schema, with its writer and its reader, in
:mod:`vinspect.pipeline.status` (:class:`~vinspect.pipeline.status.StatusReader` is the real
source); :class:`FixedStatus` is the fake for tests and screenshots.
"""

from __future__ import annotations

from typing import Any, Protocol

from vinspect.pipeline.status import StationSnapshot

__all__ = ["FixedStatus", "StationSnapshot", "StatusSource"]


class StatusSource(Protocol):
    """Where the API reads the station's status from."""

    def read(self) -> StationSnapshot: ...


class FixedStatus:
    """A fake status source for tests and screenshots."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def read(self) -> StationSnapshot:
        state = self.data.get("state")
        return StationSnapshot(
            running=True,
            state=state if isinstance(state, str) else "UNKNOWN",
            stale=False,
            age_s=0.0,
            data=dict(self.data),
        )
