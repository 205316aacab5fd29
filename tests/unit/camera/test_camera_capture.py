"""Recording frames into a dataset folder, replaying the recording, and the capture command."""

from __future__ import annotations

import argparse
import csv
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from vinspect.camera.capture import MANIFEST_NAME, capture_frames
from vinspect.camera.clock import ManualClock
from vinspect.camera.config import FolderSourceConfig, ReplaySourceConfig
from vinspect.camera.factory import open_source
from vinspect.camera.folder import FolderSource, index_folder
from vinspect.camera.replay import ReplaySource
from vinspect.cli.camera import register
from vinspect.dataset import open_dataset, read_image
from vinspect.errors import CameraError
from vinspect.types import Frame


@pytest.fixture()
def parts(tmp_path: Path) -> Path:
    root = tmp_path / "parts"
    (root / "good").mkdir(parents=True)
    for i in range(4):
        image = np.zeros((6, 9, 3), np.uint8)
        image[..., 0] = 50 * i  # red channel marks the image
        cv2.imwrite(str(root / "good" / f"p{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return root


def test_capture_frames_writes_class_folder_dataset_and_manifest(parts: Path, tmp_path: Path) -> None:
    out = tmp_path / "captured"
    with FolderSource(FolderSourceConfig(path=parts, fps=50.0), source_id="cam1") as source:
        summary = capture_frames(source, out=out, count=3, timeout_s=0.05, progress=False)
    assert summary.saved == 3 and not summary.exhausted
    index = open_dataset(out)
    assert index.layout == "classes" and len(index.samples) == 3
    with (out / MANIFEST_NAME).open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["part_id"] for r in rows] == ["p0", "p1", "p2"]
    assert {r["origin"] for r in rows} == {"folder"}  # never passed off as camera pixels
    first = read_image(out / rows[0]["file"])
    assert first[0, 0].tolist() == [0, 0, 0] and read_image(out / rows[1]["file"])[0, 0].tolist() == [50, 0, 0]


def test_capture_frames_reports_an_exhausted_source(parts: Path, tmp_path: Path) -> None:
    with FolderSource(FolderSourceConfig(path=parts), source_id="cam1") as source:
        summary = capture_frames(source, out=tmp_path / "o", count=10, progress=False)
    assert (summary.saved, summary.exhausted) == (4, True)


def test_capture_frames_gives_up_after_consecutive_faults(parts: Path, tmp_path: Path) -> None:
    with (
        FolderSource(FolderSourceConfig(path=parts, fps=0.5), source_id="cam1") as source,
        pytest.raises(CameraError, match="3 faults in a row"),
    ):
        capture_frames(source, out=tmp_path / "o", count=2, timeout_s=0.01, max_consecutive_faults=3, progress=False)


def test_replay_of_a_capture_keeps_order_part_ids_and_recorded_timing(parts: Path, tmp_path: Path) -> None:
    out = tmp_path / "captured"
    with FolderSource(FolderSourceConfig(path=parts, fps=20.0), source_id="cam1") as source:
        capture_frames(source, out=out, count=4, timeout_s=0.2, progress=False)
    with (out / MANIFEST_NAME).open(newline="") as fh:
        recorded = [datetime.fromisoformat(row["captured_at"]) for row in csv.DictReader(fh)]
    clock = ManualClock()
    with ReplaySource(ReplaySourceConfig(path=out, speed=2.0), source_id="r", clock=clock) as replay:
        start = clock.monotonic()
        frames = [replay.read(timeout_s=1.0) for _ in range(4)]
        assert replay.read(timeout_s=0.1) is None
    assert all(isinstance(f, Frame) for f in frames)
    assert [f.part_id for f in frames if isinstance(f, Frame)] == ["p0", "p1", "p2", "p3"]
    assert [f.label for f in frames if isinstance(f, Frame)] == ["good"] * 4
    # Each frame comes at its recorded offset from the first capture, replayed twice as fast.
    offsets = [(f.acquired_ns or 0) / 1e9 - start for f in frames if isinstance(f, Frame)]
    assert offsets == pytest.approx([(at - recorded[0]).total_seconds() / 2 for at in recorded], abs=1e-6)


def test_open_source_folder_kinds_read_through_vinspect_dataset_by_default(parts: Path) -> None:
    with open_source(FolderSourceConfig(path=parts), source_id="f") as source:
        frame = source.read(timeout_s=1.0)
    assert isinstance(source, FolderSource)
    assert isinstance(frame, Frame)
    assert frame.part_id == "p0"


def test_open_source_folder_kinds_use_the_given_reader(parts: Path) -> None:
    def constant(path: Path) -> npt.NDArray[np.uint8]:
        return np.full((4, 4), 7, np.uint8)

    with open_source(FolderSourceConfig(path=parts), source_id="f", read=constant) as source:
        frame = source.read(timeout_s=1.0)
    assert isinstance(frame, Frame)
    assert frame.image.tolist() == [[7] * 4] * 4


def _cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_cli_capture_records_count_images_from_the_station_source(
    parts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    station = tmp_path / "station.yaml"
    station.write_text(f"station_id: s\nsource: {{kind: folder, path: {parts}}}\n")
    args = _cli(["capture", "--station", str(station), "--out", str(tmp_path / "ds"), "--count", "2", "--no-progress"])
    assert args.handler(args) == 0
    assert len(list((tmp_path / "ds" / "good").glob("*.png"))) == 2
    assert "saved 2 of 2 images" in capsys.readouterr().out


def test_cli_capture_rejects_a_non_positive_count(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        _cli(["capture", "--station", "s.yaml", "--out", str(tmp_path), "--count", "0"])


def test_index_folder_indexes_through_vinspect_dataset(parts: Path) -> None:
    assert [e.stem for e in index_folder(parts)] == ["p0", "p1", "p2", "p3"]
