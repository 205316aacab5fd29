"""inspect_frame and InspectionPipeline: one disposition per part, signalled at once (issue 4)."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from testkit.bundles import write_golden_samples
from vinspect.camera.base import OverflowPolicy
from vinspect.camera.scripted import ScriptedSource, make_frame
from vinspect.models.fakes import FaultyModel, with_model
from vinspect.models.registry import ModelRegistry
from vinspect.pipeline.gating import gate_bundle, policy_for
from vinspect.pipeline.judge import InspectContext, Judge, PartTicket, inspect_frame, unavailable_judge
from vinspect.pipeline.record import FlushingSink, ListSink, model_sha256_of
from vinspect.pipeline.runner import InspectionPipeline, PipelineConfig
from vinspect.pipeline.signals import AlarmSignaller, RecordingSignaller
from vinspect.pipeline.swap import RegistryWatch
from vinspect.types import FrameFault, StationState, Verdict

CTX = InspectContext(station_id="st1", deadline_ms=1000.0)


def golden(bundle_dir: Path) -> Path:
    write_golden_samples(
        bundle_dir,
        [
            ("good", np.full((20, 20), 50, np.uint8), "PASS", 50 / 255),
            ("bad", np.full((20, 20), 200, np.uint8), "FAIL", 200 / 255),
        ],
    )
    return bundle_dir


def judge_of(bundle_dir: Path) -> Judge:
    gate = gate_bundle(golden(bundle_dir))
    assert gate.bundle is not None, gate.reason
    return Judge(bundle=gate.bundle, policy=policy_for(gate.bundle), unavailable_reason=gate.reason)


@pytest.mark.parametrize(
    ("level", "verdict", "accept"), [(50, Verdict.PASS, True), (140, Verdict.REVIEW, False), (200, Verdict.FAIL, False)]
)
def test_inspect_frame_signals_verdict_at_once(tiny_bundle, level: int, verdict: Verdict, accept: bool) -> None:
    judge, sig = judge_of(tiny_bundle), RecordingSignaller()
    ticket = PartTicket(part_seq=7, acquired_ns=CTX.clock())
    insp = inspect_frame(make_frame(level), judge=judge, ctx=CTX, ticket=ticket, signaller=sig)
    assert insp.decision.verdict is verdict
    assert [s.accept for s in sig.signals] == [accept]
    t = insp.timings
    assert t.acquired_ns <= t.preprocessed_ns <= t.inferred_ns <= t.decided_ns <= t.signalled_ns
    assert model_sha256_of(insp) == judge.bundle.manifest.sha256
    assert insp.part_seq == 7


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("incomplete", "incomplete_frame"),
        ("gap", "missing_frame"),
        ("timeout", "missing_frame"),
        ("disconnected", "disconnected"),
    ],
)
def test_inspect_frame_fault_is_fail_never_inferred(tiny_bundle, reason, expected) -> None:
    fault = FrameFault(source_id="s", frame_id=3, reason=reason, at=datetime.now(UTC))
    sig = RecordingSignaller()
    insp = inspect_frame(
        fault,
        judge=judge_of(tiny_bundle),
        ctx=CTX,
        ticket=PartTicket(part_seq=0, acquired_ns=CTX.clock()),
        signaller=sig,
    )
    assert insp.decision.verdict is Verdict.FAIL
    assert insp.decision.reasons == (expected,)
    assert insp.prediction is None
    assert sig.accepts == []
    assert model_sha256_of(insp)


def test_inspect_frame_late_verdict_is_fail(tiny_bundle) -> None:
    insp = inspect_frame(
        make_frame(10),
        judge=judge_of(tiny_bundle),
        ctx=InspectContext(station_id="s", deadline_ms=5),
        ticket=PartTicket(part_seq=0, acquired_ns=CTX.clock() - 10_000_000),
        signaller=RecordingSignaller(),
    )
    assert insp.decision.verdict is Verdict.FAIL
    assert "late" in insp.decision.reasons


def test_inspect_frame_signal_failure_is_recorded_not_raised(tiny_bundle) -> None:
    sig = RecordingSignaller(fail_with=ConnectionError("plc gone"))
    insp = inspect_frame(
        make_frame(10),
        judge=judge_of(tiny_bundle),
        ctx=CTX,
        ticket=PartTicket(part_seq=0, acquired_ns=CTX.clock()),
        signaller=sig,
    )
    assert insp.error is not None
    assert "plc gone" in insp.error
    assert insp.timings.signalled_ns == 0


def wait_for(predicate, timeout_s: float = 10.0) -> None:
    end = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def run_pipeline(source, *, judge, config, sinks=(), watch=None, sig=None, during=None):
    sig = sig or RecordingSignaller()
    sink = ListSink()
    pipe = InspectionPipeline(source, judge=judge, signaller=sig, sinks=[sink, *sinks], config=config, watch=watch)
    with pipe:
        if during is not None:
            during(pipe)
        assert pipe.wait(20)
    return pipe, sig, sink


def test_pipeline_every_part_once_and_books_close(tiny_bundle) -> None:
    levels = [50, 140, 200] * 10
    source = ScriptedSource([make_frame(v, frame_id=i) for i, v in enumerate(levels)])
    pipe, sig, sink = run_pipeline(source, judge=judge_of(tiny_bundle), config=PipelineConfig(station_id="s"))
    books = pipe.books.books()
    assert (books.triggers, books.passed, books.review, books.failed_defect) == (30, 10, 10, 10)
    assert books.discrepancy == 0
    assert [i.part_seq for i in sink.items] == list(range(30))
    assert [s.part_seq for s in sig.signals] == list(range(30))
    assert len(sig.accepts) == 10
    assert pipe.state.state is StationState.STOPPED
    assert source.closed_count == 1
    assert sig.heartbeats >= 1
    assert pipe.status().latency_ms["n"] == 30


def test_pipeline_gated_out_rejects_everything(tiny_bundle) -> None:
    source = ScriptedSource([make_frame(10, frame_id=i) for i in range(5)])
    states: list[StationState] = []
    pipe = InspectionPipeline(
        source,
        judge=unavailable_judge("model refused: x"),
        signaller=RecordingSignaller(),
        sinks=[],
        config=PipelineConfig(station_id="s"),
    )
    pipe.state.listen(states.append)
    with pipe:
        assert pipe.state.state is StationState.PREOPERATIONAL
        assert pipe.state.reason == "model refused: x"
        assert pipe.wait(10)
    assert pipe.books.books().failed_fault == {"model refused: x": 5}
    assert states == [StationState.STOPPED]


def test_pipeline_overflow_reject_signals_overflow(tiny_bundle) -> None:
    judge = judge_of(tiny_bundle)
    slow = Judge(
        bundle=with_model(judge.bundle, FaultyModel(judge.bundle.model, fault=lambda i: "sleep", sleep_s=0.05)),
        policy=judge.policy,
    )
    source = ScriptedSource([make_frame(10, frame_id=i) for i in range(20)], period_s=0.002)
    config = PipelineConfig(station_id="s", queue_size=1, overflow=OverflowPolicy.REJECT, deadline_ms=None)
    pipe, sig, sink = run_pipeline(source, judge=slow, config=config)
    books = pipe.books.books()
    assert books.failed_fault.get("overflow", 0) > 5
    assert books.discrepancy == 0
    assert books.triggers == 20
    assert sorted(i.part_seq for i in sink.items) == list(range(20))
    assert all(not s.accept for s in sig.signals if "overflow" in s.reasons)


def test_pipeline_consecutive_faults_degrade_then_recover(tiny_bundle) -> None:
    now = datetime.now(UTC)
    faults = [FrameFault(source_id="s", frame_id=i, reason="incomplete", at=now) for i in range(3)]
    items = [*faults, make_frame(10, frame_id=3), make_frame(10, frame_id=4)]
    sig = RecordingSignaller()
    pipe, _, _ = run_pipeline(
        ScriptedSource(items),
        judge=judge_of(tiny_bundle),
        sig=sig,
        config=PipelineConfig(station_id="s", degraded_after_faults=3),
    )
    assert sig.states == [
        StationState.OPERATIONAL,
        StationState.DEGRADED,
        StationState.OPERATIONAL,
        StationState.STOPPED,
    ]
    assert pipe.books.extras.alarms == 1
    assert pipe.books.books().failed_fault == {"incomplete_frame": 3}


def test_pipeline_hot_swap_between_parts(tmp_path, tiny_bundle_factory) -> None:
    registry = ModelRegistry(tmp_path / "models")
    v1 = golden(tiny_bundle_factory())
    v2 = golden(tiny_bundle_factory(labels=("spot",)))
    manifest = json.loads((v2 / "manifest.json").read_text())
    (v2 / "manifest.json").write_text(json.dumps(manifest | {"version": "2"}))
    registry.install(v1, activate=True)
    registry.install(v2)
    judge = judge_of(registry.resolve("tiny"))
    gate = threading.Event()
    gate.set()
    source = ScriptedSource([make_frame(10, frame_id=i) for i in range(40)], period_s=0.005, gate=gate)

    def activate_midway(pipe: InspectionPipeline) -> None:
        wait_for(lambda: pipe.books.books().triggers >= 10)
        gate.clear()  # the line pauses (reads time out) while the new version is gated
        registry.activate("tiny", "2")
        time.sleep(1.0)
        gate.set()

    config = PipelineConfig(station_id="s", swap_poll_s=0.02, degraded_after_faults=1000)
    pipe, sig, sink = run_pipeline(
        source, judge=judge, config=config, during=activate_midway, watch=RegistryWatch(registry, "tiny", current="1")
    )
    shas = [model_sha256_of(i) for i in sink.items]
    assert [i.part_seq for i in sink.items] == list(range(40))
    assert len(sig.signals) == 40
    assert shas[0] == judge.bundle.manifest.sha256
    assert shas[-1] == manifest["sha256"]
    switch = shas.index(manifest["sha256"])
    assert set(shas[:switch]) == {shas[0]}
    assert set(shas[switch:]) == {shas[-1]}
    assert pipe.books.extras.swaps == 1


def test_pipeline_hot_swap_refuses_bad_model(tmp_path, tiny_bundle_factory) -> None:
    registry = ModelRegistry(tmp_path / "models")
    v1 = golden(tiny_bundle_factory())
    v2 = tiny_bundle_factory(labels=("spot",))  # no golden samples: refused
    (v2 / "manifest.json").write_text(json.dumps(json.loads((v2 / "manifest.json").read_text()) | {"version": "2"}))
    registry.install(v1, activate=True)
    registry.install(v2, activate=False)
    judge = judge_of(registry.resolve("tiny"))
    source = ScriptedSource([make_frame(10, frame_id=i) for i in range(30)], period_s=0.005)

    def activate_and_wait(pipe: InspectionPipeline) -> None:
        registry.activate("tiny", "2")
        wait_for(lambda: pipe.books.extras.swaps_refused == 1)

    pipe, _, sink = run_pipeline(
        source,
        judge=judge,
        config=PipelineConfig(station_id="s", swap_poll_s=0.01),
        watch=RegistryWatch(registry, "tiny", current="1"),
        during=activate_and_wait,
    )
    assert {model_sha256_of(i) for i in sink.items} == {judge.bundle.manifest.sha256}
    assert pipe.books.extras.swaps_refused == 1
    assert pipe.books.extras.alarms >= 1


class BrokenSink:
    name = "store"

    def __init__(self, *, fail_from: int) -> None:
        self.fail_from, self.written = fail_from, 0

    def write(self, inspection) -> None:
        if inspection.part_seq >= self.fail_from:
            raise OSError(28, "No space left on device")
        self.written += 1


def test_pipeline_critical_sink_failure_stops_the_line(tiny_bundle) -> None:
    source = ScriptedSource([make_frame(10, frame_id=i) for i in range(40)], period_s=0.005)
    sig = RecordingSignaller()
    other = ListSink(name="other")
    config = PipelineConfig(station_id="s", critical_sinks=frozenset({"store"}))
    pipe, sig, _sink = run_pipeline(
        source, judge=judge_of(tiny_bundle), sig=sig, config=config, sinks=[BrokenSink(fail_from=10), other]
    )
    books = pipe.books.books()
    assert books.discrepancy == 0
    assert books.failed_fault.get("store_unavailable", 0) > 0
    assert len(other.items) == 40
    assert pipe.books.extras.sink_errors["store"] >= 1
    first_stop = min(s.part_seq for s in sig.signals if "store_unavailable" in s.reasons)
    assert all(not s.accept for s in sig.signals if s.part_seq >= first_stop)
    assert StationState.ERROR in sig.states


class SlowBatchSink:
    """Holds its first write until released, so records queue up; then takes runs via write_batch."""

    name = "batch"

    def __init__(self, *, fail_seqs: frozenset[int] = frozenset()) -> None:
        self.release, self.runs, self.fail_seqs = threading.Event(), [], fail_seqs

    def write(self, inspection) -> None:
        self.write_batch([inspection])

    def write_batch(self, inspections):
        assert self.release.wait(10)
        self.runs.append([i.part_seq for i in inspections])
        return [OSError("disk") if i.part_seq in self.fail_seqs else None for i in inspections]


def test_pipeline_record_thread_hands_queued_runs_to_batch_sinks(tiny_bundle) -> None:
    source = ScriptedSource([make_frame(200, frame_id=i) for i in range(40)])
    batch = SlowBatchSink(fail_seqs=frozenset({5, 17}))
    config = PipelineConfig(station_id="s", record_batch=16)

    def backlog_then_release(pipe: InspectionPipeline) -> None:
        wait_for(lambda: pipe.books.books().triggers == 40)  # all inspected while the sink is held
        batch.release.set()

    pipe, _sig, plain = run_pipeline(
        source, judge=judge_of(tiny_bundle), config=config, sinks=[batch], during=backlog_then_release
    )
    assert [seq for run in batch.runs for seq in run] == list(range(40))  # every part once, in order
    assert max(len(run) for run in batch.runs) == 16  # the backlog went over in runs of record_batch
    assert [i.part_seq for i in plain.items] == list(range(40))  # a plain sink still gets each one
    assert pipe.books.extras.sink_errors == {"batch": 2}  # failures are counted per inspection


def test_synthetic_source_labels_count_and_faults() -> None:
    from vinspect.camera.config import SyntheticSourceConfig
    from vinspect.camera.synthetic import SyntheticSource
    from vinspect.types import Frame

    config = SyntheticSourceConfig(count=12, size_px=32, defect_rate=0.5, incomplete_rate=0.25, distinct_parts=4)
    with SyntheticSource(config, source_id="syn") as source:
        items = [source.read(timeout_s=0.1) for _ in range(12)]
        assert source.read(timeout_s=0.1) is None
    frames_ = [i for i in items if isinstance(i, Frame)]
    assert {f.origin for f in frames_} == {"synthetic"}
    assert all(not f.image.flags.writeable for f in frames_)
    assert {f.label for f in frames_} <= {"good", *config.kinds}
    assert len({f.label for f in frames_}) >= 2
    assert [i.frame_id for i in items] == list(range(12))
    assert any(isinstance(i, FrameFault) and i.reason == "incomplete" for i in items)


def test_synthetic_source_paces_triggers_and_unplugs() -> None:
    from vinspect.camera.clock import ManualClock
    from vinspect.camera.config import SyntheticSourceConfig
    from vinspect.camera.synthetic import SyntheticSource

    clock = ManualClock()
    with SyntheticSource(SyntheticSourceConfig(fps=100, size_px=32), source_id="syn", clock=clock) as source:
        start = clock.monotonic()
        for _ in range(5):
            source.read(timeout_s=0.5)
        assert clock.monotonic() - start == pytest.approx(0.04)  # triggers 0..4, 10 ms apart
        source.unplug()
        fault = source.read(timeout_s=0.5)
        source.replug()
        assert isinstance(fault, FrameFault)
        assert fault.reason == "disconnected"
        assert fault.frame_id == 5
        assert source.read(timeout_s=0.5).frame_id == 6  # type: ignore[union-attr]
    slow = SyntheticSource(SyntheticSourceConfig(fps=1, size_px=32), clock=clock)
    with slow:
        slow.read(timeout_s=0.01)
        clock.sleeps.clear()
        assert slow.read(timeout_s=0.01).reason == "timeout"  # type: ignore[union-attr]
        assert clock.sleeps == [0.01]


@pytest.mark.parametrize(("offset_s", "late"), [(-2.0, True), (None, False), (10.0, False)])
def test_the_part_clock_starts_at_the_frames_acquisition_stamp(tiny_bundle, offset_s: float | None, late: bool) -> None:
    """Stamped 2 s before it is read, a frame is late for a 1 s deadline before it is judged; no
    stamp, or one ahead of the pipeline's clock (another clock), starts at admission."""
    import dataclasses

    def stamped(i: int):
        frame = make_frame(10, frame_id=i)
        if offset_s is None:
            return frame
        return dataclasses.replace(frame, acquired_ns=time.monotonic_ns() + int(offset_s * 1e9))

    source = ScriptedSource([stamped(i) for i in range(3)])
    _, _, sink = run_pipeline(
        source, judge=judge_of(tiny_bundle), config=PipelineConfig(station_id="s", deadline_ms=1000.0)
    )
    assert [("late" in i.decision.reasons) for i in sink.items] == [late] * 3
    latencies = [(i.timings.signalled_ns - i.timings.acquired_ns) / 1e6 for i in sink.items]
    assert all((ms >= 2000.0) is late for ms in latencies), latencies


