"""Frame hand-over cost of ProcessSource: one Mono8 frame (640×480 unless ``--size``), child to parent.

The same looping one-image folder source is read in-process and through a ProcessSource; its
reader returns one cached array (no decoding), so the difference per read is the hand-over:
request, header (camera/wire.py), pixels through the shared-memory slot (or, with
``--slot-mb 0``, as a raw record over the socket), the parent's owned read-only copy.
Prints medians and p99 in microseconds.

    python bench/process_handover.py --frames 3000
    python bench/process_handover.py --frames 300 --size 2448x2048              # 5 MP
    python bench/process_handover.py --frames 300 --size 2448x2048 --slot-mb 0  # 5 MP, pipe
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from vinspect.camera.base import FrameSource
from vinspect.camera.config import FolderSourceConfig, ProcessSourceConfig
from vinspect.camera.factory import open_source
from vinspect.camera.folder import FolderSource
from vinspect.types import Frame

SIZE_ENV = "VINSPECT_HANDOVER_BENCH_SIZE"  # WxH; the environment reaches the spawned child


@functools.cache
def _image() -> npt.NDArray[np.uint8]:
    width, height = (int(v) for v in os.environ.get(SIZE_ENV, "640x480").split("x"))
    image = np.random.default_rng(0).integers(0, 255, (height, width), dtype=np.uint8)
    image.flags.writeable = False
    return image


def cached_read(path: Path) -> npt.NDArray[np.uint8]:
    """One Mono8 array (``VINSPECT_HANDOVER_BENCH_SIZE``, default 640x480), returned for every read."""
    return _image()


def _per_read_us(source: FrameSource, frames: int) -> list[float]:
    times = []
    for _ in range(frames):
        start = time.perf_counter()
        item = source.read(timeout_s=1.0)
        times.append((time.perf_counter() - start) * 1e6)
        assert isinstance(item, Frame) and item.image.shape == _image().shape, item
    return times[len(times) // 10 :]  # drop the warm-up


def _summary(name: str, times: list[float]) -> float:
    median = statistics.median(times)
    p99 = statistics.quantiles(times, n=100)[98]
    print(f"{name:>10}: median {median:7.1f} us  p99 {p99:7.1f} us  ({len(times)} reads)")
    return median


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--size", default="640x480", help="WxH of the Mono8 frame, e.g. 2448x2048 (5 MP)")
    parser.add_argument("--slot-mb", type=int, default=32, help="shm_slot_mb of the ProcessSource (0: the pipe)")
    args = parser.parse_args(argv)
    os.environ[SIZE_ENV] = args.size
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "good").mkdir()
        cv2.imwrite(str(Path(tmp) / "good" / "frame.png"), np.zeros((2, 2), np.uint8))  # indexed, never decoded
        inner = FolderSourceConfig(path=Path(tmp), loop=True)
        with FolderSource(inner, source_id="bench", read=cached_read) as local:
            base = _summary("in-process", _per_read_us(local, args.frames))
        config = ProcessSourceConfig(inner=inner, shm_slot_mb=args.slot_mb)
        with open_source(config, source_id="bench", read=cached_read) as remote:
            child = _summary("child", _per_read_us(remote, args.frames))
    via = "shared-memory slot" if args.slot_mb * 2**20 >= _image().nbytes else "pipe"
    print(f"hand-over overhead per {args.size} Mono8 frame via the {via}: {child - base:.1f} us (median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
