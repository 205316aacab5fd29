"""CameraOutputSignaller: the camera's digital output (GenICam ``UserOutput``) as the line signal.

The accept output goes high for a PASS only and drops again after ``pulse_ms`` (checked on every
heartbeat and before each new part), so a stalled station cannot leave an accept asserted for
long; every other disposition drives it low. An optional heartbeat output toggles on every
heartbeat. Host-side timing carries the host and control-channel jitter (line-integration §6):
suited to slow lines; fast lines use the PLC handshake.

The camera is reached through the small :class:`LineOutputs` protocol. :class:`NodeMapOutputs`
adapts any GenICam node map with SFNC ``UserOutputSelector``/``UserOutputValue``; tests use
:class:`FakeLineOutputs`.

Not usable yet: a station gets the outputs from a frame source with ``line_outputs()``
(:class:`HasLineOutputs`), and no source vinspect ships has one, so ``vinspect run`` refuses
``signal.kind: camera_output`` at start-up. genicam's simulator ``viky.cti`` (what the GenICam
tests run against) has no DigitalIOControl nodes at all (no LineSelector, LineMode, LineSource,
UserOutputSelector or UserOutputValue; checked through harvesters), so a ``GenICamSource``
implementation could not be tested and was not built.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from vinspect.errors import FeatureMissing, SignalError
from vinspect.types import Disposition, Inspection, StationState

__all__ = ["CameraOutputSignaller", "FakeLineOutputs", "HasLineOutputs", "LineOutputs", "NodeMapOutputs"]


class LineOutputs(Protocol):
    """A device's software-set digital outputs."""

    def user_outputs(self) -> tuple[str, ...]:
        """Names of the outputs the device has (e.g. ``UserOutput1``)."""
        ...

    def set_user_output(self, name: str, value: bool) -> None:
        """Drive one output high or low."""
        ...


@runtime_checkable
class HasLineOutputs(Protocol):
    """A frame source whose camera has digital outputs the station may drive (GenICam)."""

    def line_outputs(self) -> LineOutputs:
        """The camera's outputs (valid while the source is open)."""
        ...


@dataclass
class FakeLineOutputs:
    """The fake device: records every level change as (name, value)."""

    names: tuple[str, ...] = ("UserOutput1", "UserOutput2")
    levels: dict[str, bool] = field(default_factory=dict)
    history: list[tuple[str, bool]] = field(default_factory=list)

    def user_outputs(self) -> tuple[str, ...]:
        return self.names

    def set_user_output(self, name: str, value: bool) -> None:
        if name not in self.names:
            raise SignalError(f"no output {name}")
        self.levels[name] = value
        self.history.append((name, value))


class NodeMapOutputs:
    """LineOutputs over a GenICam node map (SFNC UserOutputSelector / UserOutputValue)."""

    def __init__(self, node_map: Any) -> None:
        self._nodes = node_map

    def user_outputs(self) -> tuple[str, ...]:
        try:
            return tuple(str(s) for s in self._nodes.UserOutputSelector.symbolics)
        except AttributeError:
            return ()

    def set_user_output(self, name: str, value: bool) -> None:
        try:
            self._nodes.UserOutputSelector.value = name
            self._nodes.UserOutputValue.value = value
        except Exception as exc:  # genicam boundary: its exceptions are untyped to us
            raise SignalError(f"UserOutput {name}: {exc}") from exc


class CameraOutputSignaller:
    """Drives camera outputs from verdicts (see the module docstring).

    Args:
        outputs: the device's outputs.
        accept_output: the output pulsed for a PASS.
        heartbeat_output: an output toggled on every heartbeat, if any.
        pulse_ms: how long an accept stays high.
        clock: monotonic seconds (tests pass a fake).

    Raises:
        FeatureMissing: the device lacks a configured output.
    """

    def __init__(
        self,
        outputs: LineOutputs,
        *,
        accept_output: str = "UserOutput1",
        heartbeat_output: str | None = None,
        pulse_ms: int = 50,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        have = outputs.user_outputs()
        for name in (accept_output, heartbeat_output):
            if name is not None and name not in have:
                raise FeatureMissing(f"camera has no {name} (it has: {', '.join(have) or 'no UserOutput'})")
        self._out, self._accept, self._hb = outputs, accept_output, heartbeat_output
        self._pulse_s, self._clock = pulse_ms / 1e3, clock
        self._high_since: float | None = None
        self._hb_level = False
        self._lock = threading.Lock()
        outputs.set_user_output(accept_output, False)

    def _drop_expired(self) -> None:
        if self._high_since is not None and self._clock() - self._high_since >= self._pulse_s:
            self._out.set_user_output(self._accept, False)
            self._high_since = None

    def signal(self, inspection: Inspection) -> None:
        with self._lock:
            accept = inspection.decision.disposition is Disposition.PASS
            self._out.set_user_output(self._accept, accept)
            self._high_since = self._clock() if accept else None

    def heartbeat(self) -> None:
        with self._lock:
            self._drop_expired()
            if self._hb is not None:
                self._hb_level = not self._hb_level
                self._out.set_user_output(self._hb, self._hb_level)

    def publish_state(self, state: StationState) -> None:
        if state not in (StationState.OPERATIONAL, StationState.DEGRADED):
            with self._lock:
                self._out.set_user_output(self._accept, False)
                self._high_since = None
