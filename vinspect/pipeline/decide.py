"""The verdict rule. Pure, and kept at 100 % branch coverage by CI.

Only a finite, on-time score below ``review_at`` with no fault is ever a PASS. Everything else
is FAIL (or REVIEW for the band just below ``fail_at``), with every reason that applied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vinspect.types import Decision, Prediction, Reason, Verdict

__all__ = ["DecisionPolicy", "decide"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionPolicy:
    """Thresholds in the model's score units and the verdict used when inspection fails."""

    fail_at: float
    review_at: float
    policy_id: str = "default"
    on_error: Verdict = Verdict.FAIL

    def __post_init__(self) -> None:
        if not (math.isfinite(self.fail_at) and math.isfinite(self.review_at)):
            raise ValueError("policy thresholds must be finite")
        if self.review_at > self.fail_at:
            raise ValueError(f"review_at ({self.review_at}) must not exceed fail_at ({self.fail_at})")
        if self.on_error is Verdict.PASS:
            raise ValueError("on_error cannot be PASS: a part without a valid verdict is never accepted")


def decide(prediction: Prediction | None, policy: DecisionPolicy, *, late: bool, fault: str | None = None) -> Decision:
    """Turn a prediction into the verdict signalled to the line.

    Args:
        prediction: model output; None when no valid inference exists for the part.
        policy: thresholds and the verdict used on errors.
        late: True when the verdict is ready after the part's deadline.
        fault: why no valid inference exists (``error:<Class>``, ``incomplete_frame``,
            ``missing_frame``, ``overflow``, ...), if known.

    Returns:
        PASS only for a finite, on-time score below ``policy.review_at`` without a fault;
        otherwise REVIEW or FAIL, with every reason that applied.
    """
    reasons: list[str] = []
    verdict = Verdict.PASS
    if fault is not None or prediction is None:
        reasons.append(fault or Reason.NO_PREDICTION)
        verdict = policy.on_error
    elif not math.isfinite(prediction.score):
        reasons.append(Reason.NON_FINITE)
        verdict = Verdict.FAIL
    elif prediction.score >= policy.fail_at:
        reasons.append(Reason.SCORE)
        verdict = Verdict.FAIL
    elif prediction.score >= policy.review_at:
        reasons.append(Reason.REVIEW_BAND)
        verdict = Verdict.REVIEW
    if late:
        reasons.append(Reason.LATE)
        verdict = Verdict.FAIL
    return Decision(
        verdict=verdict,
        reasons=tuple(str(r) for r in reasons),
        policy_id=policy.policy_id,
        fail_at=policy.fail_at,
        review_at=policy.review_at,
    )
