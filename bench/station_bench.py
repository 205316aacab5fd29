"""Station benchmark (issue 4): end-to-end latency, throughput and a soak on a synthetic source.

Modes (each writes ``bench/results/station.json`` with the exact command and the machine):

* ``latency``: a triggered synthetic line at ``--fps`` (default 30 parts/s), REJECT overflow,
  ``--deadline-ms`` 150: per-part latency from frame acquired to signal sent (p50/p99/max),
  deadline misses, overflow rejects, books.
* ``throughput``: the same parts unthrottled (BLOCK, lossless): sustained parts/s.
* ``soak``: ``--minutes`` at ``--fps``; resident memory, threads and open files sampled every
  ``--sample-s``; growth measured after a warm-up (the first 20 % of the run, at least 30 s).
* ``genicam``: the path users run (issue 21): the ``genicam+replay`` source on genicam's simulated
  producer ``viky.cti`` at ``--fps`` (256x256 Mono8, REJECT overflow), pixels replayed from
  ``--replay`` (e.g. the demo's ``holdout``), with ``--bundle`` (required). ``--acquisition
  process`` (default) hosts it in the supervised child process, ``--acquisition thread`` in the
  station process. Reports frame -> signal and each stage (p50/p99), the model's own ORT time
  measured alone in the same process before the station starts (``model_alone_ms``) and the
  ratio of the two p99s, ``captured_to_admit_ms`` (the frame's ``captured_at`` at the GenTL fetch
  to the pipeline's clock start: replay decode, hand-over, queue; outside frame -> signal),
  deadline misses, the reject share and peak resident memory (station, and the child);
  ``--models 2`` keeps a second copy of the bundle loaded, as a hot-swap candidate would be.

The model is the tiny ONNX bundle the tests build (score = mean pixel / 255, thresholds set so
the synthetic parts land in every verdict: ~75 % PASS, ~10 % REVIEW, ~15 % FAIL, each FAIL and
REVIEW opening an NCR with evidence); all sinks are on: JSONL, and the SQLite store with
evidence PNGs when ``vinspect.store`` imports. The signaller is the log signaller (logging off).

    python bench/station_bench.py latency --seconds 30
    python bench/station_bench.py throughput --parts 3000
    python bench/station_bench.py soak --minutes 10
    python bench/station_bench.py genicam --seconds 25 --bundle demo-data/bundle --replay demo-data/holdout
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import write_tiny_bundle  # noqa: E402  (the tests' ONNX builder)

from vinspect.camera.base import FrameSource, OverflowPolicy  # noqa: E402
from vinspect.camera.synthetic import SyntheticSource, SyntheticSourceConfig  # noqa: E402
from vinspect.pipeline.fakes import write_golden_samples  # noqa: E402
from vinspect.pipeline.gating import gate_bundle, policy_for  # noqa: E402
from vinspect.pipeline.judge import judge_image  # noqa: E402
from vinspect.pipeline.part_numbers import PartNumbers  # noqa: E402
from vinspect.pipeline.record import InspectionSink, JsonlSink  # noqa: E402
from vinspect.pipeline.runner import InspectionPipeline, PipelineConfig  # noqa: E402
from vinspect.pipeline.signals import LogSignaller  # noqa: E402
from vinspect.pipeline.swap import Judge  # noqa: E402
from vinspect.types import Frame  # noqa: E402

PART_MARK = True  # --no-part-mark: run without the admitted part-number mark (issue 16), for comparison
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
    from vinspect.store.audit_key import ANCHOR_FILE, attach, flush_anchors, open_keyring

    attach(engine, open_keyring(work), anchor_path=work / ANCHOR_FILE)  # signed audit rows, as `vinspect run`
    # after the sink's last commit, write the anchor now: the writer thread must not write it while
    # the temporary folder is being removed ("Directory not empty")
    stack.callback(flush_anchors)
    defaults = NcrDefaults(part_number="B-1", part_revision="A", part_name="bench disc", requirement_ref="DWG-1",
                           site_id="bench", line_id="l1")
    sinks.append(stack.enter_context(StoreSink(engine, EvidenceStore(work / "evidence"), defaults=defaults)))
    return sinks, ["jsonl", "store+evidence (SQLite WAL FULL)"]


def run_station(work: Path, *, fps: float | None, count: int | None, seconds: float | None,
                deadline_ms: float, sampler: Any = None, source: FrameSource | None = None,
                judge: Judge | None = None) -> dict[str, Any]:
    overflow = OverflowPolicy.REJECT if fps else OverflowPolicy.BLOCK
    if source is None:
        source = SyntheticSource(SyntheticSourceConfig(fps=fps, count=count, size_px=256, defect_rate=0.2,
                                                       distinct_parts=64, overflow=overflow), source_id="bench")
    config = PipelineConfig(station_id="bench", deadline_ms=deadline_ms, overflow=overflow, queue_size=8,
                            degraded_after_faults=10_000, critical_sinks=frozenset({"store"}))
    with ExitStack() as stack:
        sinks, sink_names = build_sinks(work, stack)
        numbers = stack.enter_context(PartNumbers(work / "admitted.mark", start=0)) if PART_MARK else None
        pipe = InspectionPipeline(source, judge=judge or build_judge(work), signaller=LogSignaller(), sinks=sinks,
                                  config=config, on_admit=None if numbers is None else numbers.admit)
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


class StampedSource:
    """A source that notes, per frame, the delay from its ``captured_at`` (the GenTL fetch) to the
    moment the pipeline gets it: the part of the path the pipeline's own clock does not see."""

    def __init__(self, inner: FrameSource) -> None:
        self.inner, self.source_id, self.delays_ms = inner, inner.source_id, []

    @property
    def state(self) -> Any:
        return self.inner.state

    def __enter__(self) -> StampedSource:
        self.inner.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.inner.__exit__(*exc)

    def read(self, *, timeout_s: float) -> Any:
        item = self.inner.read(timeout_s=timeout_s)
        if isinstance(item, Frame):
            self.delays_ms.append((datetime.now(UTC) - item.captured_at).total_seconds() * 1e3)
        return item


