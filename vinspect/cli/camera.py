"""``vinspect cameras`` and ``vinspect capture``.

``cameras`` lists every device the GenTL producers offer, with its key features.
``capture --station FILE --out DIR --count N`` records N frames from the station's source into
``DIR/good/`` (a class-folder dataset) with a progress bar, plus ``DIR/capture.csv``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vinspect.camera.capture import capture_frames
from vinspect.camera.config import GenICamSettings, load_source_config
from vinspect.camera.factory import open_source
from vinspect.camera.genicam import describe_devices
from vinspect.camera.inventory import format_table
from vinspect.errors import ConfigError

__all__ = ["register"]


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``cameras`` and ``capture`` commands."""
    cameras = sub.add_parser("cameras", help="list GenTL devices and their key features")
    cameras.add_argument(
        "--producer",
        type=Path,
        action="append",
        default=[],
        metavar="CTI",
        help="GenTL producer (repeatable); default: the station's, else genicam's viky.cti",
    )
    cameras.add_argument("--station", type=Path, help="use the producers of this station file's source")
    cameras.set_defaults(handler=_cameras)
    capture = sub.add_parser("capture", help="record training images from the station's camera")
    capture.add_argument("--station", type=Path, required=True, help="station YAML with a source: mapping")
    capture.add_argument("--out", type=Path, required=True, help="dataset folder (images go to OUT/LABEL/)")
    capture.add_argument("--count", type=_positive, required=True, help="images to record")
    capture.add_argument("--label", default="good", help="class folder (default: good)")
    capture.add_argument("--source-id", default="capture", help="source id stamped in the manifest")
    capture.add_argument("--timeout-ms", type=_positive, default=1000, help="per-frame timeout")
    capture.add_argument("--no-progress", action="store_true", help="no progress bar")
    capture.set_defaults(handler=_capture)


def _cameras(args: argparse.Namespace) -> int:
    producers: list[Path] = list(args.producer)
    if not producers and args.station is not None:
        config = load_source_config(args.station)
        if not isinstance(config, GenICamSettings):
            raise ConfigError(f"{args.station}: source.kind is {config.kind!r}, not a GenICam camera")
        producers = list(config.producers)
    sys.stdout.write(format_table(describe_devices(producers)))
    return 0


def _capture(args: argparse.Namespace) -> int:
    config = load_source_config(args.station)
    with open_source(config, source_id=args.source_id) as source:
        summary = capture_frames(
            source,
            out=args.out,
            count=args.count,
            label=args.label,
            timeout_s=args.timeout_ms / 1000,
            progress=not args.no_progress,
        )
    faults = ", ".join(f"{k} {v}" for k, v in sorted(summary.faults.items())) or "none"
    sys.stdout.write(f"saved {summary.saved} of {args.count} images to {summary.out / args.label} (faults: {faults})\n")
    return 0 if summary.saved == args.count else 1
