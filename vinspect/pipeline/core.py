"""inspect_frame: the synchronous, thread-free core that judges one part and signals it.

Replay tools, tests and the station's inspection thread all call it, so a part is treated the
same way everywhere. A fault (or a forced reason such as ``overflow``) is decided without
inference; a frame goes through :func:`vinspect.pipeline.judge.judge_image`; the signal goes out
before anything touches a disk. Fault mapping: ``incomplete`` → ``incomplete_frame``,
``gap``/``timeout`` → ``missing_frame``, ``disconnected`` → ``disconnected``.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from vinspect.pipeline.decide import decide
from vinspect.pipeline.judge import judge_image
from vinspect.pipeline.signals.base import Signaller
from vinspect.pipeline.swap import Judge
from vinspect.types import Frame, FrameFault, Inspection, Reason, StageTimings

__all__ = ["FAULT_REASONS", "InspectContext", "PartTicket", "inspect_frame", "new_inspection_id"]

logger = logging.getLogger(__name__)

FAULT_REASONS: dict[str, Reason] = {"incomplete": Reason.INCOMPLETE_FRAME, "gap": Reason.MISSING_FRAME,
                                     "timeout": Reason.MISSING_FRAME, "disconnected": Reason.DISCONNECTED}
SIGNAL_ERROR_PREFIX = "signal failed: "


@dataclass(frozen=True, slots=True, kw_only=True)
class InspectContext:
    """Station-wide settings of the sync core."""

    station_id: str
    deadline_ms: float | None = None
    clock: Callable[[], int] = time.perf_counter_ns


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


def inspect_frame(item: Frame | FrameFault, *, judge: Judge, ctx: InspectContext, ticket: PartTicket,
                  signaller: Signaller) -> Inspection:
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
        j = judge_image(frame.image, bundle=judge.bundle, policy=judge.policy, pixel_format=frame.pixel_format,
                        deadline_ns=deadline, clock=clock)
        prediction, decision, error = j.prediction, j.decision, j.error
        stamps = {"preprocessed_ns": j.preprocessed_ns, "inferred_ns": j.inferred_ns, "decided_ns": j.decided_ns}
    else:
        late = deadline is not None and clock() > deadline
        fault, error = _fault_decision(item, judge=judge, ticket=ticket)
        prediction, decision = None, decide(None, judge.policy, late=late, fault=fault)
        stamps = {"decided_ns": clock()}
    timings = StageTimings(triggered_ns=ticket.acquired_ns, acquired_ns=ticket.acquired_ns, **stamps)
    inspection = Inspection(inspection_id=new_inspection_id(ticket.part_seq), station_id=ctx.station_id,
                            part_seq=ticket.part_seq, frame=frame, prediction=prediction, decision=decision,
                            timings=timings, error=error,
                            model=judge.bundle.ref if judge.bundle is not None else None)
    try:
        signaller.signal(inspection)
    except Exception as exc:  # signal boundary: the line rejects by default; count and log
        logger.exception("signal failed", extra={"part_seq": ticket.part_seq})
        return replace(inspection, error=f"{SIGNAL_ERROR_PREFIX}{type(exc).__name__}: {exc}")
    return replace(inspection, timings=replace(timings, signalled_ns=clock()))
