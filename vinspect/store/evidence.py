"""Evidence files (reject images, heatmaps), stored content-addressed and scrubbed.

A file lives at ``<root>/<sha[:2]>/<sha>.png`` where ``sha`` is the SHA-256 of its bytes; no
user-supplied name ever reaches a path, and every resolved path must stay inside the realpath of
the root (a planted symlink is refused). Files are written to a temporary name, fsynced, renamed
and the directory fsynced, so a file an NCR references survives a crash or power cut once the
NCR commits. :func:`scrub` re-hashes every referenced file and reports missing or altered ones.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
from sqlalchemy import select
from sqlalchemy.orm import Session

from vinspect.errors import StoreError
from vinspect.files import sha256_file, write_atomically
from vinspect.imaging import HEAT_LOW_OVER_LEVEL, HEAT_TOP_OVER_LEVEL, encode_png, heat_colours, heat_fraction
from vinspect.store.canonical import sha256_hex
from vinspect.store.tables import EvidenceRecord

__all__ = ["EvidenceBlob", "EvidenceStore", "PendingEvidence", "ScrubReport", "StoredEvidence", "heatmap_png", "scrub"]

_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredEvidence:
    """A stored file as an NCR references it."""

    kind: str
    sha256: str
    media_type: str
    uri: str
    size_bytes: int
    captured_at: datetime | None = None
    camera_settings: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScrubReport:
    """Files checked, and the sha256 of each missing or altered one."""

    checked: int
    missing: tuple[str, ...]
    altered: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.missing and not self.altered


def evidence_uri(sha256: str) -> str:
    """The location-independent URI recorded on the NCR."""
    return f"urn:vinspect:evidence:sha256:{sha256}"


@dataclass(frozen=True, slots=True, kw_only=True)
class EvidenceBlob:
    """Bytes to store and what the NCR will say about them."""

    data: bytes
    kind: str
    captured_at: datetime | None = None
    camera_settings: Mapping[str, object] = field(default_factory=dict)


class EvidenceStore:
    """Content-addressed PNG files under one root directory; close() when done.

    New files are created at their final name and made durable with fsync of the file and of
    its directory, all issued concurrently (one journal commit instead of four in a row). A crash
    can leave a partial file that no committed NCR references; the next store of the same bytes
    finds it damaged and replaces it atomically.
    """

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self._root = Path(root)
        self._fsync = fsync
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    @property
    def root(self) -> Path:
        return self._root

    def close(self) -> None:
        """Stop the fsync helper threads (the store stays usable; they restart on demand)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def path_for(self, sha256: str) -> Path:
        """The file for a digest; refuses anything but 64 lower-case hex digits or an escape."""
        if not _SHA256.fullmatch(sha256):
            raise StoreError(f"evidence id {sha256!r} is not a sha256 hex digest")
        root = os.path.realpath(self._root)
        path = os.path.realpath(os.path.join(root, sha256[:2], f"{sha256}.png"))
        if os.path.commonpath([root, path]) != root:
            raise StoreError(f"evidence {sha256} resolves outside {root}: refusing")
        return Path(path)

    def put(
        self,
        data: bytes,
        *,
        kind: str,
        captured_at: datetime | None = None,
        camera_settings: Mapping[str, object] | None = None,
    ) -> StoredEvidence:
        """Store PNG bytes durably (idempotent: an intact existing copy is kept)."""
        blob = EvidenceBlob(data=data, kind=kind, captured_at=captured_at, camera_settings=dict(camera_settings or {}))
        return self.put_all([blob])[0]

    def put_all(self, blobs: Sequence[EvidenceBlob]) -> list[StoredEvidence]:
        """Store several files durably; returns once every file and directory entry is synced."""
        with self.write_all(blobs) as pending:
            pending.wait()
            return pending.stored

    def write_all(self, blobs: Sequence[EvidenceBlob]) -> PendingEvidence:
        """Write files now and start their fsyncs in the background; ``wait()`` before relying on them."""
        job: Future[_Written] = Future()
        try:
            job.set_result(self._write(blobs))
        except StoreError as exc:
            job.set_exception(exc)
        return PendingEvidence(job)

    def submit(self, make_blobs: Callable[[], Sequence[EvidenceBlob]]) -> PendingEvidence:
        """Encode (``make_blobs``) and write in a helper thread, fsyncs in parallel; returns at once.

        The caller does other work (the NCR's database statements) meanwhile; ``stored`` waits for
        the files to be written, ``wait()`` for them to be durable, which must happen before
        anything referencing them commits.
        """
        return PendingEvidence(self._executor().submit(lambda: self._write(make_blobs())))

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="evidence-io")
            return self._pool

    def _write(self, blobs: Sequence[EvidenceBlob]) -> _Written:
        fds: list[int] = []
        dirs: set[str] = set()
        stored: list[StoredEvidence] = []
        try:
            with self._lock:
                for blob in blobs:
                    digest = sha256_hex(blob.data)
                    self._place(self.path_for(digest), blob.data, fds=fds, dirs=dirs)
                    stored.append(
                        StoredEvidence(
                            kind=blob.kind,
                            sha256=digest,
                            media_type="image/png",
                            uri=evidence_uri(digest),
                            size_bytes=len(blob.data),
                            captured_at=blob.captured_at,
                            camera_settings=dict(blob.camera_settings),
                        )
                    )
                if self._fsync:
                    fds.extend(os.open(d, os.O_RDONLY) for d in dirs)
        except OSError as exc:
            _close(fds)
            raise StoreError(f"writing evidence under {self._root}: {exc}") from exc
        futures = [self._executor().submit(os.fsync, fd) for fd in fds] if self._fsync else []
        return _Written(stored=stored, fds=fds, futures=futures)

    def read(self, sha256: str) -> bytes:
        """The bytes of a stored file, verified against its digest."""
        path = self.path_for(sha256)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise StoreError(f"reading evidence {path}: {exc}") from exc
        if sha256_hex(data) != sha256:
            raise StoreError(f"evidence {path} does not match its sha256: altered or truncated")
        return data

    def _place(self, path: Path, data: bytes, *, fds: list[int], dirs: set[str]) -> None:
        directory = path.parent
        if not directory.is_dir():
            created = [directory]
            while not created[-1].parent.exists():
                created.append(created[-1].parent)
            directory.mkdir(parents=True, exist_ok=True)
            dirs.update(str(d.parent) for d in created)  # each new directory's entry must be durable too
        dirs.add(str(directory))
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask decides (027 in services)
        except FileExistsError:
            if sha256_file(path) == path.stem:
                fds.append(os.open(path, os.O_RDONLY))  # may be unsynced leftovers of a crash
                return
            self._replace(path, data)
            return
        fds.append(fd)
        _write_all(fd, data)

    def _replace(self, path: Path, data: bytes) -> None:
        write_atomically(path, data, durable=self._fsync)


