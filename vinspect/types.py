"""Core value types shared by every layer (stdlib + numpy only).

All are frozen, slotted, keyword-only dataclasses: values, never edited after creation. Arrays
held by them are made read-only by their producers.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "Books",
    "Decision",
    "Frame",
    "FrameFault",
    "FrameOrigin",
    "Inspection",
    "ModelRef",
    "Prediction",
    "Region",
    "StageTimings",
    "StationState",
    "Verdict",
]

FrameOrigin = Literal["camera", "replay", "genicam+replay", "synthetic", "folder"]
FaultReason = Literal["timeout", "incomplete", "gap", "disconnected"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Frame:
    """One acquired image, owned by vinspect (never a view into driver memory).

    ``label`` carries the ground-truth class when a replay/folder source knows it ("good" or a
    defect name), so runs can be scored; cameras leave it None. ``acquired_ns``: host
    CLOCK_MONOTONIC (``time.monotonic_ns``) when the frame reached the host (the buffer came
    out of the producer, or the folder image was due), stamped in whichever process acquired
    it; the pipeline's latency and deadline start there. ``device_ts_ns`` is the camera's own
    clock, not comparable with the host's without a latch or PTP.
    """

    image: npt.NDArray[np.uint8] | npt.NDArray[np.uint16]
    source_id: str
    frame_id: int
    captured_at: datetime
    pixel_format: str
    origin: FrameOrigin
    device_ts_ns: int | None = None
    part_id: str | None = None
    label: str | None = None
    acquired_ns: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameFault:
    """A trigger or buffer that produced no usable image; becomes a FAIL downstream."""

    source_id: str
    frame_id: int | None
    reason: FaultReason
    at: datetime
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelRef:
    """Identity of the model that judged a part."""

    name: str
    version: str
    sha256: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Region:
    """A connected area of the anomaly map above the decision threshold."""

    label: str
    score: float
    box_xyxy: tuple[int, int, int, int]
    area_px: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Prediction:
    """Model output for one image.

    ``score`` is the calibrated image score in 0..1 (0.5 = the operating threshold by
    construction, see ``vinspect.models.calibration``).
    """

    model: ModelRef
    score: float
    anomaly_map: npt.NDArray[np.float32] | None = None
    regions: tuple[Region, ...] = ()
    defect_probs: Mapping[str, float] = field(default_factory=dict)
    defect_code: str | None = None


class Verdict(enum.StrEnum):
    """The disposition of one part; only PASS is ever signalled as accept."""

    PASS = "PASS"
    FAIL = "FAIL"
    REVIEW = "REVIEW"


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """A verdict plus every reason that produced it and the thresholds in force."""

    verdict: Verdict
    reasons: tuple[str, ...]
    policy_id: str
    fail_at: float
    review_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class StageTimings:
    """``time.perf_counter_ns`` stamps of each stage; 0 for a stage never reached."""

    triggered_ns: int = 0
    acquired_ns: int = 0
    preprocessed_ns: int = 0
    inferred_ns: int = 0
    decided_ns: int = 0
    signalled_ns: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Inspection:
    """The complete record of one part's inspection."""

    inspection_id: str
    station_id: str
    part_seq: int
    frame: Frame | None
    prediction: Prediction | None
    decision: Decision
    timings: StageTimings
    error: str | None = None
    model: ModelRef | None = None
    """The model in force for this part (also when inference produced nothing); None only
    while the station is gated out with no model loaded."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Books:
    """Counters that must close: triggers == passed + review + failed_defect + sum(failed_fault)."""

    triggers: int = 0
    passed: int = 0
    review: int = 0
    failed_defect: int = 0
    failed_fault: Mapping[str, int] = field(default_factory=dict)

    @property
    def discrepancy(self) -> int:
        """Triggers not accounted for by any disposition (0 when the books close)."""
        accounted = self.passed + self.review + self.failed_defect + sum(self.failed_fault.values())
        return self.triggers - accounted


class StationState(enum.StrEnum):
    """Station lifecycle, OPC 40100 vocabulary."""

    PREOPERATIONAL = "PREOPERATIONAL"
    OPERATIONAL = "OPERATIONAL"
    DEGRADED = "DEGRADED"
    ERROR = "ERROR"
    STOPPED = "STOPPED"
