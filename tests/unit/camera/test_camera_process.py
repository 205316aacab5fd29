"""ProcessSource with a folder source in the spawned child: frames, watchdog, restart, close.

The hang tests give the child a builder whose image reader hangs once (``camera_process_helpers``,
beside this file, on sys.path through pytest and passed to the spawned child). Named test_camera_process.py, not
test_process_source.py: tests/ has no packages, so two test files with one basename collide.
"""

from __future__ import annotations

import functools
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import psutil
import pytest
from camera_process_helpers import HANG_ENV, read_or_hang
from pydantic import ValidationError

from vinspect.camera.base import FrameSource, SourceState
from vinspect.camera.config import FolderSourceConfig, InnerSourceConfig, ProcessSourceConfig, resolve_paths
from vinspect.camera.factory import open_source
from vinspect.camera.process import RESPAWN_IN, ProcessSource
from vinspect.errors import ConfigError, DatasetError
from vinspect.types import Frame, FrameFault

pytestmark = pytest.mark.timeout(60)


@pytest.fixture()
def parts(tmp_path: Path) -> Path:
    """good/p0..p5.png, 48×64 Mono8, each a distinct gradient."""
    root = tmp_path / "parts"
    (root / "good").mkdir(parents=True)
    for i in range(6):
        image = ((np.arange(48 * 64).reshape(48, 64) + 37 * i) % 251).astype(np.uint8)
        cv2.imwrite(str(root / "good" / f"p{i}.png"), image)
    return root


def _config(root: Path, **overrides: object) -> ProcessSourceConfig:
    data: dict[str, object] = {
        "inner": {"kind": "folder", "path": str(root), "loop": True, "fps": 100.0},
        "watchdog_s": 0.5,
        "restart_after_s": 1.0,
        "backoff": {"initial_s": 0.05},
    }
    return ProcessSourceConfig.model_validate(data | overrides)


