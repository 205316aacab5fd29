"""ProcessSourceConfig: any other source kind hosted in a supervised child process.

``inner`` is any :data:`~vinspect.camera.config.SourceConfig` (a process does not host another
process). The parent's outer watchdog answers a read with a ``timeout`` fault when the child has
not delivered a frame or a fault within ``watchdog_s``; after ``restart_after_s`` of silence, when
the child dies, or when its source has reported only ``disconnected`` for ``disconnected_restart_s``
(in-process recovery failing, line-integration.md pitfall 13), the child is killed and respawned
after a capped backoff (see :mod:`vinspect.camera.process`).

Kept out of ``config.SourceConfig`` on purpose: this module needs that union for ``inner``, so
the union cannot also import it (a cycle); it joins the station's source union instead, as
``SyntheticSourceConfig`` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, model_validator

from vinspect.camera.base import OverflowPolicy
from vinspect.camera.config import SourceConfig, _resolve_paths

__all__ = ["ProcessSourceConfig", "RestartBackoff"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RestartBackoff(_Strict):
    """Delay before respawning the child: ``initial_s``, times ``multiplier`` for every respawn
    that does not complete a read, capped at ``max_s``; back to ``initial_s`` after one that does."""

    initial_s: PositiveFloat = 0.1
    max_s: PositiveFloat = 5.0
    multiplier: Annotated[float, Field(ge=1.0)] = 2.0

    @model_validator(mode="after")
    def _cap_above_start(self) -> Self:
        if self.max_s < self.initial_s:
            raise ValueError("max_s must be >= initial_s")
        return self


class ProcessSourceConfig(_Strict):
    """Run ``inner`` in a child process behind an outer watchdog.

    ``watchdog_s``: longest a read waits for the child (a read also never outlasts its own
    ``timeout_s``). ``restart_after_s``: silence of a child with a read outstanding that gets it
    killed and respawned; must exceed ``watchdog_s``. ``start_timeout_s``: bound on spawn,
    imports and opening the inner source. ``stop_timeout_s``: bound on a clean stop at close
    before the child is killed. ``disconnected_restart_s``: None keeps a child whose source
    reports only ``disconnected`` faults. ``shm_slot_mb``: size of the shared-memory slot frames
    are handed over through (the default holds a 12 MP 16-bit frame); a larger frame, or 0,
    goes through the pipe instead.
    """

    kind: Literal["process"] = "process"
    inner: SourceConfig
    watchdog_s: Annotated[float, Field(gt=0.0, le=10.0)] = 1.0
    restart_after_s: Annotated[float, Field(gt=0.0, le=60.0)] = 2.0
    start_timeout_s: Annotated[float, Field(gt=0.0, le=300.0)] = 30.0
    stop_timeout_s: Annotated[float, Field(gt=0.0, le=60.0)] = 3.0
    disconnected_restart_s: Annotated[float, Field(gt=0.0, le=600.0)] | None = 5.0
    backoff: RestartBackoff = Field(default_factory=RestartBackoff)
    shm_slot_mb: Annotated[int, Field(ge=0, le=1024)] = 32

    @model_validator(mode="after")
    def _restart_after_watchdog(self) -> Self:
        if self.restart_after_s <= self.watchdog_s:
            raise ValueError("restart_after_s must be greater than watchdog_s")
        return self

    @property
    def overflow(self) -> OverflowPolicy:
        """The hosted source's queue policy."""
        return self.inner.overflow

    def with_paths_resolved(self, *, base: Path) -> ProcessSourceConfig:
        """This config with ``inner``'s relative paths resolved against ``base`` (the station
        file's folder), as ``load_source_config`` does for a top-level source."""
        return self.model_copy(update={"inner": _resolve_paths(self.inner, base=base)})
