"""Capped exponential backoff, in one place (stdlib only, so every layer may use it).

:func:`capped_delay` is the arithmetic: ``initial_s``, ``initial_s * multiplier``, ... capped at
``max_s``, computed by repeated multiplication that stops at the cap (no power is ever taken, so
the ten-thousandth retry of a relay whose peer is down for a weekend does not overflow a float).
:class:`Backoff` walks it for a caller that keeps its own count: the reconnecting supervisor
(``ReconnectConfig``, milliseconds in the station file) and the respawning process source
(``RestartBackoff``, seconds) build one with ``.schedule()``; the NCR outbox relay, whose count
lives in its rows, calls :func:`capped_delay` with the row's attempts and adds its jitter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Backoff", "capped_delay"]


def capped_delay(attempt: int, *, initial_s: float, max_s: float, multiplier: float) -> float:
    """The delay before retry ``attempt`` (0 = the first): ``initial_s * multiplier**attempt``,
    at most ``max_s``."""
    delay = initial_s
    if multiplier > 1.0:
        for _ in range(max(0, attempt)):
            if delay >= max_s:
                break
            delay *= multiplier
    return min(delay, max_s)


@dataclass(slots=True)
class Backoff:
    """Delays ``initial_s``, ``initial_s * multiplier``, ... capped at ``max_s``; ``reset`` starts over."""

    initial_s: float
    max_s: float
    multiplier: float
    _attempt: int = field(default=0, init=False, repr=False)

    def next(self) -> float:
        """The delay to wait now; the one after it grows by ``multiplier`` up to ``max_s``."""
        delay = capped_delay(self._attempt, initial_s=self.initial_s, max_s=self.max_s, multiplier=self.multiplier)
        self._attempt += 1
        return delay

    def reset(self) -> None:
        """After a success: the next delay is ``initial_s`` again."""
        self._attempt = 0
