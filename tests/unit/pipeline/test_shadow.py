"""Shadow mode: a candidate judges each recorded part off the line; busy means dropped and counted."""

from __future__ import annotations

import dataclasses
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from vinspect.models.runtime import load_bundle
from vinspect.pipeline.gating import policy_for
from vinspect.pipeline.shadow import ShadowSink, read_shadow_stats
from vinspect.types import Decision, Frame, Inspection, StageTimings, Verdict


def _part(seq: int, level: int, active: Verdict, *, age_s: float = 0.0) -> Inspection:
    frame = Frame(
        image=np.full((32, 32), level, np.uint8),
        source_id="cam",
        frame_id=seq,
        captured_at=datetime.now(UTC) - timedelta(seconds=age_s),
        pixel_format="Mono8",
        origin="synthetic",
        part_id=f"P{seq}",
    )
    decision = Decision(
        verdict=active,
        reasons=("score",) if active is not Verdict.PASS else (),
        policy_id="a",
        fail_at=0.6,
        review_at=0.5,
    )
    return Inspection(
        inspection_id=f"st-{seq:04d}",
        station_id="st",
        part_seq=seq,
        frame=frame,
        prediction=None,
        decision=decision,
        timings=StageTimings(),
        model=None,
    )


def test_shadow_counts_agreement_and_keeps_every_disagreement_with_its_image(tiny_bundle_factory, tmp_path) -> None:
    bundle = load_bundle(tiny_bundle_factory(fail_at=0.4, review_at=0.3))
    out = tmp_path / "shadow"
    with ShadowSink(bundle, policy=policy_for(bundle), out=out, deadline_ms=None, queue_size=64) as sink:
        sink.write(_part(1, 25, Verdict.PASS))  # both PASS
        sink.write(_part(2, 115, Verdict.PASS))  # 0.45: the candidate FAILs it
        sink.write(_part(3, 230, Verdict.FAIL))  # both FAIL
        sink.write(dataclasses.replace(_part(4, 0, Verdict.FAIL), frame=None))
    stats = read_shadow_stats(out)
    assert stats is not None
    assert (stats["parts"], stats["agree"], stats["no_frame"], stats["dropped_busy"]) == (3, 2, 1, 0)
    assert stats["disagree"] == {"PASS->FAIL": 1}
    assert stats["agreement"] == 2 / 3
    rows = [json.loads(line) for line in (out / "disagreements.jsonl").read_text().splitlines()]
    assert [(r["inspection_id"], r["active"]["verdict"], r["shadow"]["verdict"]) for r in rows] == [
        ("st-0002", "PASS", "FAIL")
    ]
    assert (out / rows[0]["image"]).is_file()
    assert stats["candidate"]["sha256"] == bundle.manifest.sha256


class _Blocking:
    """Wraps a model so the first run blocks until released (a busy shadow, deterministically)."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner, self.entered, self.release = inner, threading.Event(), threading.Event()

    def run(self, tensor):  # type: ignore[no-untyped-def]
        self.entered.set()
        assert self.release.wait(10)
        return self.inner.run(tensor)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)


def test_a_busy_shadow_drops_and_counts_without_blocking_the_record_thread(tiny_bundle, tmp_path: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    model = _Blocking(bundle.model)
    slow = dataclasses.replace(bundle, model=model)
    sink = ShadowSink(slow, policy=policy_for(bundle), out=tmp_path / "s", deadline_ms=150.0, queue_size=1)
    sink.write(_part(1, 10, Verdict.PASS))
    assert model.entered.wait(10)  # the worker holds part 1
    sink.write(_part(2, 10, Verdict.PASS, age_s=1.0))  # fills the queue; captured 1 s ago: judged late
    sink.write(_part(3, 10, Verdict.PASS))  # dropped at once: write never waits
    sink.write(_part(4, 10, Verdict.PASS))
    model.release.set()
    sink.close()
    stats = read_shadow_stats(tmp_path / "s")
    assert stats is not None
    assert (stats["parts"], stats["dropped_busy"]) == (2, 2)
    assert stats["late"] == 1