def test_the_wait_before_inspection_is_its_own_stage_not_preprocess(tiny_bundle) -> None:
    """A frame acquired 2 s before it is read waits 2 s; preprocess stays the pixel work (issue 21)."""
    import dataclasses

    frames = [
        dataclasses.replace(make_frame(10, frame_id=i), acquired_ns=time.monotonic_ns() - 2_000_000_000)
        for i in range(3)
    ]
    pipe, _, sink = run_pipeline(
        ScriptedSource(frames), judge=judge_of(tiny_bundle), config=PipelineConfig(station_id="s", deadline_ms=None)
    )
    stages = pipe.status().stages_ms
    assert stages["wait"]["n"] == 3 and stages["wait"]["p50_ms"] >= 2000.0
    assert stages["preprocess"]["n"] == 3 and stages["preprocess"]["max_ms"] < 1000.0
    assert all(i.timings.acquired_ns < i.timings.started_ns <= i.timings.preprocessed_ns for i in sink.items)


@pytest.mark.parametrize("freeze", [True, False])
def test_the_pipeline_freezes_start_up_objects_out_of_the_gc_while_it_runs(tiny_bundle, freeze: bool) -> None:
    """gc.freeze at start (a full collection then skips them), gc.unfreeze at stop (issue 21)."""
    import gc

    gc.unfreeze()  # whatever an earlier test left frozen
    seen: list[int] = []
    run_pipeline(
        ScriptedSource([make_frame(50, frame_id=i) for i in range(3)]),
        judge=judge_of(tiny_bundle),
        config=PipelineConfig(station_id="s", gc_freeze=freeze),
        during=lambda pipe: seen.append(gc.get_freeze_count()),
    )
    assert (seen[0] > 0) is freeze
    assert gc.get_freeze_count() == 0


