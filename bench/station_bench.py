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
  station process. Reports frame -> signal (from the frame's ``acquired_ns``, stamped when the
  buffer left the producer, in the child for ``process``: hand-over and queue included) and each
  stage (p50/p99: ``wait`` from that stamp to the inspection thread taking the part up, then
  preprocess, infer, decide, signal), ``acquired_to_read_ms`` (that stamp to the station's read
  returning: the hand-over; the replay image is decoded before the camera fetch, so not in it),
  the model's own ORT time measured alone in the same process before the station starts, back to
  back (``model_alone_ms``) and paced at ``--fps`` (``model_alone_paced_ms``: one inference per
  period, idle in between, as at the line), the ratio of frame -> signal p99 to each, deadline
  misses, the reject share and peak resident memory (station, and the child). ``--models 2``
  keeps a second copy of the bundle loaded, as a hot-swap candidate would be. ``--pin CPU`` puts
  the verdict thread on ``CPU`` and every other thread of the station and of the acquisition
  child on the other CPUs (an affinity experiment).
  ``--reject-share 0.1`` (or 0.5) replays, instead of ``--replay`` as it is, its images the
  model passes and rejects (judged once, before the run) interleaved in that proportion.
  ``--soak`` samples memory, threads and files as the soak mode does.
* ``large``: ``--size WxH`` Mono8 frames (one cached array) from a looping folder source in the
  supervised child process, unthrottled and lossless (BLOCK), through the whole station:
  sustained parts/s, the hand-over (``acquired_to_read_ms``), frame -> signal, stages, memory.

The model is the tiny ONNX bundle the tests build (score = mean pixel / 255, thresholds set so
the synthetic parts land in every verdict: ~75 % PASS, ~10 % REVIEW, ~15 % FAIL, each FAIL and
REVIEW opening an NCR with evidence); all sinks are on: JSONL, and the SQLite store with
evidence PNGs when ``vinspect.store`` imports. The signaller is the log signaller (logging off).

    python bench/station_bench.py latency --seconds 30
    python bench/station_bench.py throughput --parts 3000
    python bench/station_bench.py soak --minutes 10
    python bench/station_bench.py genicam --seconds 25 --bundle demo-data/bundle --replay demo-data/holdout
    python bench/station_bench.py genicam --seconds 25 --bundle demo-data/bundle --replay demo-data/holdout \
        --reject-share 0.5
    python bench/station_bench.py large --size 2448x2048 --parts 300 --bundle demo-data/bundle
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # testkit: the tests' bundle writers

from testkit.bundles import write_golden_samples, write_tiny_bundle  # noqa: E402
from vinspect.camera.base import FrameSource, OverflowPolicy  # noqa: E402
from vinspect.camera.config import SyntheticSourceConfig  # noqa: E402
from vinspect.camera.synthetic import SyntheticSource  # noqa: E402
from vinspect.pipeline.gating import gate_bundle, policy_for  # noqa: E402
from vinspect.pipeline.judge import Judge, judge_image  # noqa: E402
from vinspect.pipeline.part_numbers import PartNumbers  # noqa: E402
from vinspect.pipeline.record import InspectionSink, JsonlSink  # noqa: E402
from vinspect.pipeline.runner import InspectionPipeline, PipelineConfig  # noqa: E402
from vinspect.pipeline.signals import LogSignaller  # noqa: E402
from vinspect.types import Frame  # noqa: E402

PART_MARK = True  # --no-part-mark: run without the admitted part-number mark (issue 16), for comparison
BUNDLE: Path | None = None  # --bundle: a trained bundle (e.g. the demo's) instead of the tiny graph
STORE = True  # --no-store: JSONL only (the record path's share of the verdict's latency)
PIN: int | None = None  # --pin CPU: the verdict thread on this CPU, the rest of the station on the others
PINS: list[dict[str, Any]] = []
GC_FREEZE = True  # --no-gc-freeze: the pipeline without gc.freeze at start, for comparison


