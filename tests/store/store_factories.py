"""Builders for store tests: real Inspections with real numpy images (no mocks)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from vinspect.store.ncr import NcrDefaults
from vinspect.types import Decision, Frame, Inspection, ModelRef, Prediction, Region, StageTimings, Verdict

MODEL = ModelRef(name="tile-anomaly", version="2026.01.1", sha256="ab" * 32)
DEFAULTS = NcrDefaults(
    part_number="TILE-100",
    part_revision="C",
    part_name="Magnetic tile",
    requirement_ref="DWG-100 rev C, char 7 (surface free of cracks)",
    site_id="plant-1",
    line_id="line-2",
)
T0 = datetime(2026, 1, 15, 8, 0, 0, tzinfo=UTC)


def image(seed: int, *, size: int = 128) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size, size), dtype=np.uint8)
    pixels.flags.writeable = False
    return pixels


def make_inspection(
    seq: int,
    *,
    verdict: Verdict = Verdict.FAIL,
    reasons: tuple[str, ...] | None = None,
    station: str = "st-1",
    with_frame: bool = True,
    with_map: bool = True,
    defect_code: str | None = "crack",
    size: int = 128,
    at: datetime | None = None,
) -> Inspection:
    """A part inspected at ``T0 + seq`` seconds (``at`` overrides)."""
    when = at or T0 + timedelta(seconds=seq)
    if reasons is None:
        reasons = {Verdict.FAIL: ("score",), Verdict.REVIEW: ("review_band",), Verdict.PASS: ()}[verdict]
    score = {Verdict.FAIL: 0.91, Verdict.REVIEW: 0.6, Verdict.PASS: 0.1}[verdict]
    frame = (
        Frame(
            image=image(seq, size=size),
            source_id="cam-1",
            frame_id=seq,
            captured_at=when,
            pixel_format="Mono8",
            origin="synthetic",
            part_id=f"SN-{seq:06d}",
        )
        if with_frame
        else None
    )
    amap = np.random.default_rng(seq + 7).random((size // 4, size // 4), dtype=np.float32) if with_map else None
    prediction = Prediction(
        score=score,
        anomaly_map=amap,
        regions=(Region(label="crack", score=score, box_xyxy=(3, 4, 30, 40), area_px=99),),
        defect_code=defect_code if verdict is not Verdict.PASS else None,
    )
    decision = Decision(verdict=verdict, reasons=reasons, policy_id="p1", fail_at=0.71, review_at=0.55)
    return Inspection(
        inspection_id=f"{station}-{seq:08d}",
        station_id=station,
        part_seq=seq,
        frame=frame,
        prediction=prediction,
        decision=decision,
        timings=StageTimings(),
        model=MODEL,
    )
