"""Station benchmark (issue 4): end-to-end latency, throughput and a soak on a synthetic source.

Modes (each writes ``bench/results/station.json`` with the exact command and the machine):

* ``latency``: a triggered synthetic line at ``--fps`` (default 30 parts/s), REJECT overflow,
  ``--deadline-ms`` 150: per-part latency from frame acquired to signal sent (p50/p99/max),
  deadline misses, overflow rejects, books.
* ``throughput``: the same parts unthrottled (BLOCK, lossless): sustained parts/s.
* ``soak``: ``--minutes`` at ``--fps``; resident memory, threads and open files sampled every
  ``--sample-s``; growth measured after a warm-up (the first 20 % of the run, at least 30 s).

The model is the tiny ONNX bundle the tests build (score = mean pixel / 255, thresholds set so
the synthetic parts land in every verdict: ~75 % PASS, ~10 % REVIEW, ~15 % FAIL, each FAIL and
REVIEW opening an NCR with evidence); all sinks are on: JSONL, and the SQLite store with
evidence PNGs when ``vinspect.store`` imports. The signaller is the log signaller (logging off).

    python bench/station_bench.py latency --seconds 30
    python bench/station_bench.py throughput --parts 3000
    python bench/station_bench.py soak --minutes 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import write_tiny_bundle  # noqa: E402  (the tests' ONNX builder)

from vinspect.camera.base import OverflowPolicy  # noqa: E402
from vinspect.camera.synthetic import SyntheticSource, SyntheticSourceConfig  # noqa: E402
from vinspect.pipeline.fakes import write_golden_samples  # noqa: E402
from vinspect.pipeline.gating import gate_bundle, policy_for  # noqa: E402
from vinspect.pipeline.record import InspectionSink, JsonlSink  # noqa: E402
from vinspect.pipeline.runner import InspectionPipeline, PipelineConfig  # noqa: E402
from vinspect.pipeline.signals import LogSignaller  # noqa: E402
from vinspect.pipeline.swap import Judge  # noqa: E402

BUNDLE: Path | None = None  # --bundle: a trained bundle (e.g. the demo's) instead of the tiny graph


def build_judge(work: Path) -> Judge:
    if BUNDLE is not None:
        gate = gate_bundle(BUNDLE)
        assert gate.bundle is not None, gate.reason
        return Judge(bundle=gate.bundle, policy=policy_for(gate.bundle), unavailable_reason=gate.reason)
    bundle_dir = write_tiny_bundle(work / "bundle", fail_at=0.32, review_at=0.313)  # ~15 % FAIL, ~10 % REVIEW
    write_golden_samples(bundle_dir, [("good", np.full((20, 20), 50, np.uint8), "PASS", 50 / 255),
                                      ("bad", np.full((20, 20), 200, np.uint8), "FAIL", 200 / 255)])
    gate = gate_bundle(bundle_dir)
    assert gate.bundle is not None, gate.reason
    return Judge(bundle=gate.bundle, policy=policy_for(gate.bundle), unavailable_reason=gate.reason)


def build_sinks(work: Path, stack: ExitStack) -> tuple[list[InspectionSink], list[str]]:
    sinks: list[InspectionSink] = [stack.enter_context(JsonlSink(work / "inspections.jsonl"))]
    try:
        from vinspect.store import EvidenceStore, NcrDefaults, StoreSink, make_engine, upgrade
    except ImportError as exc:
        return sinks, [f"jsonl (store unavailable: {exc})"]
    engine = make_engine(f"sqlite:///{work / 'vinspect.db'}")
    stack.callback(engine.dispose)
    upgrade(engine)
    from vinspect.store.audit_key import ANCHOR_FILE, attach, open_keyring

    attach(engine, open_keyring(work), anchor_path=work / ANCHOR_FILE)  # signed audit rows, as `vinspect run`
    defaults = NcrDefaults(part_number="B-1", part_revision="A", part_name="bench disc", requirement_ref="DWG-1",
                           site_id="bench", line_id="l1")
    sinks.append(stack.enter_context(StoreSink(engine, EvidenceStore(work / "evidence"), defaults=defaults)))
    return sinks, ["jsonl", "store+evidence (SQLite WAL FULL)"]


def run_station(work: Path, *, fps: float | None, count: int | None, seconds: float | None,
                deadline_ms: float, sampler: Any = None) -> dict[str, Any]:
    overflow = OverflowPolicy.REJECT if fps else OverflowPolicy.BLOCK
    source = SyntheticSource(SyntheticSourceConfig(fps=fps, count=count, size_px=256, defect_rate=0.2,
                                                   distinct_parts=64, overflow=overflow), source_id="bench")
    config = PipelineConfig(station_id="bench", deadline_ms=deadline_ms, overflow=overflow, queue_size=8,
                            degraded_after_faults=10_000, critical_sinks=frozenset({"store"}))
    with ExitStack() as stack:
        sinks, sink_names = build_sinks(work, stack)
        pipe = InspectionPipeline(source, judge=build_judge(work), signaller=LogSignaller(), sinks=sinks,
                                  config=config)
        pipe.books.e2e = type(pipe.books.e2e)(size=10_000_000)  # keep every sample for the percentiles
        started = time.perf_counter()
        pipe.start()
        end = None if seconds is None else time.monotonic() + seconds
        while not pipe.wait(1.0 if sampler else 0.1):
            if sampler:
                sampler(pipe)
            if end is not None and time.monotonic() >= end:
                break
        pipe.stop()
        elapsed = time.perf_counter() - started
    status = pipe.status().to_dict()
    books = status["books"]
    return {"elapsed_s": round(elapsed, 3), "parts": books["triggers"],
            "parts_per_s": round(books["triggers"] / elapsed, 1), "latency_ms": status["latency_ms"],
            "stages_ms": status["stages_ms"], "deadline_misses": books["failed_fault"].get("late", 0),
            "overflow_rejects": books["failed_fault"].get("overflow", 0), "books": books,
            "books_reconciled": books["discrepancy"] == 0, "extras": status["extras"], "sinks": sink_names}


class Sampler:
    def __init__(self, period_s: float) -> None:
        self.proc, self.period_s, self.next, self.samples = psutil.Process(), period_s, 0.0, []

    def __call__(self, pipe: InspectionPipeline) -> None:
        now = time.monotonic()
        if now < self.next:
            return
        self.next = now + self.period_s
        books = pipe.books.books()
        self.samples.append({"t_s": now, "rss_mb": self.proc.memory_info().rss / 2**20,
                             "threads": self.proc.num_threads(), "fds": self.proc.num_fds(),
                             "parts": books.triggers, "discrepancy": books.discrepancy})

    def summary(self) -> dict[str, Any]:
        t0 = self.samples[0]["t_s"]
        warm_s = max(30.0, 0.2 * (self.samples[-1]["t_s"] - t0))
        warm = [s for s in self.samples if s["t_s"] - t0 >= warm_s] or self.samples[-1:]
        return {"warmup_s": warm_s, "rss_mb_after_warmup": round(warm[0]["rss_mb"], 1),
                "rss_mb_end": round(warm[-1]["rss_mb"], 1),
                "rss_growth_mb": round(warm[-1]["rss_mb"] - warm[0]["rss_mb"], 1),
                "threads": sorted({s["threads"] for s in warm}), "fds": sorted({s["fds"] for s in warm}),
                "max_in_flight": max(s["discrepancy"] for s in self.samples), "samples": len(self.samples)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["latency", "throughput", "soak"])
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, default=30.0, help="latency mode duration")
    parser.add_argument("--parts", type=int, default=3000, help="throughput mode part count")
    parser.add_argument("--minutes", type=float, default=10.0, help="soak duration")
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--deadline-ms", type=float, default=150.0)
    parser.add_argument("--switch-interval-ms", type=float, default=None,
                        help="sys.setswitchinterval for the run (Python default 5 ms)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "station.json")
    parser.add_argument("--bundle", type=Path, default=None, help="trained bundle dir (default: the tiny test graph)")
    args = parser.parse_args()
    global BUNDLE
    BUNDLE = args.bundle
    if args.switch_interval_ms is not None:
        sys.setswitchinterval(args.switch_interval_ms / 1e3)
    with tempfile.TemporaryDirectory(prefix="vinspect-bench-") as tmp:
        work = Path(tmp)
        if args.mode == "latency":
            result = run_station(work, fps=args.fps, count=None, seconds=args.seconds, deadline_ms=args.deadline_ms)
        elif args.mode == "throughput":
            result = run_station(work, fps=None, count=args.parts, seconds=None, deadline_ms=args.deadline_ms)
        else:
            sampler = Sampler(args.sample_s)
            result = run_station(work, fps=args.fps, count=None, seconds=args.minutes * 60,
                                 deadline_ms=args.deadline_ms, sampler=sampler)
            result["soak"] = sampler.summary()
    result |= {"mode": args.mode, "command": " ".join(["python", *sys.argv]),
               "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                           "load_avg_at_end": os.getloadavg(),
                           "switch_interval_ms": sys.getswitchinterval() * 1e3}}
    existing = json.loads(args.out.read_text()) if args.out.is_file() else {}
    existing[args.mode] = result
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(existing, indent=1, default=str) + "\n")
    print(json.dumps({k: result[k] for k in ("mode", "parts", "parts_per_s", "latency_ms", "deadline_misses",
                                             "overflow_rejects", "books_reconciled")} | result.get("soak", {}),
                     default=str))


if __name__ == "__main__":
    main()
