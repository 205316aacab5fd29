"""The station side of model distribution (issue 18): notice the assignment, pull, verify, hand over, report.

:class:`AssignmentWatch` is the station's :class:`~vinspect.pipeline.swap.ModelWatch` when it has a
store. It runs on the pipeline's hot-swap thread, never on the line's:

1. like :class:`~vinspect.pipeline.swap.RegistryWatch`, it reports a version activated in the
   local registry (``vinspect models activate`` on the station PC);
2. every ``check_s`` it reads the station's current assignment. A new one is pulled from the
   store, its archive SHA-256 checked against the assignment, unpacked, installed into the local
   registry (which checks ``model.onnx`` against the manifest), its model SHA-256 checked against
   the assignment, and its input (channels, model size) compared with the model the station runs
   now; then the folder is handed to the pipeline, which gates it exactly as any hot swap (load,
   graph contract, golden self-test) and takes it between two parts;
3. the pipeline tells it the result (:meth:`refused`, :meth:`switched`, on the swap and the
   inspection thread: both only queue it); the next poll writes it to the store
   (:func:`~vinspect.store.distribution.report_outcome`) and, after a switch, points the local
   ``ACTIVE`` at the new version so a restart runs it too.

A refusing station stays on its model. An assignment is acted on once: a refused one is not
retried (assign again to retry); one already reported (before a restart) is left alone.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine

from vinspect.errors import ModelError, StateError, StoreError
from vinspect.models.archive import archive_sha256, unpack_bundle
from vinspect.models.manifest import InputSpec, read_manifest
from vinspect.models.registry import ModelRegistry
from vinspect.store.distribution import REFUSED, SWITCHED, Assignment, current_assignment, fetch_archive, report_outcome
from vinspect.types import ModelRef

__all__ = ["AssignmentWatch", "input_problem"]

_log = logging.getLogger(__name__)


def input_problem(candidate: InputSpec, running: InputSpec | None) -> str | None:
    """Why a candidate cannot take this station's frames as the running model does; None when it can."""
    if running is None:
        return None
    if candidate.channels != running.channels or tuple(candidate.model_size_px) != tuple(running.model_size_px):

        def spec(s: InputSpec) -> str:
            return f"{s.model_size_px[1]}x{s.model_size_px[0]} px, {s.channels} channel(s)"

        return f"wrong input size: the bundle takes {spec(candidate)}, this station's model takes {spec(running)}"
    return None


@dataclass(frozen=True, slots=True)
class _Outcome:
    assignment: Assignment
    outcome: str
    reason: str | None
    at: datetime
    running_sha256: str | None


