"""A store-backed station runs only an approved configuration, and never applies an edit live.

At start, :func:`require_approval` refuses a station file whose effective configuration hash has
no approval in the store (the message names the file, the hash and the command that approves
it). While the station runs, :class:`ConfigWatch` looks at the file every ``period_s`` (its size
and modification time; the file is parsed again only when they change) and compares its hash
with the running one. The running station never re-applies its file: the version it started
with stays in force until a restart. A changed file is reported, never applied:

- approved: "approved version X on disk, takes effect at the next start" (status only);
- not approved, or unreadable: a warning in the log, the station status says so, and one quality
  alarm (kind ``config``) per changed version is raised in the store.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vinspect.errors import ConfigError, VinspectError
from vinspect.station_file import StationConfig, load_station
from vinspect.store import session_scope
from vinspect.store.alarms import raise_alarm
from vinspect.store.station_configs import ConfigApproval, approved

__all__ = ["ConfigWatch", "approve_command", "require_approval"]

_log = logging.getLogger(__name__)


def _where(data_dir: Path | None) -> str:
    return f" --data-dir {data_dir}" if data_dir is not None else ""


def approve_command(path: Path, data_dir: Path | None) -> str:
    """The exact command that approves the station file ``path``."""
    return f'vinspect config approve --station {path}{_where(data_dir)} --user <quality engineer> --reason "..."'


def require_approval(engine: Any, station: StationConfig, *, path: Path, data_dir: Path | None) -> ConfigApproval:
    """The approval of the station's configuration.

    Raises:
        ConfigError: no approval, naming the file, the hash and the approving command.
    """
    digest = station.config_sha256()
    with session_scope(engine, readonly=True) as session:
        approval = approved(session=session, station_id=station.station_id, config_sha256=digest)
    if approval is None:
        raise ConfigError(
            f"{path}: station {station.station_id} configuration {digest} is not approved; "
            "the station does not start with an unapproved configuration. A quality engineer or "
            f"admin reviews it (vinspect config show --station {path}{_where(data_dir)}) and "
            "approves it: "
            f"{approve_command(path, data_dir)}"
        )
    return approval


@dataclass(frozen=True, slots=True)
class _FileState:
    stamp: tuple[int, int] | None
    sha256: str | None
    state: str
    message: str


class ConfigWatch:
    """Watches the station file of a running station; reports a change, never applies it."""

    def __init__(
        self, path: Path, *, running: StationConfig, approval: ConfigApproval, engine: Any, period_s: float = 2.0
    ) -> None:
        self.path, self.engine, self.period_s = path, engine, period_s
        self.station_id = running.station_id
        self.approval = approval
        self.alarms = 0
        self._sha256 = running.config_sha256()
        self._file = _FileState(stamp=self._stamp(), sha256=self._sha256, state="as approved", message="")
        self._alarmed: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="vinspect-config-watch", daemon=True)

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def check_now(self) -> None:
        """Look at the file once (parsed again only when its size or time changed)."""
        stamp = self._stamp()
        if stamp == self._file.stamp:
            return
        problem = ""
        try:
            digest: str | None = load_station(self.path).config_sha256()
        except VinspectError as exc:
            digest, problem = None, str(exc)
        if digest == self._sha256:
            state = _FileState(stamp=stamp, sha256=digest, state="as approved", message="")
        elif digest is None:
            state = _FileState(
                stamp=stamp,
                sha256=None,
                state="unreadable",
                message=f"{self.path} no longer loads ({problem}); still running the approved "
                f"configuration {self._sha256[:12]}",
            )
        else:
            with session_scope(self.engine, readonly=True) as session:
                other = approved(session=session, station_id=self.station_id, config_sha256=digest)
            if other is not None:
                state = _FileState(
                    stamp=stamp,
                    sha256=digest,
                    state="approved, at next start",
                    message=f"{self.path} now holds configuration {digest[:12]}, approved by "
                    f"{other.approved_by}; it takes effect when the station restarts "
                    f"(running {self._sha256[:12]})",
                )
            else:
                state = _FileState(
                    stamp=stamp,
                    sha256=digest,
                    state="changed, not approved",
                    message=f"{self.path} changed on disk to configuration {digest[:12]}, which is "
                    f"not approved; still running the approved configuration "
                    f"{self._sha256[:12]}. To apply it: "
                    f"{approve_command(self.path, None)}, then restart the station",
                )
        with self._lock:
            self._file = state
        if state.state in ("changed, not approved", "unreadable"):
            self._warn(state)

    def _warn(self, state: _FileState) -> None:
        key = state.sha256 or f"unreadable:{state.stamp}"
        if key in self._alarmed:
            return
        self._alarmed.add(key)
        _log.warning("station %s: %s", self.station_id, state.message)
        now = datetime.now(UTC)
        try:
            with session_scope(self.engine) as session:
                raise_alarm(
                    session=session,
                    kind="config",
                    station_id=self.station_id,
                    chart="station_config",
                    rule=0,
                    first_at=now,
                    last_at=now,
                    at=now,
                    detail={
                        "file": str(self.path),
                        "running_sha256": self._sha256,
                        "file_sha256": state.sha256,
                        "state": state.state,
                        "message": state.message,
                    },
                )
            self.alarms += 1
        except (VinspectError, OSError) as exc:
            _log.warning("station %s: could not raise the configuration alarm: %s", self.station_id, exc)

    def status(self) -> dict[str, Any]:
        """The running configuration and what the file on disk holds (the station status shows it)."""
        with self._lock:
            f = self._file
        a = self.approval
        return {
            "sha256": self._sha256,
            "approved_by": a.approved_by,
            "approved_at": a.approved_at.isoformat(),
            "file": str(self.path),
            "file_state": f.state,
            "file_sha256": f.sha256,
            "message": f.message,
        }

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                self.check_now()
            except Exception:  # watch boundary: a failing look at the file must not take the line down
                _log.exception("station %s: configuration watch failed", self.station_id)

    def __enter__(self) -> ConfigWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