def build_judge(work: Path) -> Judge:
    if BUNDLE is not None:
        gate = gate_bundle(BUNDLE)
        assert gate.bundle is not None, gate.reason
        return Judge(bundle=gate.bundle, policy=policy_for(gate.bundle), unavailable_reason=gate.reason)
    bundle_dir = write_tiny_bundle(work / "bundle", fail_at=0.32, review_at=0.313)  # ~15 % FAIL, ~10 % REVIEW
    write_golden_samples(
        bundle_dir,
        [
            ("good", np.full((20, 20), 50, np.uint8), "PASS", 50 / 255),
            ("bad", np.full((20, 20), 200, np.uint8), "FAIL", 200 / 255),
        ],
    )
    gate = gate_bundle(bundle_dir)
    assert gate.bundle is not None, gate.reason
    return Judge(bundle=gate.bundle, policy=policy_for(gate.bundle), unavailable_reason=gate.reason)


def build_sinks(work: Path, stack: ExitStack) -> tuple[list[InspectionSink], list[str]]:
    sinks: list[InspectionSink] = [stack.enter_context(JsonlSink(work / "inspections.jsonl"))]
    if not STORE:
        return sinks, ["jsonl (store off: --no-store)"]
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
    defaults = NcrDefaults(
        part_number="B-1",
        part_revision="A",
        part_name="bench disc",
        requirement_ref="DWG-1",
        site_id="bench",
        line_id="l1",
    )
    sinks.append(stack.enter_context(StoreSink(engine, EvidenceStore(work / "evidence"), defaults=defaults)))
    return sinks, ["jsonl", "store+evidence (SQLite WAL FULL)"]


class GcPauses:
    """Every garbage collection in the station process while parts flow (from the pipeline's
    start to its stop; not the store's migrations or the start's own collection): count and
    longest pause per generation (a collection holds the interpreter lock: the verdict thread
    waits it out)."""

    def __init__(self) -> None:
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self.active = False
        self._started = 0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter_ns()
        elif self.active:
            self.pauses[info["generation"]].append((time.perf_counter_ns() - self._started) / 1e6)

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            f"gen{g}": {"n": len(p), "max_ms": round(max(p, default=0.0), 3), "total_ms": round(sum(p), 3)}
            for g, p in self.pauses.items()
        }


def pin_station(pipe: InspectionPipeline) -> None:
    """``--pin CPU``: the inspection (verdict) thread on ``CPU``, every other thread of the station and
    of its acquisition child on the other CPUs (``os.sched_setaffinity`` per thread id)."""
    assert PIN is not None
    others = set(range(os.cpu_count() or 1)) - {PIN}
    verdict = next(t.native_id for t in threading.enumerate() if t.name == "vinspect-inspect")
    for proc in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        for thread in proc.threads():
            cpus = {PIN} if thread.id == verdict else others
            os.sched_setaffinity(thread.id, cpus)
            PINS.append({"pid": proc.pid, "tid": thread.id, "cpus": sorted(cpus)})


def _next_part_seq(work: Path) -> int:
    """One past the highest part number the bench station stored in ``work`` (0 for a new folder)."""
    db = work / "vinspect.db"
    if not STORE or not db.exists():
        return 0
    from sqlalchemy import func, select

    from vinspect.store import make_engine, session_scope
    from vinspect.store.tables import InspectionRecord

    engine = make_engine(f"sqlite:///{db}")
    try:
        with session_scope(engine) as session:
            top = session.scalar(
                select(func.max(InspectionRecord.part_seq)).where(InspectionRecord.station_id == "bench")
            )
    finally:
        engine.dispose()
    return 0 if top is None else int(top) + 1


