"""Test-only crash points: ``os._exit`` at a named place, to test recovery deterministically.

Off by default. With ``VINSPECT_CRASH_AT=<name>`` (or ``<name>:<n>`` for the n-th time the
point is reached, default the first) in the environment, the process exits at once with
status 137 (as after SIGKILL) when it reaches :func:`crash_point` with that name: no cleanup,
no flush, no ``finally``. The names in use:

- ``part.admitted``: a part number is marked as handed out; the part has no verdict yet.
- ``store.before_commit``: the group commit's rows are inserted, the transaction is not committed.
- ``store.after_commit``: the NCRs are committed, not yet acknowledged nor written to any later sink.
- ``jsonl.mid_line``: half of a JSONL record line is written.

The environment is read once, at import; a process without the variable pays one dict lookup.
"""

from __future__ import annotations

import os
import threading

__all__ = ["CRASH_ENV", "EXIT_STATUS", "armed", "crash_point"]

CRASH_ENV = "VINSPECT_CRASH_AT"
EXIT_STATUS = 137


def _parse(spec: str | None) -> tuple[str, int] | None:
    if not spec:
        return None
    name, _, count = spec.partition(":")
    return name, int(count) if count else 1


_TARGET = _parse(os.environ.get(CRASH_ENV))
_hits = 0
_lock = threading.Lock()


def armed(name: str) -> bool:
    """True when ``VINSPECT_CRASH_AT`` names this point (for points that need setting up)."""
    return _TARGET is not None and _TARGET[0] == name


def crash_point(name: str) -> None:
    """Exit the process now if ``VINSPECT_CRASH_AT`` names this point (and its hit count is reached)."""
    global _hits
    if _TARGET is None or _TARGET[0] != name:
        return
    with _lock:
        _hits += 1
        if _hits >= _TARGET[1]:
            os._exit(EXIT_STATUS)
