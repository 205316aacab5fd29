"""A candidate's evaluation on a frozen set, started from the Models page and run off the request.

Judging a frozen set with two models takes seconds to minutes on the line PC, so the page's
button starts a background thread and answers at once; the page shows the job as running, done
or failed (with the reason) and polls :meth:`EvaluationJobs.state` through the JSON endpoint
until it ends. At most one evaluation runs per candidate: a second start while one runs is
refused. The work is the CLI's (:mod:`vinspect.report.candidate_evaluation`, ONNX Runtime only),
recorded with the starting user as the audit actor; the changed verdicts' images are written
under the evaluation's hash like ``vinspect models evaluate`` does.

Frozen sets are offered from ``<data dir>/frozen/<folder>/`` (``vinspect dataset freeze DATA
--out <data dir>/frozen/<folder> ...``): the page never takes a filesystem path from a form.
Job states live in the app's memory; a restarted app has none (the recorded evaluation stays).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from vinspect.dataset.frozen import FROZEN_FILE
from vinspect.errors import VinspectError
from vinspect.models.evaluation_images import evaluation_dir
from vinspect.models.manifest import read_manifest
from vinspect.models.registry import ModelRegistry
from vinspect.report.candidate_evaluation import evaluate_candidate, write_evaluation_images
from vinspect.store import promotion as promo
from vinspect.store import session_scope

__all__ = ["FROZEN_DIR", "EvaluationJob", "EvaluationJobs", "FrozenChoice", "frozen_choices"]

logger = logging.getLogger(__name__)
FROZEN_DIR = "frozen"
FOLDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")


@dataclass(frozen=True, slots=True, kw_only=True)
class FrozenChoice:
    """A frozen set the page offers (read from its ``frozen.json``; verified when the job runs)."""

    folder: str
    name: str
    version: str
    set_sha256: str
    n_images: int


def frozen_choices(data_dir: Path) -> list[FrozenChoice]:
    """Every frozen set under ``<data dir>/frozen/``, by folder name; unreadable ones are skipped."""
    root = data_dir / FROZEN_DIR
    if not root.is_dir():
        return []
    out = []
    for folder in sorted(root.iterdir()):
        if not folder.is_dir() or not FOLDER.match(folder.name):
            continue
        try:
            doc = json.loads((folder / FROZEN_FILE).read_text(encoding="utf-8"))
            entries = [e for e in doc["entries"] if not str(e["path"]).startswith("masks/")]
            out.append(
                FrozenChoice(
                    folder=folder.name,
                    name=str(doc["name"]),
                    version=str(doc["version"]),
                    set_sha256=str(doc["set_sha256"]),
                    n_images=len(entries),
                )
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class EvaluationJob:
    """One evaluation started from the app."""

    name: str
    version: str
    frozen: str  # the frozen set's folder
    started_by: str
    started_at: datetime
    status: Literal["running", "done", "failed"] = "running"
    reason: str | None = None  # why it failed
    finished_at: datetime | None = None
    evidence_sha256: str | None = None
    failures: tuple[str, ...] = ()  # criteria not met by the recorded evidence

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "frozen": self.frozen,
            "started_by": self.started_by,
            "started_at": self.started_at.isoformat(timespec="seconds"),
            "status": self.status,
            "reason": self.reason,
            "finished_at": None if self.finished_at is None else self.finished_at.isoformat(timespec="seconds"),
            "evidence_sha256": self.evidence_sha256,
            "criteria_failed": list(self.failures),
        }


class EvaluationJobs:
    """The app's evaluation threads and their states, one per candidate at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[tuple[str, str], EvaluationJob] = {}
        self._threads: dict[tuple[str, str], threading.Thread] = {}

    def state(self, name: str, version: str) -> EvaluationJob | None:
        """The newest job of a candidate (None: none since the app started)."""
        with self._lock:
            return self._jobs.get((name, version))

    def start(
        self,
        *,
        engine: Any,
        registry: ModelRegistry,
        data_dir: Path,
        name: str,
        version: str,
        frozen: str,
        user_id: int,
        user_name: str,
        shadow: Callable[[], dict[str, Any] | None],
    ) -> EvaluationJob | None:
        """Start the evaluation in a thread; None when one already runs for this candidate.

        ``shadow`` reads the candidate's shadow statistics when the job runs.
        """
        key = (name, version)
        job = EvaluationJob(
            name=name, version=version, frozen=frozen, started_by=user_name, started_at=datetime.now(UTC)
        )
        with self._lock:
            running = self._jobs.get(key)
            if running is not None and running.status == "running":
                return None
            self._jobs[key] = job
            thread = threading.Thread(
                target=self._run,
                kwargs={
                    "engine": engine,
                    "registry": registry,
                    "data_dir": data_dir,
                    "job": job,
                    "actor": f"user:{user_id}",
                    "shadow": shadow,
                },
                name=f"evaluate-{name}@{version}",
                daemon=True,
            )
            self._threads[key] = thread
        thread.start()
        return job

    def join(self, timeout: float | None = None) -> None:
        """Wait for every running evaluation (tests, shutdown)."""
        with self._lock:
            threads = list(self._threads.values())
        for t in threads:
            t.join(timeout)

    def _finish(self, job: EvaluationJob, **changes: Any) -> None:
        with self._lock:
            self._jobs[(job.name, job.version)] = replace(job, finished_at=datetime.now(UTC), **changes)

    def _run(
        self,
        *,
        engine: Any,
        registry: ModelRegistry,
        data_dir: Path,
        job: EvaluationJob,
        actor: str,
        shadow: Callable[[], dict[str, Any] | None],
    ) -> None:
        try:
            ev = evaluate_candidate(
                registry=registry,
                name=job.name,
                version=job.version,
                data=data_dir / FROZEN_DIR / job.frozen,
                shadow=shadow(),
            )
            sha256 = read_manifest(registry.resolve(job.name, job.version)).sha256
            with session_scope(engine) as session:
                digest = promo.record_evaluation(
                    session=session,
                    name=job.name,
                    version=job.version,
                    sha256=sha256,
                    evaluation=ev.evaluation,
                    actor=actor,
                )
            write_evaluation_images(evaluation_dir(data_dir, job.name, job.version, digest), ev)
            with session_scope(engine, readonly=True) as session:
                state = promo.candidate_state(session=session, name=job.name, version=job.version)
        except VinspectError as exc:
            self._finish(job, status="failed", reason=str(exc))
            return
        except Exception as exc:  # the page must say it failed, whatever broke
            logger.exception("evaluation of %s %s failed", job.name, job.version)
            self._finish(job, status="failed", reason=f"{type(exc).__name__}: {exc}")
            return
        self._finish(job, status="done", evidence_sha256=digest, failures=state.failures)
