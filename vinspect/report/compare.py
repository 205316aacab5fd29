"""Champion vs challenger: two bundles judged on the same images, side by side.

Each image is decoded once and judged by both bundles back to back, alternating which goes
first, so their latencies share the same machine state (a comparison run at different times on
a 2-core PC compares the load, not the models). Each bundle is judged at its own thresholds,
exactly as a station would run it. The result holds both :func:`summarize` outputs, the change
of every headline figure, and every image whose verdict changed, grouped by what the change
means on the line: a good part newly rejected, a good part newly passed, a defect newly caught,
a defect newly escaping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from vinspect.dataset.images import read_image
from vinspect.dataset.layouts import Sample
from vinspect.errors import ImageDecodeError
from vinspect.models.runtime import Bundle
from vinspect.pipeline.decide import DecisionPolicy
from vinspect.pipeline.judge import judge_image
from vinspect.report.evaluate import Scored, summarize
from vinspect.types import Verdict

__all__ = ["Comparison", "GoldenOutcome", "compare_bundles", "golden_outcome"]

_HEADLINE = ("auroc", "f1", "false_reject_rate_at_zero_escape", "defect_type_accuracy")


@dataclass(frozen=True, slots=True, kw_only=True)
class Comparison:
    """Both evaluations, their differences, and the images whose verdict changed."""

    champion: dict[str, Any]
    challenger: dict[str, Any]
    delta: dict[str, float | None]
    changed: list[dict[str, Any]]
    champion_scored: list[Scored]
    challenger_scored: list[Scored]

    def to_json(self) -> dict[str, Any]:
        """JSON-ready (the scored lists are summarised in ``changed``)."""
        kinds: dict[str, int] = {}
        for c in self.changed:
            kinds[c["change"]] = kinds.get(c["change"], 0) + 1
        return {
            "champion": self.champion,
            "challenger": self.challenger,
            "delta": self.delta,
            "changed_counts": kinds,
            "changed": self.changed,
        }


def _change(sample: Sample, before: Verdict, after: Verdict) -> str:
    rejected_before, rejected_after = before is not Verdict.PASS, after is not Verdict.PASS
    if rejected_before == rejected_after:
        return "verdict_changed"  # e.g. FAIL <-> REVIEW: still off the line, different handling
    if sample.is_good:
        return "good_newly_rejected" if rejected_after else "good_newly_passed"
    return "defect_newly_caught" if rejected_after else "defect_newly_escaping"


def compare_bundles(
    samples: list[Sample],
    *,
    champion: Bundle,
    challenger: Bundle,
    champion_policy: DecisionPolicy,
    challenger_policy: DecisionPolicy,
    progress: bool = True,
) -> Comparison:
    """Judge every sample with both bundles (interleaved) and compare."""
    a_scored: list[Scored] = []
    b_scored: list[Scored] = []
    for i, sample in enumerate(tqdm(samples, desc="champion vs challenger", unit="img", disable=not progress)):
        try:
            image = read_image(sample.path)
        except ImageDecodeError as exc:
            a_scored.append(Scored(sample=sample, judgement=None, error=str(exc)))
            b_scored.append(Scored(sample=sample, judgement=None, error=str(exc)))
            continue
        if i % 2 == 0:
            ja = judge_image(image, bundle=champion, policy=champion_policy)
            jb = judge_image(image, bundle=challenger, policy=challenger_policy)
        else:
            jb = judge_image(image, bundle=challenger, policy=challenger_policy)
            ja = judge_image(image, bundle=champion, policy=champion_policy)
        a_scored.append(Scored(sample=sample, judgement=ja))
        b_scored.append(Scored(sample=sample, judgement=jb))
    a = summarize(a_scored, bundle=champion, policy=champion_policy)
    b = summarize(b_scored, bundle=challenger, policy=challenger_policy)
    delta: dict[str, float | None] = {}
    for key in _HEADLINE:
        delta[key] = None if a[key] is None or b[key] is None else float(b[key]) - float(a[key])
    for key in ("false_reject_rate", "escape_rate"):
        va, vb = a["operating_point"][key], b["operating_point"][key]
        delta[f"operating_point.{key}"] = None if va is None or vb is None else float(vb) - float(va)
    for key in ("p50", "p99"):
        va, vb = a["latency_ms"][key], b["latency_ms"][key]
        delta[f"latency_ms.{key}"] = None if va is None or vb is None else float(vb) - float(va)
    changed = []
    for sa, sb in zip(a_scored, b_scored, strict=True):
        if sa.judgement is None or sb.judgement is None:
            continue
        va, vb = sa.judgement.decision.verdict, sb.judgement.decision.verdict
        if va is vb:
            continue
        changed.append(
            {
                "file": str(sa.sample.path),
                "label": sa.sample.label,
                "is_good": sa.sample.is_good,
                "change": _change(sa.sample, va, vb),
                "champion": {"verdict": va.value, "score": sa.score},
                "challenger": {"verdict": vb.value, "score": sb.score},
            }
        )
    return Comparison(
        champion=a, challenger=b, delta=delta, changed=changed, champion_scored=a_scored, challenger_scored=b_scored
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class GoldenOutcome:
    """How a bundle judges its own golden samples (each at the bundle's own thresholds)."""

    defects: int
    defects_failed: int
    goods: int
    goods_passed: int


def golden_outcome(bundle: Bundle, policy: DecisionPolicy) -> GoldenOutcome:
    """Judge every golden sample: defects that FAIL, goods that PASS (unreadable ones count as missed)."""
    defects = failed = goods = passed = 0
    for sample in bundle.manifest.golden_samples:
        try:
            verdict = judge_image(read_image(bundle.path / sample.file), bundle=bundle, policy=policy).decision.verdict
        except ImageDecodeError:
            verdict = None
        if sample.expect == "FAIL":
            defects += 1
            failed += verdict is Verdict.FAIL
        else:
            goods += 1
            passed += verdict is Verdict.PASS
    return GoldenOutcome(defects=defects, defects_failed=failed, goods=goods, goods_passed=passed)
