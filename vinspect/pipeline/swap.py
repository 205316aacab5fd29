"""Hot swap: notice a new ACTIVE model version, gate it off the line, hand it over between parts.

The watcher runs on its own thread: loading and the golden self-test never stall inspection.
The station loop (:mod:`vinspect.pipeline.runner`) gates the folder a watcher reports and its
inspection thread takes the verified :class:`~vinspect.pipeline.judge.Judge` before its next
part, so every part is judged exactly once, by exactly one model, and its record names that
model's sha256.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol, runtime_checkable

from vinspect.errors import ModelError
from vinspect.models.registry import ModelRegistry
from vinspect.types import ModelRef

__all__ = ["ModelWatch", "RegistryWatch", "SwapReporter"]


class ModelWatch(Protocol):
    """Tells the pipeline when a different model version should run."""

    def poll(self) -> Path | None:
        """The bundle folder of a newly activated version, once; None when nothing changed."""
        ...


@runtime_checkable
class SwapReporter(Protocol):
    """A watcher that wants to know what became of the folders it reported (model distribution
    reports the outcome to the store). Both calls must return at once: ``switched`` runs on the
    inspection thread, between two parts."""

    def refused(self, path: Path, reason: str) -> None:
        """The gate refused the folder ``poll`` returned, for ``reason``."""
        ...

    def switched(self, model: ModelRef) -> None:
        """The station now judges parts with ``model``."""
        ...


class RegistryWatch:
    """Watches ``<registry>/<name>/ACTIVE`` (rewritten atomically by ``vinspect models activate``).

    Args:
        registry: the model registry.
        name: model name.
        current: the version running now (None when none is).
    """

    def __init__(self, registry: ModelRegistry, name: str, *, current: str | None) -> None:
        self._registry = registry
        self._name = name
        self._seen = current
        self._lock = threading.Lock()

    def poll(self) -> Path | None:
        with self._lock:
            version = self._registry.active_version(self._name)
            if version is None or version == self._seen:
                return None
            self._seen = version
        try:
            return self._registry.resolve(self._name, version)
        except ModelError:
            return self._registry.root / self._name / version  # gating reports it missing