@dataclass(frozen=True, slots=True)
class _Written:
    stored: list[StoredEvidence]
    fds: list[int]
    futures: list[Future[None]]


class PendingEvidence:
    """Evidence being written and synced; a context manager that releases the descriptors."""

    def __init__(self, job: Future[_Written]) -> None:
        self._job = job

    @property
    def stored(self) -> list[StoredEvidence]:
        """The stored files (waits for the writes, not for the fsyncs)."""
        return self._job.result().stored

    def wait(self) -> None:
        """Block until every file and directory entry is on disk.

        Raises:
            StoreError: encoding, writing or an fsync failed (the files must not be referenced).
        """
        try:
            for future in self._job.result().futures:
                future.result()
        except OSError as exc:
            raise StoreError(f"syncing evidence: {exc}") from exc

    def close(self) -> None:
        wait_all([self._job])
        if self._job.exception() is not None:
            return
        written = self._job.result()
        for future in written.futures:
            future.cancel()
        wait_all(written.futures)
        _close(written.fds)
        written.fds.clear()

    def __enter__(self) -> PendingEvidence:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _close(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


HEATMAP_LOW_OVER_FAIL = HEAT_LOW_OVER_LEVEL  # the one colour scale of vinspect.imaging; the fail level sits
HEATMAP_TOP_OVER_FAIL = HEAT_TOP_OVER_LEVEL  # mid-scale (the UI legend reads these)
HEATMAP_MAX_SIDE = 1024  # longest side of a stored heatmap (the browser scales it smoothly)


def heatmap_png(
    anomaly_map: npt.NDArray[np.float32],
    *,
    fail_at: float | None = None,
    size_hw: tuple[int, int] | None = None,
    boxes: Sequence[tuple[int, int, int, int]] = (),
) -> bytes:
    """A colour heatmap of an anomaly map as an RGBA PNG to lay over the part image.

    Coloured on the one scale of :func:`vinspect.imaging.heat_fraction`: with ``fail_at`` fixed,
    ``HEATMAP_LOW_OVER_FAIL`` to ``HEATMAP_TOP_OVER_FAIL`` times ``fail_at``, so heatmaps of
    different parts compare (the same colour is the same score); without it, the map's own min-max
    (older callers). ``size_hw`` smooths the map up to the image's size (capped at
    ``HEATMAP_MAX_SIDE``); the low fifth of the scale is transparent and opacity rises towards the
    fail level, so the part stays visible where nothing is wrong; ``boxes`` (image pixels) outline
    the defect regions. NaN and infinities count as zero.
    """
    fraction = heat_fraction(anomaly_map, level=fail_at)
    scale = 1.0
    if size_hw is not None and size_hw[0] > 0 and size_hw[1] > 0:
        scale = min(1.0, HEATMAP_MAX_SIDE / max(size_hw))
        out_hw = (max(1, round(size_hw[0] * scale)), max(1, round(size_hw[1] * scale)))
        fraction = np.clip(cv2.resize(fraction, (out_hw[1], out_hw[0]), interpolation=cv2.INTER_CUBIC), 0, 1)
    bgr = heat_colours(fraction)
    alpha = np.round(np.clip((fraction - 0.2) / 0.5, 0.0, 1.0) * 220.0).astype(np.uint8)
    rgba = np.dstack([bgr, alpha])
    thickness = 2 if max(rgba.shape[:2]) > 400 else 1
    for x0, y0, x1, y1 in boxes:
        corner0 = (round(x0 * scale), round(y0 * scale))
        corner1 = (max(round(x1 * scale) - 1, 0), max(round(y1 * scale) - 1, 0))
        cv2.rectangle(rgba, corner0, corner1, (255, 255, 255, 255), thickness)
    return encode_png(rgba)


def scrub(evidence: EvidenceStore, *, session: Session) -> ScrubReport:
    """Re-hash every file an NCR references; report missing and altered ones.

    Args:
        evidence: the store the files live in.
        session: read-only session over the NCR database.
    """
    digests = session.scalars(select(EvidenceRecord.sha256).distinct().order_by(EvidenceRecord.sha256))
    missing: list[str] = []
    altered: list[str] = []
    checked = 0
    for digest in digests:
        checked += 1
        path = evidence.path_for(digest)
        try:
            actual = sha256_file(path)
        except FileNotFoundError:
            missing.append(digest)
            continue
        except OSError as exc:
            raise StoreError(f"scrubbing {path}: {exc}") from exc
        if actual != digest:
            altered.append(digest)
    return ScrubReport(checked=checked, missing=tuple(missing), altered=tuple(altered))