def test_deliver_counts_a_batch_sink_breaking_its_contract_as_failed_for_every_part() -> None:
    from vinspect.pipeline.record import deliver

    class ShortSink:
        name = "short"

        def write(self, inspection) -> None:
            raise AssertionError("deliver must use write_batch for a run")

        def write_batch(self, inspections):
            return [None]  # one result for a run of three: the run cannot be trusted

    source = ScriptedSource([make_frame(200, frame_id=i) for i in range(3)])
    _pipe, _sig, plain = run_pipeline(source, judge=unavailable_judge("x"), config=PipelineConfig(station_id="s"))
    errors = deliver(ShortSink(), plain.items)
    assert len(errors) == 3
    assert all(isinstance(e, ValueError) and "1 results for 3" in str(e) for e in errors)


class FlushCountingSink(ListSink):
    """A sink holding work back until ``flush`` (as the store's PASS batches do)."""

    def __init__(self) -> None:
        super().__init__(name="held")
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1


class AlarmRecordingSignaller(RecordingSignaller):
    def __init__(self) -> None:
        super().__init__()
        self.alarms: list[str] = []

    def alarm(self, message: str) -> None:
        self.alarms.append(message)


def test_pipeline_uses_optional_abilities_by_protocol(tiny_bundle) -> None:
    held, sig = FlushCountingSink(), AlarmRecordingSignaller()
    assert isinstance(held, FlushingSink)
    assert not isinstance(ListSink(), FlushingSink)
    assert isinstance(sig, AlarmSignaller)
    assert not isinstance(RecordingSignaller(), AlarmSignaller)
    source = ScriptedSource([make_frame(50, frame_id=i) for i in range(3)])
    run_pipeline(
        source, judge=unavailable_judge("no model"), sig=sig, config=PipelineConfig(station_id="s"), sinks=[held]
    )
    assert held.flushes == 1
    assert sig.alarms == ["not operational: no model"]


