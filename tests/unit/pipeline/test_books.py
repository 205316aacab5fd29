"""Books: one disposition per trigger, faults visible, recovery from records (issue 4)."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from vinspect.camera.scripted import make_frame
from vinspect.pipeline.books import BookKeeper, LatencyWindow, disposition_of
from vinspect.pipeline.record import JsonlSink, recover_books
from vinspect.types import Books, Decision, Inspection, ModelRef, StageTimings, Verdict


@pytest.mark.parametrize(
    ("verdict", "reasons", "key"),
    [
        (Verdict.PASS, (), "pass"),
        (Verdict.REVIEW, ("review_band",), "review"),
        (Verdict.FAIL, ("score",), "defect"),
        (Verdict.FAIL, ("score", "late"), "late"),
        (Verdict.FAIL, ("non_finite",), "non_finite"),
        (Verdict.REVIEW, ("error:ModelError",), "error:ModelError"),
        (Verdict.FAIL, ("overflow",), "overflow"),
    ],
)
def test_disposition_of_books_faults_first(verdict, reasons, key) -> None:
    assert disposition_of(verdict=verdict, reasons=reasons) == key


def test_bookkeeper_closes_under_concurrency() -> None:
    keeper = BookKeeper()

    def work(reasons: tuple[str, ...], verdict: Verdict) -> None:
        for _ in range(500):
            keeper.trigger()
            keeper.settle(verdict=verdict, reasons=reasons)

    threads = [
        threading.Thread(target=work, args=a)
        for a in [((), Verdict.PASS), (("score",), Verdict.FAIL), (("overflow",), Verdict.FAIL)]
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    books = keeper.books()
    assert books == Books(triggers=1500, passed=500, failed_defect=500, failed_fault={"overflow": 500})
    assert books.discrepancy == 0


def test_bookkeeper_opening_books_carry_over() -> None:
    keeper = BookKeeper(opening=Books(triggers=3, passed=1, review=1, failed_fault={"late": 1}))
    keeper.trigger()
    keeper.settle(verdict=Verdict.FAIL, reasons=("late",))
    assert keeper.books() == Books(triggers=4, passed=1, review=1, failed_fault={"late": 2})


def test_latency_window_percentiles() -> None:
    window = LatencyWindow(size=100)
    assert window.summary()["n"] == 0
    for v in range(1, 201):
        window.add(float(v))
    s = window.summary()
    assert s["n"] == 100
    assert s["max_ms"] == 200
    assert 149 <= s["p50_ms"] <= 152
    assert s["p99_ms"] >= 198


def test_stage_windows_split_the_wait_before_inspection_from_preprocess() -> None:
    """The wait from acquisition (hand-over, queue) is its own stage, not part of preprocess (issue 21)."""
    ms = 1_000_000
    keeper = BookKeeper()
    timed = StageTimings(
        acquired_ns=10 * ms,
        started_ns=12 * ms,
        preprocessed_ns=12 * ms + ms // 10,
        inferred_ns=19 * ms,
        decided_ns=19 * ms + ms // 5,
        signalled_ns=20 * ms,
    )
    keeper.settle_inspection(replace(_inspection(0, Verdict.PASS, ()), timings=timed))
    stages = {name: window.summary()["p50_ms"] for name, window in keeper.stages.items()}
    assert stages == pytest.approx({"wait": 2.0, "preprocess": 0.1, "infer": 6.9, "decide": 0.2, "signal": 0.8})
    assert keeper.e2e.summary()["p50_ms"] == pytest.approx(10.0)
    # a record without the start stamp (fault paths, older code): preprocess keeps the wait, no wait sample
    unstarted = replace(timed, started_ns=0)
    keeper2 = BookKeeper()
    keeper2.settle_inspection(replace(_inspection(1, Verdict.PASS, ()), timings=unstarted))
    assert keeper2.stages["wait"].summary()["n"] == 0
    assert keeper2.stages["preprocess"].summary()["p50_ms"] == pytest.approx(2.1)


def _inspection(seq: int, verdict: Verdict, reasons: tuple[str, ...]) -> Inspection:
    return Inspection(
        inspection_id=f"i{seq}",
        station_id="s",
        part_seq=seq,
        frame=make_frame(1, frame_id=seq),
        prediction=None,
        timings=StageTimings(acquired_ns=1, decided_ns=2, signalled_ns=3),
        decision=Decision(verdict=verdict, reasons=reasons, policy_id="m@1", fail_at=0.6, review_at=0.5),
        model=ModelRef(name="m", version="1", sha256="a" * 64),
    )


def test_recover_books_from_jsonl_skips_torn_line(tmp_path) -> None:
    path = tmp_path / "rec.jsonl"
    with JsonlSink(path) as sink:
        sink.write(_inspection(0, Verdict.PASS, ()))
        sink.write(_inspection(1, Verdict.FAIL, ("incomplete_frame",)))
        sink.write(_inspection(2, Verdict.FAIL, ("score",)))
    with path.open("a") as fh:
        fh.write('{"schema_version": 1, "part_seq": 3, "verd')  # a write a SIGKILL interrupted
    books, next_seq, torn = recover_books(path)
    assert books == Books(triggers=3, passed=1, failed_defect=1, failed_fault={"incomplete_frame": 1})
    assert (next_seq, torn) == (3, 1)
    assert recover_books(tmp_path / "none.jsonl") == (Books(), 0, 0)


def test_jsonl_record_carries_model_sha_without_prediction(tmp_path) -> None:
    import json

    path = tmp_path / "rec.jsonl"
    with JsonlSink(path) as sink:
        sink.write(_inspection(0, Verdict.FAIL, ("disconnected",)))
    record = json.loads(path.read_text())
    assert record["model_sha256"] == "a" * 64
    assert record["reasons"] == ["disconnected"]
    assert record["frame"]["part_id"] == "p0"


def test_truncate_torn_tail_cuts_only_the_fragment(tmp_path) -> None:
    from vinspect.pipeline.record import append_records, truncate_torn_tail

    path = tmp_path / "rec.jsonl"
    assert truncate_torn_tail(path) == 0  # no file
    path.write_bytes(b"")
    assert truncate_torn_tail(path) == 0
    path.write_bytes(b'{"a":1}\n' + b"x" * 200_000)  # a fragment longer than one read chunk
    assert truncate_torn_tail(path) == 1
    assert path.read_bytes() == b'{"a":1}\n'
    assert truncate_torn_tail(path) == 0
    assert path.read_bytes() == b'{"a":1}\n'
    path.write_bytes(b"no newline at all")
    assert truncate_torn_tail(path) == 1
    assert path.read_bytes() == b""
    path.write_bytes(b'{"a":1}\n{"b"')
    assert append_records(path, [{"c": 3}]) == 1
    assert path.read_bytes() == b'{"a":1}\n{"c":3}\n'


def test_jsonl_sink_never_appends_to_a_torn_line_left_by_another_process(tmp_path) -> None:
    path = tmp_path / "rec.jsonl"
    with JsonlSink(path) as sink:
        sink.write(_inspection(0, Verdict.PASS, ()))
    path.write_bytes(path.read_bytes() + b'{"schema_version":1,"part_seq":1,"ver')  # a kill mid-line
    with JsonlSink(path) as sink:  # a new process: its own sink has never seen a torn write
        sink.write(_inspection(1, Verdict.PASS, ()))
    books, next_seq, torn = recover_books(path)
    assert (books.triggers, next_seq, torn) == (2, 2, 0)