def _pcts(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    arr = np.asarray(values)
    return {"n": len(values), "p50_ms": round(float(np.percentile(arr, 50)), 3),
            "p99_ms": round(float(np.percentile(arr, 99)), 3), "max_ms": round(float(arr.max()), 3)}


def model_alone(judge: Judge, replay: Path, *, n: int = 300) -> dict[str, float]:
    """The model's own ORT time (the ``infer`` stage) on replayed images, nothing else running."""
    from vinspect.cli.camera import dataset_library

    assert judge.bundle is not None
    library = dataset_library()
    images = [library.read(entry.path) for entry in list(library.index(replay))[:64]]
    for image in images[:10]:  # warm-up
        judge_image(image, bundle=judge.bundle, policy=judge.policy)
    infer = []
    for i in range(n):
        j = judge_image(images[i % len(images)], bundle=judge.bundle, policy=judge.policy)
        infer.append((j.inferred_ns - j.preprocessed_ns) / 1e6)
    return _pcts(infer)


def run_genicam(work: Path, *, replay: Path, acquisition: str, fps: float, seconds: float,
                deadline_ms: float, models: int = 1) -> dict[str, Any]:
    """The user's path: genicam+replay on viky.cti, in a child process or a thread (see the module doc)."""
    from vinspect.camera.config import OverlaySourceConfig
    from vinspect.camera.factory import open_source
    from vinspect.camera.process_config import ProcessSourceConfig
    from vinspect.cli.camera import dataset_library

    assert BUNDLE is not None, "the genicam mode needs --bundle"
    judge = build_judge(work)
    candidates = [build_judge(work) for _ in range(models - 1)]  # loaded, as a hot-swap candidate is
    alone = model_alone(judge, replay)
    inner = OverlaySourceConfig.model_validate(
        {"kind": "genicam+replay", "producers": ["viky.cti"], "device": {"serial_number": "0"},
         "features": {"Width": 256, "Height": 256, "PixelFormat": "Mono8", "AcquisitionFrameRate": fps},
         "replay": str(replay), "loop": True, "overflow": "reject"})
    config = ProcessSourceConfig(inner=inner) if acquisition == "process" else inner
    source = StampedSource(open_source(config, source_id="bench", library=dataset_library(),
                                       library_factory=dataset_library))
    proc = psutil.Process()
    rss: dict[str, float] = {}

    def sample(pipe: InspectionPipeline) -> None:
        rss["station_mb"] = max(rss.get("station_mb", 0.0), proc.memory_info().rss / 2**20)
        children = proc.children(recursive=True)
        if children:
            child_mb = sum(c.memory_info().rss for c in children) / 2**20
            rss["acquisition_child_mb"] = max(rss.get("acquisition_child_mb", 0.0), child_mb)

    result = run_station(work, fps=fps, count=None, seconds=seconds, deadline_ms=deadline_ms, sampler=sample,
                         source=source, judge=judge)
    books = result["books"]
    rejects = books["failed_defect"] + sum(books["failed_fault"].values()) + books["review"]
    e2e_p99 = result["latency_ms"]["p99_ms"]
    return result | {"acquisition": acquisition, "replay": str(replay), "models_loaded": 1 + len(candidates),
                     "model_alone_ms": alone,
                     "e2e_p99_over_model_alone_p99": round(e2e_p99 / alone["p99_ms"], 2),
                     "captured_to_admit_ms": _pcts(source.delays_ms),
                     "reject_share": round(rejects / max(books["triggers"], 1), 3),
                     "peak_rss_mb": {k: round(v, 1) for k, v in rss.items()}}


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
    parser.add_argument("mode", choices=["latency", "throughput", "soak", "genicam"])
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, default=30.0, help="latency mode duration")
    parser.add_argument("--parts", type=int, default=3000, help="throughput mode part count")
    parser.add_argument("--minutes", type=float, default=10.0, help="soak duration")
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--deadline-ms", type=float, default=150.0)
    parser.add_argument("--switch-interval-ms", type=float, default=None,
                        help="sys.setswitchinterval for the run (Python default 5 ms)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "station.json")
    parser.add_argument("--no-part-mark", action="store_true",
                        help="without the admitted part-number mark vinspect run keeps (issue 16), to compare")
    parser.add_argument("--bundle", type=Path, default=None, help="trained bundle dir (default: the tiny test graph)")
    parser.add_argument("--replay", type=Path, default=None, help="genicam mode: dataset folder of replayed pixels")
    parser.add_argument("--acquisition", choices=["process", "thread"], default="process",
                        help="genicam mode: acquisition in a child process (default) or a station thread")
    parser.add_argument("--models", type=int, choices=[1, 2], default=1,
                        help="genicam mode: 2 keeps a second copy of the bundle loaded (a hot-swap candidate)")
    args = parser.parse_args()
    global BUNDLE, PART_MARK
    BUNDLE = args.bundle
    PART_MARK = not args.no_part_mark
    if args.switch_interval_ms is not None:
        sys.setswitchinterval(args.switch_interval_ms / 1e3)
    with tempfile.TemporaryDirectory(prefix="vinspect-bench-") as tmp:
        work = Path(tmp)
        if args.mode == "latency":
            result = run_station(work, fps=args.fps, count=None, seconds=args.seconds, deadline_ms=args.deadline_ms)
        elif args.mode == "genicam":
            if args.bundle is None or args.replay is None:
                parser.error("the genicam mode needs --bundle and --replay")
            result = run_genicam(work, replay=args.replay, acquisition=args.acquisition, fps=args.fps,
                                 seconds=args.seconds, deadline_ms=args.deadline_ms, models=args.models)
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
    key = args.mode if args.mode != "genicam" else f"genicam_{args.acquisition}_{args.replay.name}"
    key += f"_{args.models}_models" if args.mode == "genicam" and args.models > 1 else ""
    existing[key] = result
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(existing, indent=1, default=str) + "\n")
    print(json.dumps({k: result[k] for k in ("mode", "parts", "parts_per_s", "latency_ms", "deadline_misses",
                                             "overflow_rejects", "books_reconciled")} | result.get("soak", {})
                     | {k: result[k] for k in ("stages_ms", "model_alone_ms", "e2e_p99_over_model_alone_p99",
                                               "captured_to_admit_ms", "reject_share", "peak_rss_mb")
                        if k in result},
                     default=str))


if __name__ == "__main__":
    main()