class _SlowSink:
    """A sink that takes ``delay_s`` per record, or blocks until released (``hang``)."""

    name = "slow"

    def __init__(self, delay_s: float = 0.0, hang: threading.Event | None = None) -> None:
        self.delay_s, self.hang, self.items = delay_s, hang, []

    def write(self, inspection) -> None:  # type: ignore[no-untyped-def]
        if self.hang is not None:
            self.hang.wait(30)
        time.sleep(self.delay_s)
        self.items.append(inspection.part_seq)


def test_stop_waits_for_a_slow_record_path_to_deliver_everything(tiny_bundle) -> None:
    """Stopping with records still queued behind a slow sink delivers all of them (issue 18's finding:
    stop used to return with records queued, books closed and nothing counted)."""
    slow = _SlowSink(delay_s=0.03)
    source = ScriptedSource([make_frame(10, frame_id=i) for i in range(40)])
    pipe = InspectionPipeline(
        source,
        judge=judge_of(tiny_bundle),
        signaller=RecordingSignaller(),
        sinks=[slow],
        config=PipelineConfig(station_id="s", record_queue_size=64, record_batch=4),
    )
    pipe.start()
    assert pipe.wait(20)
    pipe.stop(timeout_s=0.5)  # far less than 40 x 30 ms: the drain goes on while it makes progress
    assert slow.items == list(range(40))
    assert pipe.books.extras.record_dropped == 0