class AssignmentWatch:
    """Hot-swap watcher that also pulls the station's model assignment from the store.

    Args:
        engine: the station's store.
        station_id: whose assignments to follow.
        registry: the station's local model registry, or None when the station file pins a bundle
            folder or a version (``pinned`` says which; such a station refuses every assignment).
        name: the model name the station file runs (``model: {name: ...}``).
        running: the model the station runs at start (None: none passed the gate).
        check_s: how often the assignment is read.
        pinned: why the station cannot follow assignments (None: it can).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        station_id: str,
        registry: ModelRegistry | None,
        name: str | None,
        running: ModelRef | None,
        check_s: float = 2.0,
        pinned: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine, self.station_id, self.registry, self.name = engine, station_id, registry, name
        self.check_s, self.pinned, self._clock = check_s, pinned, clock
        self._running = running
        self._seen = registry.active_version(name) if registry is not None and name is not None else None
        self._lock = threading.Lock()
        self._inflight: tuple[Assignment, Path] | None = None
        self._outbox: list[_Outcome] = []
        self._handled: set[int] = set()
        self._next_check = 0.0

    # -------------------------------------------------------------- pipeline callbacks (queue only)

    def refused(self, path: Path, reason: str) -> None:
        """The pipeline's gate refused ``path`` (swap thread)."""
        with self._lock:
            if self._inflight is not None and self._inflight[1] == path:
                self._queue(self._inflight[0], REFUSED, reason)
                self._inflight = None

    def switched(self, model: ModelRef) -> None:
        """The pipeline now judges with ``model`` (inspection thread: must not block)."""
        with self._lock:
            self._running = model
            if self._inflight is not None and self._inflight[0].sha256 == model.sha256:
                self._queue(self._inflight[0], SWITCHED, None)
                self._inflight = None

    def _queue(self, a: Assignment, outcome: str, reason: str | None) -> None:
        running = None if self._running is None else self._running.sha256
        self._outbox.append(_Outcome(a, outcome, reason, datetime.now(UTC), running))
        self._handled.add(a.id)

    # -------------------------------------------------------------- ModelWatch

    def poll(self) -> Path | None:
        """A bundle folder to gate (a local activation or a pulled assignment), once; else None."""
        self._flush()
        local = self._local()
        if local is not None:
            return local
        now = self._clock()
        if now < self._next_check:
            return None
        self._next_check = now + self.check_s
        try:
            a = current_assignment(self.engine, self.station_id)
        except StoreError as exc:
            _log.warning("station %s: reading the model assignment failed: %s", self.station_id, exc)
            return None
        with self._lock:
            if a is None or a.id in self._handled or self._inflight is not None:
                return None
            if a.outcome is not None:  # reported before a restart
                self._handled.add(a.id)
                return None
            already = (
                self._running is not None and self._running.sha256 == a.sha256 and self._running.version == a.version
            )
            if already:
                self._queue(a, SWITCHED, "already running this version")
        if already:
            self._flush()
            return None
        path, problem = self._pull(a)
        with self._lock:
            if problem is None:
                assert path is not None
                self._inflight = (a, path)
            else:
                self._queue(a, REFUSED, problem)
        if problem is not None:
            self._flush()
            return None
        _log.warning("station %s: pulled %s %s (assignment %d); gating it", self.station_id, a.name, a.version, a.id)
        return path

    def _local(self) -> Path | None:
        if self.registry is None or self.name is None:
            return None
        version = self.registry.active_version(self.name)
        if version is None or version == self._seen:
            return None
        self._seen = version
        try:
            return self.registry.resolve(self.name, version)
        except ModelError:
            return self.registry.root / self.name / version  # gating reports it missing

    def _pull(self, a: Assignment) -> tuple[Path | None, str | None]:
        """The installed, verified bundle folder, or why not."""
        if self.pinned is not None or self.registry is None:
            return None, self.pinned or "this station has no model registry to install into"
        if a.name != self.name:
            return None, f"this station runs model {self.name!r}; the assignment is for model {a.name!r}"
        installed = self.registry.root / a.name / a.version
        try:
            if (installed / "manifest.json").is_file():
                sha = read_manifest(installed).sha256
                if sha != a.sha256:
                    return None, (
                        f"sha256 mismatch: {a.name} {a.version} is already installed here with model "
                        f"sha256 {sha[:12]}, the assignment names {a.sha256[:12]}"
                    )
                return self._checked_input(installed)
            data = fetch_archive(self.engine, name=a.name, version=a.version)
            if data is None:
                return None, f"the store holds no bundle for {a.name} {a.version}"
            got = archive_sha256(data)
            if got != a.archive_sha256:
                return None, (
                    f"sha256 mismatch: the bundle archive pulled from the store has sha256 {got[:12]}, "
                    f"the assignment names {a.archive_sha256[:12]} (altered in the store?)"
                )
            return self._install(a, data)
        except (StoreError, OSError) as exc:
            return None, f"pulling the bundle failed: {exc}"

    def _install(self, a: Assignment, data: bytes) -> tuple[Path | None, str | None]:
        assert self.registry is not None
        incoming = self.registry.root / f".incoming-{a.id}"  # never a <name>/<version> folder the registry lists
        shutil.rmtree(incoming, ignore_errors=True)
        try:
            unpack_bundle(data, incoming)
            manifest = read_manifest(incoming)
            if manifest.sha256 != a.sha256 or (manifest.name, manifest.version) != (a.name, a.version):
                return None, (
                    f"sha256 mismatch: the pulled bundle is {manifest.name} {manifest.version} with model "
                    f"sha256 {manifest.sha256[:12]}, the assignment names {a.name} {a.version} "
                    f"{a.sha256[:12]}"
                )
            problem = input_problem(manifest.input, self._running_input())
            if problem is not None:
                return None, problem
            entry = self.registry.install(incoming)
        except ModelError as exc:
            reason = str(exc)
            return None, (f"sha256 mismatch: {reason}" if "sha256" in reason else f"model refused: {reason}")
        finally:
            shutil.rmtree(incoming, ignore_errors=True)
        return entry.path, None

    def _checked_input(self, folder: Path) -> tuple[Path | None, str | None]:
        try:
            problem = input_problem(read_manifest(folder).input, self._running_input())
        except ModelError as exc:
            return None, f"model refused: {exc}"
        return (None, problem) if problem is not None else (folder, None)

    def _running_input(self) -> InputSpec | None:
        running = self._running
        if running is None or self.registry is None:
            return None
        try:
            return read_manifest(self.registry.root / running.name / running.version).input
        except ModelError:
            return None

    # -------------------------------------------------------------- reporting

    def _flush(self) -> None:
        with self._lock:
            pending, self._outbox = self._outbox, []
        kept: list[_Outcome] = []
        for item in pending:
            a = item.assignment
            try:
                report_outcome(
                    self.engine,
                    assignment_id=a.id,
                    station_id=self.station_id,
                    outcome=item.outcome,
                    reason=item.reason,
                    at=item.at,
                    running_sha256=item.running_sha256,
                )
            except StoreError as exc:
                _log.warning(
                    "station %s: reporting %s of %s %s failed (retried): %s",
                    self.station_id,
                    item.outcome,
                    a.name,
                    a.version,
                    exc,
                )
                kept.append(item)
                continue
            except StateError as exc:
                _log.error(
                    "station %s: %s of %s %s not reported: %s", self.station_id, item.outcome, a.name, a.version, exc
                )
                continue
            if item.outcome == SWITCHED and self.registry is not None:
                try:
                    self.registry.activate(a.name, a.version)  # a restart runs the version it switched to
                    self._seen = a.version
                except ModelError as exc:
                    _log.warning("station %s: pointing ACTIVE at %s failed: %s", self.station_id, a.version, exc)
            if item.outcome == REFUSED:
                _log.error("station %s: refused %s %s: %s", self.station_id, a.name, a.version, item.reason)
            else:
                _log.warning("station %s: switched to %s %s", self.station_id, a.name, a.version)
        if kept:
            with self._lock:
                self._outbox = kept + self._outbox
