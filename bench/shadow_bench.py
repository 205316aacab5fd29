"""Shadow mode's cost on the active verdict (issue 20 target: p99 at 30 parts/s at most +10 %).

    python bench/shadow_bench.py --bundle demo-data/bundle --replay demo-data/holdout [--rounds 3] [--parts 600]

Runs the user's path, ``vinspect run`` on the GenICam simulator (``viky.cti``) with replayed parts
in the acquisition child process at ``--fps`` (default 30), the store and JSONL sinks on, and
alternates rounds **without** and **with** a shadow sink judging a second copy of the bundle
(installed as version ``shadow``). Frame -> signal p50/p99 come from each run's closing JSON;
the shadow's own statistics (parts judged, dropped busy, late) from its ``stats.json``. Writes
bench/results/shadow.json with the command and the load average: on a shared machine the
rounds are interleaved so both arms see the same load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testkit.stations import approve_station
from vinspect.models.registry import ModelRegistry

RESULTS = Path(__file__).resolve().parent / "results"


def _station(data: Path, replay: Path, *, fps: float, shadow: bool) -> Path:
    sinks = [
        "  - {kind: jsonl, path: inspections.jsonl}",
        "  - kind: store",
        "    product: {part_number: P1, part_revision: A, part_name: Part, requirement_ref: R, site_id: s, line_id: l}",
    ]
    if shadow:
        sinks.append("  - {kind: shadow, model: {name: bench, version: shadow}}")
    text = "\n".join(
        [
            "station_id: shadow-bench",
            "deadline_ms: 150",
            "source:",
            "  kind: process",
            "  inner:",
            "    kind: genicam+replay",
            "    producers: [viky.cti]",
            "    device: {serial_number: '0'}",
            f"    features: {{Width: 256, Height: 256, PixelFormat: Mono8, AcquisitionFrameRate: {fps}}}",
            f"    replay: {replay}",
            "    loop: true",
            "    overflow: reject",
            "model: {name: bench, version: active}",
            "signal: {kind: log}",
            "sinks:",
            *sinks,
            "",
        ]
    )
    path = data / ("with.yaml" if shadow else "without.yaml")
    path.write_text(text)
    approve_station(path, data, reason="shadow benchmark")  # a store-backed station runs an approved file only
    return path


def _install(data: Path, bundle: Path) -> None:
    work = data.parent / "copies"
    for version in ("1", "shadow"):
        copy = work / version
        shutil.copytree(bundle, copy)
        manifest = json.loads((copy / "manifest.json").read_text())
        manifest["name"], manifest["version"] = "bench", version
        (copy / "manifest.json").write_text(json.dumps(manifest))
        # straight into the registry: the bench measures latency, not the activation rules
        ModelRegistry(data / "models").install(copy, activate=version == "1")


def _run(data: Path, station: Path, parts: int) -> dict[str, Any]:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vinspect",
            "--log-level",
            "ERROR",
            "run",
            "--station",
            str(station),
            "--data-dir",
            str(data),
            "--max-parts",
            str(parts),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"vinspect run exited {proc.returncode}: {proc.stderr[-2000:]}")
    closing = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "p50_ms": closing["latency_ms"]["p50_ms"],
        "p99_ms": closing["latency_ms"]["p99_ms"],
        "n": closing["latency_ms"]["n"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--replay", type=Path, required=True, help="folder of images replayed by the simulator")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--parts", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vinspect-shadow-bench-") as tmp:
        data = Path(tmp) / "station"
        data.mkdir()
        _install(data, args.bundle.resolve())
        without = _station(data, args.replay.resolve(), fps=args.fps, shadow=False)
        with_shadow = _station(data, args.replay.resolve(), fps=args.fps, shadow=True)
        rounds: list[dict[str, Any]] = []
        for _ in range(args.rounds):
            a = _run(data, without, args.parts)
            b = _run(data, with_shadow, args.parts)
            stats = json.loads((data / "shadow" / "bench@shadow" / "stats.json").read_text())
            rounds.append(
                {
                    "without": a,
                    "with_shadow": b,
                    "shadow_parts": stats["parts"],
                    "shadow_dropped_busy": stats["dropped_busy"],
                    "shadow_late": stats["late"],
                }
            )
    p99_without = statistics.median(r["without"]["p99_ms"] for r in rounds)
    p99_with = statistics.median(r["with_shadow"]["p99_ms"] for r in rounds)
    result = {
        "command": "python " + " ".join(sys.argv),
        "fps": args.fps,
        "parts_per_run": args.parts,
        "load_average_at_end": os.getloadavg(),
        "rounds": rounds,
        "median_p99_without_ms": p99_without,
        "median_p99_with_shadow_ms": p99_with,
        "p99_ratio": p99_with / p99_without,
        "target_ratio": 1.10,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "shadow.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