def test_stop_counts_what_a_hung_sink_never_took(tiny_bundle, caplog) -> None:
    release = threading.Event()
    hung = _SlowSink(hang=release)
    sig = RecordingSignaller()
    source = ScriptedSource([make_frame(10, frame_id=i) for i in range(10)])
    pipe = InspectionPipeline(
        source,
        judge=judge_of(tiny_bundle),
        signaller=sig,
        sinks=[hung],
        config=PipelineConfig(station_id="s", record_queue_size=64, record_batch=1),
    )
    pipe.start()
    assert pipe.wait(20)
    wait_for(lambda: pipe.books.books().triggers == 10)
    pipe.stop(timeout_s=0.3)
    release.set()
    dropped = pipe.books.extras.record_dropped
    assert dropped == 9  # one record is in the hung sink's hands, the other nine never left the queue
    assert "no progress for 0.3 s; 9 queued inspection(s) not recorded" in caplog.text


FRAME_64K = 256 * 256  # bytes of one 256x256 Mono8 frame
BUDGET_3_FRAMES_MB = 3.2 * FRAME_64K / 2**20  # three such frames fit the record queue's byte budget, four do not


def test_a_triggered_line_drops_records_over_the_byte_budget_and_counts_them(tiny_bundle, caplog) -> None:
    """Queued records hold their frames: past record_queue_mb the line drops (counted, alarmed)
    instead of growing without bound (5 MP frames: 1,024 queued parts were 5 GB; issue 21)."""
    release = threading.Event()
    hung = _SlowSink(hang=release)
    source = ScriptedSource([make_frame(10, frame_id=i, size_px=256) for i in range(10)], period_s=0.01)
    pipe = InspectionPipeline(
        source,
        judge=judge_of(tiny_bundle),
        signaller=RecordingSignaller(),
        sinks=[hung],
        config=PipelineConfig(
            station_id="s", overflow=OverflowPolicy.REJECT, record_batch=1, record_queue_mb=BUDGET_3_FRAMES_MB
        ),
    )
    pipe.start()
    assert pipe.wait(20)
    wait_for(lambda: pipe.books.books().triggers == 10)
    wait_for(lambda: pipe.books.books().discrepancy == 0)
    release.set()
    pipe.stop()
    assert hung.items == [0, 1, 2]  # one in the sink's hands and two queued: three frames' bytes
    assert pipe.books.extras.record_dropped == 7
    assert pipe.books.books().discrepancy == 0  # every part still got its disposition
    assert "record queue full: 1 inspection(s) not recorded" in caplog.text


