"""Backoff: the capped exponential delay between recovery attempts, in one place.

The reconnecting supervisor (``ReconnectConfig``, milliseconds in the station file) and the
respawning process source (``RestartBackoff``, seconds) both build one from their settings with
``.schedule()``; the arithmetic lives here only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Backoff"]


@dataclass(slots=True)
class Backoff:
    """Delays ``initial_s``, ``initial_s * multiplier``, ... capped at ``max_s``; ``reset`` starts over."""

    initial_s: float
    max_s: float
    multiplier: float
    _next_s: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._next_s = self.initial_s

    def next(self) -> float:
        """The delay to wait now; the one after it grows by ``multiplier`` up to ``max_s``."""
        delay = self._next_s
        self._next_s = min(delay * self.multiplier, self.max_s)
        return delay

    def reset(self) -> None:
        """After a success: the next delay is ``initial_s`` again."""
        self._next_s = self.initial_s
