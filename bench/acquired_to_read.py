"""Where acquired -> read goes on the demo's camera path (issue 21), without the station.

Reads ``--frames`` frames from the ``genicam+replay`` source on viky.cti (256x256 Mono8 at
``--fps``, pixels replayed from ``--replay``) and reports, from each frame's ``acquired_ns`` (the
GenTL fetch), p50/p90/p99 of:

* ``thread``: the source in this process: the time to the read returning (the source's own
  work after the stamp: conversion, buffer handling, replay pixels).
* ``process``: the source in its supervised child process (the station's default): the time in
  the child to its inner read returning, and from there to the parent's read returning (the
  hand-over: slot, wire and the wake-up of the reading thread).

    python bench/acquired_to_read.py thread --replay demo-data/holdout
    python bench/acquired_to_read.py process --replay demo-data/holdout
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vinspect.camera.base import FrameSource  # noqa: E402
from vinspect.camera.config import OverlaySourceConfig, ProcessSourceConfig  # noqa: E402
from vinspect.camera.factory import open_source  # noqa: E402
from vinspect.camera.process import ProcessSource  # noqa: E402
from vinspect.types import Frame  # noqa: E402

CHILD_STAMP = "child-read-ns:"


class ChildStamped:
    """Notes, in the part id, when the inner read returned in the child (the clock is shared)."""

    def __init__(self, inner: FrameSource) -> None:
        self.inner, self.source_id = inner, inner.source_id

    @property
    def state(self) -> Any:
        return self.inner.state

    @property
    def stats(self) -> Any:
        return getattr(self.inner, "stats", None)

    def __enter__(self) -> ChildStamped:
        self.inner.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.inner.__exit__(*exc)

    def read(self, *, timeout_s: float) -> Any:
        item = self.inner.read(timeout_s=timeout_s)
        if isinstance(item, Frame):
            item = dataclasses.replace(item, part_id=f"{CHILD_STAMP}{time.monotonic_ns()}")
        return item


def build_stamped(config: Any, /, *, source_id: str) -> FrameSource:
    """The child's source builder: the factory's source, stamped (module level: it pickles)."""
    return ChildStamped(open_source(config, source_id=source_id))


def _pcts(values: list[float]) -> dict[str, float]:
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {
        "n": len(values),
        "p50_ms": round(float(p50), 3),
        "p90_ms": round(float(p90), 3),
        "p99_ms": round(float(p99), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["thread", "process"])
    parser.add_argument("--replay", type=Path, required=True)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--frames", type=int, default=300)
    args = parser.parse_args()
    inner = OverlaySourceConfig.model_validate(
        {
            "kind": "genicam+replay",
            "producers": ["viky.cti"],
            "device": {"serial_number": "0"},
            "features": {"Width": 256, "Height": 256, "PixelFormat": "Mono8", "AcquisitionFrameRate": args.fps},
            "replay": str(args.replay),
            "loop": True,
            "overflow": "reject",
        }
    )
    source: Any = (
        open_source(inner, source_id="bench")
        if args.mode == "thread"
        else ProcessSource(ProcessSourceConfig(inner=inner), source_id="bench", build=build_stamped)
    )
    to_read, in_child, handover = [], [], []
    with source:
        for i in range(args.frames):
            item = source.read(timeout_s=1.0)
            now = time.monotonic_ns()
            if not isinstance(item, Frame) or item.acquired_ns is None or i < 10:  # the first ten: warm-up
                continue
            to_read.append((now - item.acquired_ns) / 1e6)
            if item.part_id is not None and item.part_id.startswith(CHILD_STAMP):
                child_ns = int(item.part_id.removeprefix(CHILD_STAMP))
                in_child.append((child_ns - item.acquired_ns) / 1e6)
                handover.append((now - child_ns) / 1e6)
    result: dict[str, Any] = {"mode": args.mode, "acquired_to_read": _pcts(to_read)}
    if in_child:
        result |= {"in_child_to_inner_read": _pcts(in_child), "child_read_to_parent_read": _pcts(handover)}
    print(result)


if __name__ == "__main__":
    main()
