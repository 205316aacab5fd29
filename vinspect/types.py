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
    "MODEL_REASONS",
    "Books",
    "Decision",
    "Disposition",
    "Frame",
    "FrameFault",
    "FrameOrigin",
    "Inspection",
    "ModelRef",
    "Prediction",
    "Reason",
    "Region",
    "StageTimings",
    "StationState",
    "Verdict",
    "books_key",
    "disposition_of",
    "first_fault",
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
    """Model output for one image (the model that produced it is :attr:`Inspection.model`).

    ``score`` is the calibrated image score in 0..1 (0.5 = the operating threshold by
    construction, see ``vinspect.models.calibration``).
    """

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


class Reason(enum.StrEnum):
    """Why a part got its verdict: the fixed reasons ``decide`` and the station loop give.

    ``SCORE`` and ``REVIEW_BAND`` are the model's own judgement (:data:`MODEL_REASONS`); every
    other reason is a *fault*: the part has no valid, on-time verdict. Reasons outside this
    enum are faults too: ``error:<Class>`` (an exception while judging, see :meth:`error`) and a
    model's frame refusal (``frame_size``, ``blank_frame``, ``alignment``, ...).
    """

    SCORE = "score"
    REVIEW_BAND = "review_band"
    NON_FINITE = "non_finite"
    LATE = "late"
    NO_PREDICTION = "no_prediction"
    OVERFLOW = "overflow"
    STORE_UNAVAILABLE = "store_unavailable"
    INCOMPLETE_FRAME = "incomplete_frame"
    MISSING_FRAME = "missing_frame"
    DISCONNECTED = "disconnected"
    MODEL_UNAVAILABLE = "model_unavailable"
    CRASH = "crash"  # a number handed out before a station crash, never recorded (vinspect.pipeline.part_numbers)
    INTERNAL_ERROR = "error:internal"

    @staticmethod
    def error(exc: BaseException) -> str:
        """The fault reason for an exception raised while judging: ``error:<Class>``."""
        return f"error:{type(exc).__name__}"


MODEL_REASONS: frozenset[str] = frozenset({Reason.SCORE, Reason.REVIEW_BAND})
"""The reasons that are a model's judgement; any other reason is a fault."""


class Disposition(enum.StrEnum):
    """How a part is booked, stored and signalled (the one rule: :func:`disposition_of`).

    The Modbus verdict register, the books and the NCR's machine verdict all follow it: PASS is
    the only accept; FAULT (booked under the fault reason, an ``ERROR_REJECT`` NCR, register 3)
    wins over the verdict, so a fault stays a fault when the policy maps errors to REVIEW.
    """

    PASS = "pass"
    REVIEW = "review"
    DEFECT = "defect"
    FAULT = "fault"


def first_fault(reasons: tuple[str, ...] | list[str]) -> str | None:
    """The first reason that is not a model judgement (the part's fault), or None."""
    for reason in reasons:
        if reason not in MODEL_REASONS:
            return str(reason)
    return None


def disposition_of(verdict: Verdict, reasons: tuple[str, ...] | list[str]) -> Disposition:
    """FAULT when any reason is a fault (whatever the verdict), else PASS, REVIEW or DEFECT by verdict."""
    if first_fault(reasons) is not None:
        return Disposition.FAULT
    if verdict is Verdict.PASS:
        return Disposition.PASS
    return Disposition.REVIEW if verdict is Verdict.REVIEW else Disposition.DEFECT


def books_key(verdict: Verdict, reasons: tuple[str, ...] | list[str]) -> str:
    """The key a part is booked under: its fault reason, else ``pass``, ``review`` or ``defect``."""
    return first_fault(reasons) or disposition_of(verdict, reasons).value


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """A verdict plus every reason that produced it and the thresholds in force."""

    verdict: Verdict
    reasons: tuple[str, ...]
    policy_id: str
    fail_at: float
    review_at: float

    @property
    def fault(self) -> str | None:
        """The fault the part is booked under (the first non-model reason), or None."""
        return first_fault(self.reasons)

    @property
    def disposition(self) -> Disposition:
        """How the part is booked, stored and signalled; see :class:`Disposition`."""
        return disposition_of(self.verdict, self.reasons)

    @property
    def books_key(self) -> str:
        """The books' key: the fault reason, else ``pass``, ``review`` or ``defect``."""
        return books_key(self.verdict, self.reasons)


@dataclass(frozen=True, slots=True, kw_only=True)
class StageTimings:
    """``time.perf_counter_ns`` stamps of each stage; 0 for a stage never reached. ``started_ns``:
    the inspection thread took the part up (after the hand-over and the queue wait)."""

    triggered_ns: int = 0
    acquired_ns: int = 0
    started_ns: int = 0
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
    model: ModelRef | None
    """The model in force for this part, the one place its identity is kept (also when inference
    produced nothing); None only while the station is gated out with no model loaded."""
    error: str | None = None
    config_sha256: str | None = None
    """The station configuration in force (:meth:`vinspect.station_file.StationConfig.config_sha256`);
    None for a part judged outside a station file (tests, ``vinspect inspect``) or not known
    (crash records written for a previous run)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Books:
    """Counters that must close: triggers == passed + review + failed_defect + sum(failed_fault)."""

    triggers: int = 0
    passed: int = 0
    review: int = 0
    failed_defect: int = 0
    failed_fault: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_keys(cls, *, triggers: int, counts: Mapping[str, int]) -> Books:
        """Books from counts per :func:`books_key` (``pass``, ``review``, ``defect``, fault reasons)."""
        d = Disposition
        named = {d.PASS.value, d.REVIEW.value, d.DEFECT.value}
        return cls(
            triggers=triggers,
            passed=counts.get(d.PASS.value, 0),
            review=counts.get(d.REVIEW.value, 0),
            failed_defect=counts.get(d.DEFECT.value, 0),
            failed_fault={k: v for k, v in counts.items() if k not in named and v},
        )

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