def run_station(
    work: Path,
    *,
    fps: float | None,
    count: int | None,
    seconds: float | None,
    deadline_ms: float,
    sampler: Any = None,
    source: FrameSource | None = None,
    judge: Judge | None = None,
    on_start: Any = None,
    on_stop: Any = None,
) -> dict[str, Any]:
    overflow = OverflowPolicy.REJECT if fps else OverflowPolicy.BLOCK
    if source is None:
        source = SyntheticSource(
            SyntheticSourceConfig(
                fps=fps, count=count, size_px=256, defect_rate=0.2, distinct_parts=64, overflow=overflow
            ),
            source_id="bench",
        )
    config = PipelineConfig(
        station_id="bench",
        deadline_ms=deadline_ms,
        overflow=overflow,
        queue_size=8,
        degraded_after_faults=10_000,
        critical_sinks=frozenset({"store"} if STORE else ()),
        gc_freeze=GC_FREEZE,
    )
    first = _next_part_seq(work)  # a second run in the same folder goes on numbering, as vinspect run does
    with ExitStack() as stack:
        sinks, sink_names = build_sinks(work, stack)
        numbers = stack.enter_context(PartNumbers(work / "admitted.mark", start=first)) if PART_MARK else None
        pipe = InspectionPipeline(
            source,
            judge=judge or build_judge(work),
            signaller=LogSignaller(),
            sinks=sinks,
            config=config,
            on_admit=None if numbers is None else numbers.admit,
        )
        pipe.books.e2e = type(pipe.books.e2e)(size=10_000_000)  # keep every sample for the percentiles
        started = time.perf_counter()
        pipe.start(first_part_seq=first)
        if on_start is not None:
            on_start(pipe)
        end = None if seconds is None else time.monotonic() + seconds
        while not pipe.wait(1.0 if sampler else 0.1):
            if sampler:
                sampler(pipe)
            if end is not None and time.monotonic() >= end:
                break
        if on_stop is not None:
            on_stop()
        pipe.stop()
        elapsed = time.perf_counter() - started
    status = pipe.status().to_dict()
    books = status["books"]
    return {
        "elapsed_s": round(elapsed, 3),
        "parts": books["triggers"],
        "parts_per_s": round(books["triggers"] / elapsed, 1),
        "latency_ms": status["latency_ms"],
        "stages_ms": status["stages_ms"],
        "deadline_misses": books["failed_fault"].get("late", 0),
        "overflow_rejects": books["failed_fault"].get("overflow", 0),
        "books": books,
        "books_reconciled": books["discrepancy"] == 0,
        "extras": status["extras"],
        "sinks": sink_names,
    }


class StampedSource:
    """A source that notes, per frame, the delay from its ``acquired_ns`` (the GenTL fetch, in the
    acquisition child for a process source) to the moment the station's read returns it: the
    hand-over (and, for genicam+replay, the replay decode)."""

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
        if isinstance(item, Frame) and item.acquired_ns is not None:
            self.delays_ms.append((time.monotonic_ns() - item.acquired_ns) / 1e6)
        return item


