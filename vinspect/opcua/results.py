"""Inspections as OPC 40100-1 results, and station states as ``VisionStateMachine`` states (no asyncua).

Field names follow OPC 40100-1 ``ResultDataType`` / ``ProcessingTimesDataType``; the values:

* ``ResultId``: the inspection id (unique per part); ``PartId``: the part id the source gave, else
  ``<station>:<part seq>``; ``IsPartial``: always false (one verdict per part).
* ``ResultState`` (Int32, system-specific in the specification): 1 accept, 2 reject (defect),
  3 reject (fault: no valid verdict in time, unreadable frame, ...), 4 reject (review), the same
  codes the Modbus handshake writes.
* ``CreationTime``: when the verdict was decided (UTC); ``StartTime``/``EndTime``: frame acquired /
  line signalled; ``AcquisitionDuration`` (trigger to frame) and ``ProcessingDuration`` (frame to
  verdict) in milliseconds (OPC UA ``Duration``).
* ``InternalRecipeId``: ``<model name>:<version>`` of the model in force (the recipe),
  ``DefectCode``: the model's defect class or the fault reason; empty for an accepted part.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from vinspect.pipeline.signals.base import ACCEPT, REJECT_FAULT, verdict_code
from vinspect.types import Inspection, StationState

__all__ = ["VISION_STATES", "VisionResult", "result_of", "vision_state"]

# OPC 40100-1 VisionStateMachineType top-level states, from vinspect's station states.
VISION_STATES = ("Preoperational", "Operational", "Halted", "Error")
_STATE_MAP = {
    StationState.PREOPERATIONAL: "Preoperational",
    StationState.OPERATIONAL: "Operational",
    StationState.DEGRADED: "Operational",  # still judging parts; faults are in the results and alarms
    StationState.ERROR: "Error",
    StationState.STOPPED: "Halted",
}


def vision_state(state: str) -> str:
    """The 40100-1 state name of a vinspect station state (unknown -> Error)."""
    try:
        return _STATE_MAP[StationState(state)]
    except ValueError:
        return "Error"


@dataclass(frozen=True, slots=True, kw_only=True)
class VisionResult:
    result_id: str
    part_id: str
    result_state: int
    is_partial: bool
    creation_time: datetime
    start_time: datetime | None
    end_time: datetime | None
    acquisition_duration_ms: float
    processing_duration_ms: float
    internal_recipe_id: str
    defect_code: str
    part_seq: int


def _ms(later_ns: int, earlier_ns: int) -> float:
    return round((later_ns - earlier_ns) / 1e6, 3) if later_ns and earlier_ns and later_ns >= earlier_ns else 0.0


def result_of(inspection: Inspection, *, decided_at: datetime) -> VisionResult:
    """The result an MES receives for one part."""
    t, frame, prediction = inspection.timings, inspection.frame, inspection.prediction
    state = verdict_code(inspection)
    model = inspection.model
    start = frame.captured_at if frame is not None else None
    end = start + timedelta(milliseconds=_ms(t.signalled_ns, t.acquired_ns)) if start and t.signalled_ns else None
    if state == ACCEPT:
        code = ""
    elif state == REJECT_FAULT:
        code = inspection.decision.fault or "fault"
    else:
        code = (prediction.defect_code if prediction is not None else None) or "anomaly"
    part_id = frame.part_id if frame is not None and frame.part_id else None
    return VisionResult(
        result_id=inspection.inspection_id,
        part_id=part_id or f"{inspection.station_id}:{inspection.part_seq}",
        result_state=state,
        is_partial=False,
        creation_time=decided_at,
        start_time=start,
        end_time=end,
        acquisition_duration_ms=_ms(t.acquired_ns, t.triggered_ns),
        processing_duration_ms=_ms(t.decided_ns, t.acquired_ns),
        internal_recipe_id=f"{model.name}:{model.version}" if model is not None else "",
        defect_code=code,
        part_seq=inspection.part_seq,
    )
