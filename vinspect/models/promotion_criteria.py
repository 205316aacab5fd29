"""Acceptance criteria of a candidate model, fixed before it is evaluated, and their check.

A candidate may replace the running model only when every criterion holds on evidence gathered
*after* the criteria were fixed: the comparison on a frozen evaluation set (``vinspect compare``)
and the candidate's golden self-test. Criteria left ``None`` are not part of the gate. A
criterion whose evidence does not exist (e.g. ``min_shadow_parts`` before shadow statistics are
recorded) fails, with a reason, rather than passing by default.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Criteria", "Evaluation", "failed_criteria"]


class Criteria(BaseModel):
    """What a candidate must show. Rates are shares (0.05 = 5 %)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_golden_detection: float = Field(
        1.0, ge=0.0, le=1.0, description="share of the bundle's golden defects that must FAIL"
    )
    max_false_reject_rate: float | None = Field(
        None, ge=0.0, le=1.0, description="good parts rejected at its thresholds, frozen set"
    )
    max_escape_rate: float | None = Field(
        None, ge=0.0, le=1.0, description="defects passed at its thresholds, frozen set"
    )
    min_auroc: float | None = Field(None, ge=0.0, le=1.0)
    no_worse_false_reject_than_champion: bool = True
    max_latency_p99_ms: float | None = Field(None, gt=0.0, description="e.g. the station's deadline")
    min_shadow_parts: int = Field(0, ge=0, description="parts judged in shadow on the line")


class Evaluation(BaseModel):
    """The evidence a gate is checked against (recorded in the store with its hash)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    frozen_set: dict[str, Any] | None
    golden_defects: int
    golden_defects_failed: int
    golden_goods: int
    golden_goods_passed: int
    challenger: dict[str, Any]
    champion: dict[str, Any] | None
    shadow_parts: int | None = None
    shadow: dict[str, Any] | None = None


def failed_criteria(criteria: Criteria, ev: Evaluation) -> list[str]:
    """Every criterion that does not hold, in plain words (empty: the gate passes)."""
    out: list[str] = []
    if ev.frozen_set is None:
        out.append("the comparison did not run on a frozen evaluation set")
    if ev.golden_defects == 0:
        out.append("the candidate has no golden defect samples to prove detection with")
    elif ev.golden_defects_failed / ev.golden_defects < criteria.min_golden_detection:
        out.append(
            f"golden defects detected {ev.golden_defects_failed}/{ev.golden_defects}, "
            f"below {criteria.min_golden_detection:.0%}"
        )
    if ev.golden_goods_passed < ev.golden_goods:
        out.append(f"golden good samples passed {ev.golden_goods_passed}/{ev.golden_goods}")
    op = ev.challenger.get("operating_point", {})
    _ceiling(out, "good parts rejected", op.get("false_reject_rate"), criteria.max_false_reject_rate)
    _ceiling(out, "defects escaping", op.get("escape_rate"), criteria.max_escape_rate)
    if criteria.min_auroc is not None:
        auroc = ev.challenger.get("auroc")
        if auroc is None or auroc < criteria.min_auroc:
            out.append(f"AUROC {'unknown' if auroc is None else f'{auroc:.4f}'} below {criteria.min_auroc:.4f}")
    if criteria.no_worse_false_reject_than_champion and ev.champion is not None:
        mine = op.get("false_reject_rate")
        theirs = ev.champion.get("operating_point", {}).get("false_reject_rate")
        if mine is not None and theirs is not None and mine > theirs:
            out.append(f"rejects more good parts than the champion ({mine:.1%} vs {theirs:.1%})")
    if criteria.max_latency_p99_ms is not None:
        p99 = ev.challenger.get("latency_ms", {}).get("p99")
        if p99 is None or p99 > criteria.max_latency_p99_ms:
            out.append(
                f"latency p99 {'unknown' if p99 is None else f'{p99:.2f} ms'} over {criteria.max_latency_p99_ms:.2f} ms"
            )
    if criteria.min_shadow_parts > 0 and (ev.shadow_parts or 0) < criteria.min_shadow_parts:
        out.append(f"{ev.shadow_parts or 0} parts judged in shadow, {criteria.min_shadow_parts} required")
    return out


def _ceiling(out: list[str], what: str, value: Any, ceiling: float | None) -> None:
    if ceiling is None:
        return
    if value is None:
        out.append(f"{what}: not measured (the frozen set needs good and defective parts)")
    elif value > ceiling:
        out.append(f"{what} {value:.1%}, over the {ceiling:.1%} ceiling")
