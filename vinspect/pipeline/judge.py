"""Judging one part: the :class:`Judge` in force, :func:`judge_image` and :func:`inspect_frame`.

This is the synchronous, thread-free core. `vinspect inspect`, `vinspect eval`, replay, the
golden self-test and the station loop all call :func:`judge_image`, so a part is judged the same
way everywhere. Any exception in preprocess, inference or postprocess becomes the policy's error
verdict with reason ``error:<Class>``; it is never a PASS. A frame the model refuses
(:class:`~vinspect.errors.FrameRejected`: wrong size, blank, saturated, unregistrable) is a FAIL
with the model's own reason (``frame_size``, ``blank_frame``, ``alignment``, ...).

:func:`inspect_frame` judges one *part* of the station and signals it: a fault (or a forced
reason such as ``overflow``) is decided without inference; a frame goes through
:func:`judge_image`; the signal goes out before anything touches a disk. Fault mapping:
``incomplete`` → ``incomplete_frame``, ``gap``/``timeout`` → ``missing_frame``, ``disconnected`` →
``disconnected``.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from vinspect.errors import FrameRejected
from vinspect.models.runtime import Bundle
from vinspect.pipeline.decide import DecisionPolicy, decide
from vinspect.pipeline.postprocess import to_prediction
from vinspect.pipeline.preprocess import to_model_input
from vinspect.pipeline.signals.base import Signaller
from vinspect.types import Decision, Frame, FrameFault, Inspection, ModelRef, Prediction, Reason, StageTimings

__all__ = [
    "FAULT_REASONS",
    "SIGNAL_ERROR_PREFIX",
    "InspectContext",
    "Judge",
    "Judgement",
    "PartTicket",
    "inspect_frame",
    "judge_image",
    "new_inspection_id",
    "unavailable_judge",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Judge:
    """What judges parts right now: a verified bundle and its policy, or no bundle at all.

    With ``bundle`` None every part is a FAIL with ``unavailable_reason`` (station gated out).
    """

    bundle: Bundle | None
    policy: DecisionPolicy
    unavailable_reason: str = Reason.MODEL_UNAVAILABLE

    @property
    def ref(self) -> ModelRef | None:
        return None if self.bundle is None else self.bundle.ref


def unavailable_judge(reason: str = Reason.MODEL_UNAVAILABLE) -> Judge:
    """A judge that fails every part (no model passed the gate)."""
    return Judge(
        bundle=None,
        policy=DecisionPolicy(fail_at=0.0, review_at=0.0, policy_id="unavailable"),
        unavailable_reason=reason,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Judgement:
    """Prediction (None if inference failed), decision, error text and stage stamps (ns)."""

    prediction: Prediction | None
    decision: Decision
    error: str | None
    started_ns: int
    preprocessed_ns: int
    inferred_ns: int
    decided_ns: int

    @property
    def latency_ms(self) -> float:
        """Preprocess + inference + postprocess + decision, in milliseconds."""
        return (self.decided_ns - self.started_ns) / 1e6


def judge_image(
    image: npt.NDArray[np.uint8] | npt.NDArray[np.uint16],
    *,
    bundle: Bundle,
    policy: DecisionPolicy,
    pixel_format: str = "Mono8",
    deadline_ns: int | None = None,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> Judgement:
    """Judge one image; ``deadline_ns`` (on ``clock``) makes a late verdict a FAIL."""
    started = clock()
    pre = inf = started
    prediction: Prediction | None = None
    error: str | None = None
    fault: str | None = None
    try:
        tensor = to_model_input(image, spec=bundle.manifest.input, pixel_format=pixel_format)
        pre = clock()
        raw = bundle.model.run(tensor)
        inf = clock()
        prediction = to_prediction(
            raw,
            manifest=bundle.manifest,
            review_at=policy.review_at,
            image_hw=(int(image.shape[0]), int(image.shape[1])),
        )
    except FrameRejected as exc:  # the model refused the frame: FAIL with its reason, no traceback
        fault, error = exc.reason, str(exc)
        logger.warning("frame rejected: %s", exc, extra={"fault": fault})
    except Exception as exc:  # inspection boundary: any failure must still produce a verdict
        fault = Reason.error(exc)
        error = str(exc)
        logger.exception("inspection failed", extra={"fault": fault})
    done = clock()
    late = deadline_ns is not None and done > deadline_ns
    decision = decide(prediction, policy, late=late, fault=fault)
    return Judgement(
        prediction=prediction,
        decision=decision,
        error=error,
        started_ns=started,
        preprocessed_ns=pre,
        inferred_ns=inf,
        decided_ns=clock(),
    )


# ---------------------------------------------------------------- one station part

FAULT_REASONS: dict[str, Reason] = {
    "incomplete": Reason.INCOMPLETE_FRAME,
    "gap": Reason.MISSING_FRAME,
    "timeout": Reason.MISSING_FRAME,
    "disconnected": Reason.DISCONNECTED,
}
SIGNAL_ERROR_PREFIX = "signal failed: "


@dataclass(frozen=True, slots=True, kw_only=True)
class InspectContext:
    """Station-wide settings of the sync core."""

    station_id: str
    deadline_ms: float | None = None
    clock: Callable[[], int] = time.perf_counter_ns
    config_sha256: str | None = None  # the station configuration version every inspection records


@dataclass(frozen=True, slots=True, kw_only=True)
class PartTicket:
    """One part's identity and timing: its sequence number, when its frame arrived, and a fault
    that decides it without inference (``overflow``, ``store_unavailable``), if any."""

    part_seq: int
    acquired_ns: int
    fault: str | None = None


def new_inspection_id(part_seq: int) -> str:
    """A time-sortable id: 16 hex digits of UTC ns, part seq, 4 random hex digits."""
    return f"{time.time_ns():016x}-{part_seq:08d}-{secrets.token_hex(2)}"


def _fault_decision(item: Frame | FrameFault, *, judge: Judge, ticket: PartTicket) -> tuple[str, str | None]:
    if ticket.fault is not None:
        return ticket.fault, None
    if isinstance(item, FrameFault):
        return FAULT_REASONS.get(item.reason, item.reason), item.detail or None
    return judge.unavailable_reason, None


def inspect_frame(
    item: Frame | FrameFault, *, judge: Judge, ctx: InspectContext, ticket: PartTicket, signaller: Signaller
) -> Inspection:
    """Judge one part and signal its disposition at once; never raises for a bad part.

    Args:
        item: the frame, or the fault standing for the part (never inferred).
        judge: the model (None inside when gated out: every part FAILs) and its policy.
        ctx: station id, deadline (ms after the frame was acquired) and clock (ns).
        ticket: part sequence number, acquisition stamp, forced fault if any.
        signaller: the line output; a failure here is logged and noted in ``error``
            (the line rejects by default), never raised.

    Returns:
        The inspection, with every stage stamp on ``ctx.clock``.
    """
    clock = ctx.clock
    deadline = None if ctx.deadline_ms is None else ticket.acquired_ns + int(ctx.deadline_ms * 1e6)
    frame = item if isinstance(item, Frame) else None
    if frame is not None and ticket.fault is None and judge.bundle is not None:
        j = judge_image(
            frame.image,
            bundle=judge.bundle,
            policy=judge.policy,
            pixel_format=frame.pixel_format,
            deadline_ns=deadline,
            clock=clock,
        )
        prediction, decision, error = j.prediction, j.decision, j.error
        stamps = {
            "started_ns": j.started_ns,
            "preprocessed_ns": j.preprocessed_ns,
            "inferred_ns": j.inferred_ns,
            "decided_ns": j.decided_ns,
        }
    else:
        late = deadline is not None and clock() > deadline
        fault, error = _fault_decision(item, judge=judge, ticket=ticket)
        prediction, decision = None, decide(None, judge.policy, late=late, fault=fault)
        stamps = {"decided_ns": clock()}
    timings = StageTimings(triggered_ns=ticket.acquired_ns, acquired_ns=ticket.acquired_ns, **stamps)
    inspection = Inspection(
        inspection_id=new_inspection_id(ticket.part_seq),
        station_id=ctx.station_id,
        part_seq=ticket.part_seq,
        frame=frame,
        prediction=prediction,
        decision=decision,
        timings=timings,
        error=error,
        config_sha256=ctx.config_sha256,
        model=judge.bundle.ref if judge.bundle is not None else None,
    )
    try:
        signaller.signal(inspection)
    except Exception as exc:  # signal boundary: the line rejects by default; count and log
        logger.exception("signal failed", extra={"part_seq": ticket.part_seq})
        return replace(inspection, error=f"{SIGNAL_ERROR_PREFIX}{type(exc).__name__}: {exc}")
    return replace(inspection, timings=replace(timings, signalled_ns=clock()))
