"""FolderSource and ReplaySource: order, labels, part ids, loop, pacing (issue #3)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from vinspect.camera.base import SourceState
from vinspect.camera.clock import ManualClock
from vinspect.camera.config import FolderSourceConfig, ReplaySourceConfig
from vinspect.camera.folder import FolderSource
from vinspect.camera.replay import ReplaySource
from vinspect.errors import ConfigError
from vinspect.types import Frame, FrameFault

MAGNETIC_TILE = Path("/work/shared/datasets/magnetic-tile")


@pytest.fixture()
def parts(tmp_path: Path) -> Path:
    """Class folders: good/{a,b,c}.png (grey) and scratch/d.png (colour)."""
    root = tmp_path / "parts"
    for label, stems in (("good", "abc"), ("scratch", "d")):
        (root / label).mkdir(parents=True)
        for i, stem in enumerate(stems):
            image = np.full((8, 12), 40 * i, np.uint8) if label == "good" else np.zeros((8, 12, 3), np.uint8)
            cv2.imwrite(str(root / label / f"{stem}.png"), image)
    return root


def _drain(source: FolderSource | ReplaySource, *, limit: int = 100) -> list[Frame]:
    frames = []
    for _ in range(limit):
        item = source.read(timeout_s=1.0)
        if item is None:
            return frames
        assert isinstance(item, Frame), item
        frames.append(item)
    return frames


def test_folder_source_streams_every_image_with_labels_then_exhausts(parts: Path) -> None:
    with FolderSource(FolderSourceConfig(path=parts), source_id="f") as source:
        frames = _drain(source)
        assert source.state == SourceState.EXHAUSTED
        assert source.read(timeout_s=0.1) is None
    assert [(f.part_id, f.label) for f in frames] == [("a", "good"), ("b", "good"), ("c", "good"), ("d", "scratch")]
    assert [f.frame_id for f in frames] == [1, 2, 3, 4]
    assert {f.origin for f in frames} == {"folder"}
    assert [f.pixel_format for f in frames] == ["Mono8"] * 3 + ["RGB8"]
    assert all(not f.image.flags.writeable for f in frames)
    assert source.state == SourceState.CLOSED


def test_folder_source_loops_with_increasing_ids(parts: Path) -> None:
    with FolderSource(FolderSourceConfig(path=parts, loop=True), source_id="f") as source:
        frames = _drain(source, limit=10)
    assert [f.frame_id for f in frames] == list(range(1, 11))
    assert [f.part_id for f in frames] == list("abcdabcdab")


def test_folder_source_part_ids_from_csv_by_path_or_name(parts: Path, tmp_path: Path) -> None:
    csv_path = tmp_path / "ids.csv"
    csv_path.write_text("file,part_id\ngood/a.png,P-001\nb.png,P-002\ngood/c.png,P-003\nscratch/d.png,P-004\n")
    config = FolderSourceConfig(path=parts, part_ids_csv=csv_path)
    with FolderSource(config, source_id="f") as source:
        assert [f.part_id for f in _drain(source)] == ["P-001", "P-002", "P-003", "P-004"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("file,part_id\ngood/a.png,P-1\n", r"3 image\(s\) have no part_id"),
        ("name,part\na.png,P-1\n", "expected columns file,part_id"),
        ("file,part_id\na.png,P-1\na.png,P-2\n", "listed twice"),
        ("file,part_id\na.png,\n", "empty file or part_id"),
    ],
)
def test_folder_source_bad_part_id_csv_fails_at_open(parts: Path, tmp_path: Path, text: str, message: str) -> None:
    csv_path = tmp_path / "ids.csv"
    csv_path.write_text(text)
    source = FolderSource(FolderSourceConfig(path=parts, part_ids_csv=csv_path), source_id="f")
    with pytest.raises(ConfigError, match=message), source:
        pass
    assert source.state == SourceState.CLOSED


def test_folder_source_keeps_an_absolute_schedule_at_the_requested_rate(parts: Path) -> None:
    clock = ManualClock()
    config = FolderSourceConfig(path=parts, fps=40.0, loop=True)
    with FolderSource(config, source_id="f", clock=clock) as source:
        start = clock.monotonic()
        frames = [source.read(timeout_s=1.0) for _ in range(9)]
    assert all(isinstance(f, Frame) for f in frames)
    stamps = [f.acquired_ns for f in frames if isinstance(f, Frame)]
    assert stamps == [round((start + k / 40.0) * 1e9) for k in range(9)]


def test_folder_source_with_a_late_reader_restarts_its_schedule_instead_of_bursting(parts: Path) -> None:
    clock = ManualClock()
    with FolderSource(FolderSourceConfig(path=parts, fps=10.0, loop=True), source_id="f", clock=clock) as source:
        source.read(timeout_s=1.0)
        clock.advance(0.35)  # the reader stalled for 3.5 frame periods
        source.read(timeout_s=1.0)
        clock.sleeps.clear()
        source.read(timeout_s=1.0)
    assert clock.sleeps == [pytest.approx(0.1)]  # one period after the late frame, not a burst


def test_folder_source_returns_timeout_fault_when_next_frame_is_not_due(parts: Path) -> None:
    clock = ManualClock()
    config = FolderSourceConfig(path=parts, fps=2.0)
    with FolderSource(config, source_id="f", clock=clock) as source:
        assert isinstance(source.read(timeout_s=0.1), Frame)
        fault = source.read(timeout_s=0.05)
        assert isinstance(fault, FrameFault)
        assert fault.reason == "timeout"
        assert clock.sleeps == [0.05]  # waited out the read's timeout, not the 0.5 s to the next frame
        assert source.stats.timeouts == 1


def test_folder_source_skips_and_counts_undecodable_images(parts: Path) -> None:
    (parts / "good" / "broken.png").write_bytes(b"\x89PNG not really")
    with FolderSource(FolderSourceConfig(path=parts), source_id="f") as source:
        frames = _drain(source)
        assert len(frames) == 4
        assert source.stats.decode_errors == 1


def test_replay_source_without_manifest_marks_frames_replay(parts: Path) -> None:
    with ReplaySource(ReplaySourceConfig(path=parts), source_id="r") as source:
        frames = _drain(source)
    assert {f.origin for f in frames} == {"replay"}
    assert [f.label for f in frames] == ["good", "good", "good", "scratch"]


def test_replay_source_speed_needs_a_capture_manifest(parts: Path) -> None:
    source = ReplaySource(ReplaySourceConfig(path=parts, speed=2.0), source_id="r")
    with pytest.raises(ConfigError, match=r"capture\.csv"), source:
        pass


@pytest.mark.skipif(not MAGNETIC_TILE.is_dir(), reason="shared magnetic-tile dataset not present")
def test_folder_source_reads_the_magnetic_tile_dataset() -> None:
    with FolderSource(FolderSourceConfig(path=MAGNETIC_TILE), source_id="mt") as source:
        frames = [source.read(timeout_s=5.0) for _ in range(3)]
    assert all(isinstance(f, Frame) and f.label for f in frames)