def test_a_lossless_source_waits_for_room_in_the_byte_budget_and_loses_nothing(tiny_bundle) -> None:
    depths: list[int] = []
    box: list[InspectionPipeline] = []

    class DepthSink(_SlowSink):
        def write(self, inspection) -> None:  # type: ignore[no-untyped-def]
            depths.append(box[0].status().record_queue_depth)
            super().write(inspection)

    slow = DepthSink(delay_s=0.01)
    source = ScriptedSource([make_frame(10, frame_id=i, size_px=256) for i in range(20)])
    pipe = InspectionPipeline(
        source,
        judge=judge_of(tiny_bundle),
        signaller=RecordingSignaller(),
        sinks=[slow],
        config=PipelineConfig(
            station_id="s", overflow=OverflowPolicy.BLOCK, record_batch=1, record_queue_mb=BUDGET_3_FRAMES_MB
        ),
    )
    box.append(pipe)
    with pipe:
        assert pipe.wait(20)
    assert slow.items == list(range(20))
    assert pipe.books.extras.record_dropped == 0
    # never more queued than the budget holds besides the one being written (2), plus the end-of-run marker
    assert max(depths) <= 3


def test_a_lossless_source_stops_waiting_for_a_stalled_record_path(tiny_bundle) -> None:
    """Under BLOCK a hung sink costs one ``record_stall_s`` wait, then records are dropped and
    counted without waiting again, so the line of parts is not held for a wait per part."""
    release = threading.Event()
    hung = _SlowSink(hang=release)
    source = ScriptedSource([make_frame(10, frame_id=i, size_px=256) for i in range(10)])
    pipe = InspectionPipeline(
        source,
        judge=judge_of(tiny_bundle),
        signaller=RecordingSignaller(),
        sinks=[hung],
        config=PipelineConfig(
            station_id="s",
            overflow=OverflowPolicy.BLOCK,
            record_batch=1,
            record_queue_mb=BUDGET_3_FRAMES_MB,
            record_stall_s=3.0,
        ),
    )
    started = time.monotonic()
    pipe.start()
    wait_for(lambda: pipe.books.books().triggers == 10 and pipe.books.books().discrepancy == 0)
    took = time.monotonic() - started
    release.set()
    pipe.stop()
    assert pipe.books.extras.record_dropped == 7 and hung.items == [0, 1, 2]
    # one stall wait (3 s), not seven (21 s); the wide margin absorbs a loaded machine's scheduling
    # (with a 1 s stall the test took 6.5 s on two busy cores)
    assert 3.0 <= took < 15.0