def _pcts(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    arr = np.asarray(values)
    return {
        "n": len(values),
        "p50_ms": round(float(np.percentile(arr, 50)), 3),
        "p99_ms": round(float(np.percentile(arr, 99)), 3),
        "max_ms": round(float(arr.max()), 3),
    }


def model_alone(judge: Judge, replay: Path, *, n: int = 300, fps: float | None = None) -> dict[str, float]:
    """The model's own ORT time (the ``infer`` stage) on replayed images, nothing else running:
    back to back, or paced at ``fps`` (one inference per period, idle in between, as at the line)."""
    from vinspect.camera.folder import index_folder
    from vinspect.dataset import read_image

    assert judge.bundle is not None
    images = [read_image(entry.path) for entry in list(index_folder(replay))[:64]]
    for image in images[:10]:  # warm-up
        judge_image(image, bundle=judge.bundle, policy=judge.policy)
    infer = []
    next_at = time.perf_counter()
    for i in range(n):
        if fps:
            time.sleep(max(0.0, next_at - time.perf_counter()))
            next_at += 1.0 / fps
        j = judge_image(images[i % len(images)], bundle=judge.bundle, policy=judge.policy)
        infer.append((j.inferred_ns - j.preprocessed_ns) / 1e6)
    return _pcts(infer)


def mixed_replay(judge: Judge, replay: Path, out: Path, *, share: float) -> Path:
    """A folder of ``replay``'s images the model passes and rejects, interleaved so that
    ``share`` of every pass are rejects (symlinks, named in replay order)."""
    from vinspect.camera.folder import index_folder
    from vinspect.dataset import read_image
    from vinspect.types import Verdict

    assert judge.bundle is not None
    passes, rejects = [], []
    for entry in index_folder(replay):
        verdict = judge_image(read_image(entry.path), bundle=judge.bundle, policy=judge.policy).decision.verdict
        (passes if verdict is Verdict.PASS else rejects).append(entry.path)
    assert passes and rejects, f"{replay}: {len(passes)} passes, {len(rejects)} rejects"
    n_reject = max(1, round(20 * share))
    order = [
        rejects[i % len(rejects)] if k < n_reject else passes[i % len(passes)]
        for i in range(max(len(passes), len(rejects)))
        for k in range(20)
    ]
    (out / "good").mkdir(parents=True)
    for i, path in enumerate(order):
        (out / "good" / f"{i:05d}{path.suffix}").symlink_to(path.resolve())
    return out


def run_genicam(
    work: Path,
    *,
    replay: Path,
    acquisition: str,
    fps: float,
    seconds: float,
    deadline_ms: float,
    models: int = 1,
    reject_share: float | None = None,
    soak: Sampler | None = None,
) -> dict[str, Any]:
    """The user's path: genicam+replay on viky.cti, in a child process or a thread (see the module doc)."""
    from vinspect.camera.config import OverlaySourceConfig, ProcessSourceConfig
    from vinspect.camera.factory import open_source

    assert BUNDLE is not None, "the genicam mode needs --bundle"
    judge = build_judge(work)
    candidates = [build_judge(work) for _ in range(models - 1)]  # loaded, as a hot-swap candidate is
    alone = model_alone(judge, replay)
    alone_paced = model_alone(judge, replay, fps=fps)
    if reject_share is not None:
        replay = mixed_replay(judge, replay, work / "mixed", share=reject_share)
    inner = OverlaySourceConfig.model_validate(
        {
            "kind": "genicam+replay",
            "producers": ["viky.cti"],
            "device": {"serial_number": "0"},
            "features": {"Width": 256, "Height": 256, "PixelFormat": "Mono8", "AcquisitionFrameRate": fps},
            "replay": str(replay),
            "loop": True,
            "overflow": "reject",
        }
    )
    config = ProcessSourceConfig(inner=inner) if acquisition == "process" else inner
    source = StampedSource(open_source(config, source_id="bench"))
    proc = psutil.Process()
    rss: dict[str, float] = {}

    def sample(pipe: InspectionPipeline) -> None:
        if soak is not None:
            soak(pipe)
        rss["station_mb"] = max(rss.get("station_mb", 0.0), proc.memory_info().rss / 2**20)
        children = proc.children(recursive=True)
        if children:
            child_mb = sum(c.memory_info().rss for c in children) / 2**20
            rss["acquisition_child_mb"] = max(rss.get("acquisition_child_mb", 0.0), child_mb)

    pauses = GcPauses()

    def started(pipe: InspectionPipeline) -> None:
        if PIN is not None:
            pin_station(pipe)
        pauses.active = True

    gc.callbacks.append(pauses)
    try:
        result = run_station(
            work,
            fps=fps,
            count=None,
            seconds=seconds,
            deadline_ms=deadline_ms,
            sampler=sample,
            source=source,
            judge=judge,
            on_start=started,
            on_stop=lambda: setattr(pauses, "active", False),
        )
    finally:
        gc.callbacks.remove(pauses)
    books = result["books"]
    rejects = books["failed_defect"] + sum(books["failed_fault"].values()) + books["review"]
    e2e_p99 = result["latency_ms"]["p99_ms"]
    return result | {
        "acquisition": acquisition,
        "replay": str(replay),
        "models_loaded": 1 + len(candidates),
        "model_alone_ms": alone,
        "model_alone_paced_ms": alone_paced,
        "e2e_p99_over_model_alone_p99": round(e2e_p99 / alone["p99_ms"], 2),
        "e2e_p99_over_model_alone_paced_p99": round(e2e_p99 / alone_paced["p99_ms"], 2),
        "gc_pauses": pauses.summary(),
        "pinned": None if PIN is None else {"verdict_cpu": PIN, "pins": PINS},
        "acquired_to_read_ms": _pcts(source.delays_ms),
        "reject_share": round(rejects / max(books["triggers"], 1), 3),
        "peak_rss_mb": {k: round(v, 1) for k, v in rss.items()},
    }


def run_large(work: Path, *, size: str, parts: int, deadline_ms: float) -> dict[str, Any]:
    """``size`` Mono8 frames from a looping one-image folder in the acquisition child, through the
    station unthrottled (BLOCK): the highest sustained rate and the hand-over at that size."""
    import cv2
    from process_handover import SIZE_ENV, cached_read

    from vinspect.camera.config import FolderSourceConfig, ProcessSourceConfig
    from vinspect.camera.factory import open_source

    os.environ[SIZE_ENV] = size  # the spawned child reads it too
    folder = work / "frames"
    (folder / "good").mkdir(parents=True)
    cv2.imwrite(str(folder / "good" / "frame.png"), np.zeros((2, 2), np.uint8))  # indexed, never decoded
    config = ProcessSourceConfig(inner=FolderSourceConfig(path=folder, loop=True))
    source = StampedSource(open_source(config, source_id="bench", read=cached_read))
    proc = psutil.Process()
    rss: dict[str, float] = {}

    def sample(pipe: InspectionPipeline) -> None:
        rss["station_mb"] = max(rss.get("station_mb", 0.0), proc.memory_info().rss / 2**20)

    result = run_station(
        work,
        fps=None,
        count=parts,
        seconds=None,
        deadline_ms=deadline_ms,
        sampler=sample,
        source=CountedSource(source, parts),
    )
    return result | {
        "size": size,
        "acquired_to_read_ms": _pcts(source.delays_ms),
        "peak_rss_mb": {k: round(v, 1) for k, v in rss.items()},
    }


class CountedSource:
    """Ends a looping source after ``count`` frames (the throughput mode's finite run)."""

    def __init__(self, inner: FrameSource, count: int) -> None:
        self.inner, self.source_id, self.left = inner, inner.source_id, count

    @property
    def state(self) -> Any:
        return self.inner.state

    def __enter__(self) -> CountedSource:
        self.inner.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.inner.__exit__(*exc)

    def read(self, *, timeout_s: float) -> Any:
        if self.left <= 0:
            return None
        item = self.inner.read(timeout_s=timeout_s)
        if isinstance(item, Frame):
            self.left -= 1
        return item


class Sampler:
    def __init__(self, period_s: float) -> None:
        self.proc, self.period_s, self.next, self.samples = psutil.Process(), period_s, 0.0, []

    def __call__(self, pipe: InspectionPipeline) -> None:
        now = time.monotonic()
        if now < self.next:
            return
        self.next = now + self.period_s
        books = pipe.books.books()
        self.samples.append(
            {
                "t_s": now,
                "rss_mb": self.proc.memory_info().rss / 2**20,
                "threads": self.proc.num_threads(),
                "fds": self.proc.num_fds(),
                "parts": books.triggers,
                "discrepancy": books.discrepancy,
            }
        )

    def summary(self) -> dict[str, Any]:
        t0 = self.samples[0]["t_s"]
        warm_s = max(30.0, 0.2 * (self.samples[-1]["t_s"] - t0))
        warm = [s for s in self.samples if s["t_s"] - t0 >= warm_s] or self.samples[-1:]
        return {
            "warmup_s": warm_s,
            "rss_mb_after_warmup": round(warm[0]["rss_mb"], 1),
            "rss_mb_end": round(warm[-1]["rss_mb"], 1),
            "rss_growth_mb": round(warm[-1]["rss_mb"] - warm[0]["rss_mb"], 1),
            "threads": sorted({s["threads"] for s in warm}),
            "fds": sorted({s["fds"] for s in warm}),
            "max_in_flight": max(s["discrepancy"] for s in self.samples),
            "samples": len(self.samples),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["latency", "throughput", "soak", "genicam", "large"])
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, default=30.0, help="latency mode duration")
    parser.add_argument("--parts", type=int, default=3000, help="throughput mode part count")
    parser.add_argument("--minutes", type=float, default=10.0, help="soak duration")
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--deadline-ms", type=float, default=150.0)
    parser.add_argument(
        "--switch-interval-ms", type=float, default=None, help="sys.setswitchinterval for the run (Python default 5 ms)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "station.json")
    parser.add_argument(
        "--no-part-mark",
        action="store_true",
        help="without the admitted part-number mark vinspect run keeps (issue 16), to compare",
    )
    parser.add_argument("--bundle", type=Path, default=None, help="trained bundle dir (default: the tiny test graph)")
    parser.add_argument("--replay", type=Path, default=None, help="genicam mode: dataset folder of replayed pixels")
    parser.add_argument(
        "--acquisition",
        choices=["process", "thread"],
        default="process",
        help="genicam mode: acquisition in a child process (default) or a station thread",
    )
    parser.add_argument(
        "--models",
        type=int,
        choices=[1, 2],
        default=1,
        help="genicam mode: 2 keeps a second copy of the bundle loaded (a hot-swap candidate)",
    )
    parser.add_argument(
        "--reject-share",
        type=float,
        default=None,
        help="genicam mode: replay passes and rejects interleaved in this proportion",
    )
    parser.add_argument("--soak", action="store_true", help="genicam mode: sample memory growth (--seconds long)")
    parser.add_argument("--size", default="2448x2048", help="large mode: WxH of the Mono8 frames")
    parser.add_argument("--no-store", action="store_true", help="JSONL sink only (no SQLite store, no evidence)")
    parser.add_argument(
        "--pin",
        type=int,
        default=None,
        metavar="CPU",
        help="genicam mode: the verdict thread on CPU, every other station thread and the "
        "acquisition child on the other CPUs (an affinity experiment)",
    )
    parser.add_argument(
        "--no-gc-freeze",
        action="store_true",
        help="run the pipeline without gc.freeze at start (PipelineConfig.gc_freeze), to compare",
    )
    args = parser.parse_args()
    global BUNDLE, STORE, PART_MARK, PIN, GC_FREEZE
    BUNDLE, STORE, PIN, GC_FREEZE = args.bundle, not args.no_store, args.pin, not args.no_gc_freeze
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
            soak = Sampler(args.sample_s) if args.soak else None
            result = run_genicam(
                work,
                replay=args.replay,
                acquisition=args.acquisition,
                fps=args.fps,
                seconds=args.seconds,
                deadline_ms=args.deadline_ms,
                models=args.models,
                reject_share=args.reject_share,
                soak=soak,
            )
            if soak is not None:
                result["soak"] = soak.summary()
        elif args.mode == "large":
            result = run_large(work, size=args.size, parts=args.parts, deadline_ms=args.deadline_ms)
        elif args.mode == "throughput":
            result = run_station(work, fps=None, count=args.parts, seconds=None, deadline_ms=args.deadline_ms)
        else:
            sampler = Sampler(args.sample_s)
            result = run_station(
                work, fps=args.fps, count=None, seconds=args.minutes * 60, deadline_ms=args.deadline_ms, sampler=sampler
            )
            result["soak"] = sampler.summary()
    result |= {
        "mode": args.mode,
        "command": " ".join(["python", *sys.argv]),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_avg_at_end": os.getloadavg(),
            "switch_interval_ms": sys.getswitchinterval() * 1e3,
        },
    }
    existing = json.loads(args.out.read_text()) if args.out.is_file() else {}
    key = args.mode if args.mode != "genicam" else f"genicam_{args.acquisition}_{args.replay.name}"
    key += f"_{args.models}_models" if args.mode == "genicam" and args.models > 1 else ""
    key += f"_rejects_{args.reject_share}" if args.mode == "genicam" and args.reject_share is not None else ""
    key += "_soak" if args.mode == "genicam" and args.soak else ""
    key += "_no_store" if args.no_store else ""
    key += f"_pin{args.pin}" if args.pin is not None else ""
    key += "_no_gc_freeze" if args.no_gc_freeze else ""
    key += f"_{args.size}" if args.mode == "large" else ""
    existing[key] = result
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(existing, indent=1, default=str) + "\n")
    print(
        json.dumps(
            {
                k: result[k]
                for k in (
                    "mode",
                    "parts",
                    "parts_per_s",
                    "latency_ms",
                    "deadline_misses",
                    "overflow_rejects",
                    "books_reconciled",
                )
            }
            | result.get("soak", {})
            | {
                k: result[k]
                for k in (
                    "stages_ms",
                    "model_alone_ms",
                    "e2e_p99_over_model_alone_p99",
                    "model_alone_paced_ms",
                    "e2e_p99_over_model_alone_paced_p99",
                    "acquired_to_read_ms",
                    "reject_share",
                    "peak_rss_mb",
                    "gc_pauses",
                )
                if k in result
            },
            default=str,
        )
    )


if __name__ == "__main__":
    main()
