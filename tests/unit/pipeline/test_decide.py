"""The verdict rule: nothing passes without a finite, on-time score below review_at."""

from __future__ import annotations

import math

import pytest

from vinspect.pipeline.decide import DecisionPolicy, decide
from vinspect.types import Prediction, Verdict

POLICY = DecisionPolicy(fail_at=0.7, review_at=0.5, policy_id="p")


def _p(score: float) -> Prediction:
    return Prediction(score=score)


@pytest.mark.parametrize(
    ("prediction", "late", "fault", "verdict", "reasons"),
    [
        (_p(0.1), False, None, Verdict.PASS, ()),
        (_p(0.5), False, None, Verdict.REVIEW, ("review_band",)),
        (_p(0.69), False, None, Verdict.REVIEW, ("review_band",)),
        (_p(0.7), False, None, Verdict.FAIL, ("score",)),
        (_p(math.nan), False, None, Verdict.FAIL, ("non_finite",)),
        (_p(math.inf), False, None, Verdict.FAIL, ("non_finite",)),
        (_p(-math.inf), False, None, Verdict.FAIL, ("non_finite",)),
        (_p(0.1), True, None, Verdict.FAIL, ("late",)),
        (_p(0.6), True, None, Verdict.FAIL, ("review_band", "late")),
        (None, False, None, Verdict.FAIL, ("no_prediction",)),
        (None, False, "error:ModelError", Verdict.FAIL, ("error:ModelError",)),
        (_p(0.1), False, "incomplete_frame", Verdict.FAIL, ("incomplete_frame",)),
        (None, True, "overflow", Verdict.FAIL, ("overflow", "late")),
    ],
)
def test_decide_table(prediction, late, fault, verdict, reasons) -> None:
    d = decide(prediction, POLICY, late=late, fault=fault)
    assert (d.verdict, d.reasons) == (verdict, reasons)
    assert (d.policy_id, d.fail_at, d.review_at) == ("p", 0.7, 0.5)


def test_decide_on_error_review_is_still_a_reject() -> None:
    policy = DecisionPolicy(fail_at=0.7, review_at=0.5, on_error=Verdict.REVIEW)
    assert decide(None, policy, late=False, fault="error:X").verdict is Verdict.REVIEW


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"fail_at": 0.4, "review_at": 0.5}, "must not exceed"),
        ({"fail_at": math.nan, "review_at": 0.5}, "finite"),
        ({"fail_at": 0.7, "review_at": 0.5, "on_error": Verdict.PASS}, "never accepted"),
    ],
)
def test_decision_policy_refuses_unsafe_values(kwargs, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        DecisionPolicy(**kwargs)