def _acquisition_children() -> list[psutil.Process]:
    """Our spawned acquisition children (the resource tracker does not count)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.fixture(autouse=True)
def no_leftover_children() -> Iterator[None]:
    yield
    assert _acquisition_children() == []


def _until_frames(source: ProcessSource, n: int, *, within_s: float = 15.0) -> list[Frame | FrameFault]:
    """Read until ``n`` frames arrived; return every item (frames and faults) in order."""
    items: list[Frame | FrameFault] = []
    stop = time.monotonic() + within_s
    while sum(isinstance(i, Frame) for i in items) < n:
        assert time.monotonic() < stop, f"only {items} within {within_s} s"
        item = source.read(timeout_s=1.0)
        assert item is not None
        items.append(item)
    return items


def _ids_strictly_increase(items: list[Frame | FrameFault]) -> list[int]:
    ids = [i.frame_id for i in items if i.frame_id is not None]
    assert ids == sorted(set(ids)), ids
    return ids


def test_frames_flow_from_the_child_equal_in_process_and_close_leaves_no_child(parts: Path) -> None:
    config = _config(parts)
    with open_source(config.inner, source_id="cam") as local:
        expected = [local.read(timeout_s=1.0) for _ in range(8)]
    with ProcessSource(config, source_id="cam", build=open_source) as source:
        pid = source.child_pid
        assert isinstance(source, FrameSource)
        assert source.state == SourceState.STREAMING and pid is not None and psutil.pid_exists(pid)
        frames = [source.read(timeout_s=1.0) for _ in range(8)]
    assert source.state == SourceState.CLOSED and source.child_pid is None
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert all(isinstance(f, Frame) for f in frames + expected), frames
    assert [f.frame_id for f in frames] == list(range(1, 9))
    for got, want in zip(frames, expected, strict=True):
        assert isinstance(got, Frame) and isinstance(want, Frame)
        assert np.array_equal(got.image, want.image) and got.image.dtype == np.uint8
        assert (got.part_id, got.label, got.origin, got.pixel_format) == (want.part_id, "good", "folder", "Mono8")
        assert not got.image.flags.writeable
        with pytest.raises(ValueError):
            got.image[0, 0] = 1
    assert source.stats.frames == 8 and source.stats.restarts == 0


def test_hung_fetch_is_a_watchdog_timeout_then_the_child_is_restarted(
    parts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "hang"
    marker.write_text("3")  # the 4th image read hangs forever, once
    monkeypatch.setenv(HANG_ENV, str(marker))
    config = _config(parts)
    with ProcessSource(config, source_id="cam", build=functools.partial(open_source, read=read_or_hang)) as source:
        before = _until_frames(source, 3)
        first_pid = source.child_pid
        start = time.monotonic()
        fault = source.read(timeout_s=5.0)
        elapsed = time.monotonic() - start
        assert isinstance(fault, FrameFault) and fault.reason == "timeout" and "watchdog" in fault.detail
        assert elapsed <= config.watchdog_s + 0.2, elapsed
        after = _until_frames(source, 3)
        assert source.child_pid not in (None, first_pid)
        stats = source.stats.snapshot()
    states = [c.new for c in source.lifecycle.history]
    assert SourceState.FAILED in states and states[-1] == SourceState.CLOSED
    assert stats["restarts"] == 1 and stats["losses"] == 1 and stats["watchdog"] >= 1
    assert stats["frames"] == 6 and stats["reconnects"] == 1
    outage = [i for i in after if isinstance(i, FrameFault)]
    assert outage and all(i.reason in ("timeout", "disconnected") for i in outage)
    _ids_strictly_increase([*before, fault, *after])


def test_child_sigkilled_mid_run_fails_faults_respawns_and_resumes(parts: Path) -> None:
    with ProcessSource(_config(parts), source_id="cam", build=open_source) as source:
        before = _until_frames(source, 5)
        pid = source.child_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        after = _until_frames(source, 5)
        resumed_s = time.monotonic() - killed
        assert source.state == SourceState.STREAMING and source.child_pid != pid
    assert SourceState.FAILED in [c.new for c in source.lifecycle.history]
    assert resumed_s < 8.0
    faults = [i for i in after if isinstance(i, FrameFault)]
    assert faults and {f.reason for f in faults} <= {"disconnected", "timeout"}
    stats = source.stats
    assert (stats.restarts, stats.losses, stats.frames) == (1, 1, 10) and stats.outages >= 1
    _ids_strictly_increase(before + after)


def test_start_up_failure_is_raised_from_enter_and_leaves_no_child(tmp_path: Path) -> None:
    source = ProcessSource(_config(tmp_path / "missing"), source_id="cam", build=open_source)
    with pytest.raises(DatasetError, match="does not exist"), source:
        pass
    assert source.state == SourceState.CLOSED
    assert [c.new for c in source.lifecycle.history][-2:] == [SourceState.FAILED, SourceState.CLOSED]


def test_a_finite_folder_exhausts_through_the_child(parts: Path) -> None:
    config = _config(parts, inner={"kind": "folder", "path": str(parts)})
    with ProcessSource(config, source_id="cam", build=open_source) as source:
        items = [source.read(timeout_s=1.0) for _ in range(7)]
        assert source.state == SourceState.EXHAUSTED
        assert source.read(timeout_s=1.0) is None
    assert [i.frame_id for i in items[:6] if isinstance(i, Frame)] == [1, 2, 3, 4, 5, 6]
    assert items[6] is None


def test_config_checks_and_delegates_to_the_inner_source(parts: Path) -> None:
    config = _config(parts)
    assert isinstance(config.inner, FolderSourceConfig) and config.overflow == config.inner.overflow
    assert resolve_paths(config, base=Path("/base")).inner == config.inner  # already absolute
    relative = ProcessSourceConfig.model_validate({"inner": {"kind": "folder", "path": "imgs"}})
    resolved = resolve_paths(relative, base=Path("/base")).inner
    assert isinstance(resolved, FolderSourceConfig) and resolved.path == Path("/base/imgs")
    with pytest.raises(ValidationError, match="restart_after_s"):
        _config(parts, restart_after_s=0.5)
    with pytest.raises(ValidationError):
        ProcessSourceConfig.model_validate({"inner": {"kind": "process", "inner": {"kind": "folder", "path": "x"}}})


def test_open_source_builds_a_process_source_for_kind_process(parts: Path) -> None:
    source = open_source(_config(parts), source_id="cam")
    assert isinstance(source, ProcessSource)
    with source:
        assert isinstance(source.read(timeout_s=1.0), Frame)


def test_a_slow_source_gets_plain_timeouts_never_the_watchdog_or_a_restart(parts: Path) -> None:
    config = _config(parts, inner={"kind": "folder", "path": str(parts), "loop": True, "fps": 4.0})
    with ProcessSource(config, source_id="cam", build=open_source) as source:
        items = [source.read(timeout_s=0.1) for _ in range(12)] + [source.read(timeout_s=5.0) for _ in range(3)]
        stats = source.stats.snapshot()
    frames = [i for i in items if isinstance(i, Frame)]
    faults = [i for i in items if isinstance(i, FrameFault)]
    assert len(frames) >= 4 and faults and {f.reason for f in faults} == {"timeout"}
    assert all("watchdog" not in f.detail for f in faults)
    assert (stats["watchdog"], stats["restarts"], stats["losses"]) == (0, 0, 0)
    _ids_strictly_increase(items)  # type: ignore[arg-type]


def test_failing_respawns_back_off_capped_then_recover(parts: Path) -> None:
    config = _config(parts, backoff={"initial_s": 0.05, "max_s": 0.2})
    away = parts.with_name("away")
    with ProcessSource(config, source_id="cam", build=open_source) as source:
        _until_frames(source, 2)
        parts.rename(away)  # every respawn now fails at start-up (DatasetError in the child)
        os.kill(source.child_pid or 0, signal.SIGKILL)
        outage = []
        while source.stats.restarts < 4:  # three failed respawns, then a fourth under way (the test timeout bounds it)
            outage.append(source.read(timeout_s=0.5))
            assert source.state in (SourceState.FAILED, SourceState.OPENING)
        away.rename(parts)
        after = _until_frames(source, 2)
    assert all(isinstance(i, FrameFault) for i in outage)
    assert {i.reason for i in outage if isinstance(i, FrameFault)} == {"disconnected"}
    scheduled = [
        float(c.reason.rsplit(RESPAWN_IN, 1)[1].split()[0])
        for c in source.lifecycle.history
        if c.new == SourceState.FAILED
    ]
    # The healthy child's loss: initial_s; each failed respawn: times 2, capped at max_s.
    assert len(scheduled) >= 4, scheduled
    assert scheduled == [0.05, 0.1, 0.2] + [0.2] * (len(scheduled) - 3)
    assert isinstance(after[-1], Frame)


def test_a_source_builder_that_cannot_pickle_is_a_config_error(parts: Path) -> None:
    def local_builder(config: InnerSourceConfig, /, *, source_id: str) -> FrameSource:
        return open_source(config, source_id=source_id)

    source = ProcessSource(_config(parts), source_id="cam", build=local_builder)
    with pytest.raises(ConfigError, match="module-level function"), source:
        pass
    assert source.state == SourceState.CLOSED


def _in_dev_shm(name: str) -> bool:
    return Path("/dev/shm", name.lstrip("/")).exists()


@pytest.mark.parametrize(
    ("slot_mb", "shape"),
    [
        (32, (48, 64)),  # the default: pixels through the shared-memory slot
        (0, (48, 64)),  # slot off: pixels through the pipe
        (1, (1024, 1100)),  # a frame larger than the slot falls back to the pipe
    ],
)
def test_frames_cross_by_slot_or_pipe_unchanged_and_close_unlinks_the_slot(
    tmp_path: Path, slot_mb: int, shape: tuple[int, int]
) -> None:
    root = tmp_path / "parts"
    (root / "good").mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(
            str(root / "good" / f"p{i}.png"),
            ((np.arange(shape[0] * shape[1]).reshape(shape) * (i + 3)) % 253).astype(np.uint8),
        )
    config = _config(root, shm_slot_mb=slot_mb)
    with open_source(config.inner, source_id="cam") as local:
        expected = [local.read(timeout_s=1.0) for _ in range(5)]
    with ProcessSource(config, source_id="cam", build=open_source) as source:
        slot = source.slot_name
        assert (slot is not None) == bool(slot_mb) and (slot is None or _in_dev_shm(slot))
        frames = [source.read(timeout_s=1.0) for _ in range(5)]
    assert source.slot_name is None and (slot is None or not _in_dev_shm(slot))  # unlinked at close
    for got, want in zip(frames, expected, strict=True):
        assert isinstance(got, Frame) and isinstance(want, Frame), (got, want)
        assert np.array_equal(got.image, want.image) and not got.image.flags.writeable


def test_without_room_in_dev_shm_frames_go_through_the_pipe(
    parts: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = os.statvfs
    small = os.statvfs_result((4096, 4096, 256, 100, 100, 0, 0, 0, 0, 255))  # 400 KB free
    monkeypatch.setattr("vinspect.camera.process.os.statvfs", lambda p: small if p == "/dev/shm" else real(p))
    config = _config(parts)
    with open_source(config.inner, source_id="cam") as local:
        expected = [local.read(timeout_s=1.0) for _ in range(3)]
    with ProcessSource(config, source_id="cam", build=open_source) as source:
        assert source.slot_name is None
        frames = [source.read(timeout_s=1.0) for _ in range(3)]
    assert "frames go through the pipe" in caplog.text
    for got, want in zip(frames, expected, strict=True):
        assert isinstance(got, Frame) and isinstance(want, Frame) and np.array_equal(got.image, want.image)
