"""Threshold calibration and the detection metrics that training, ``vinspect eval`` and bench share.

Pure numpy. Scores follow the manifest convention: higher is more anomalous, a part FAILs at
``score >= fail_at`` and goes to REVIEW at ``review_at <= score < fail_at``.

**How ``fail_at`` is chosen** (:func:`calibrate`), from scores of held-out validation parts:

1. Target ``zero_escape`` (default, needs validation defects): no validation defect may pass, so
   ``fail_at <= min(defect scores)``; among those thresholds the false-reject rate is lowest at
   ``min(defect scores)``. Target ``frr`` (or no validation defects): at most
   ``floor(frr_target * n_good)`` validation goods may fail.
2. Every threshold between the highest good that must pass (``g*``) and that upper bound gives the
   same validation rates. We take the *lowest* one that keeps a margin above ``g*``: the threshold
   guards against defect kinds nobody labelled, and those look like "a bit worse than the worst
   good", not like the labelled defects. The margin is ``margin_fraction`` of the gap, capped at
   ``margin_cap`` times the spread of the goods (``g* - median(good)``), so a very confident
   classifier cannot push ``fail_at`` far above the goods.

**The false-reject ceiling** (``frr_ceiling``, default 5 %): when catching every validation defect
would fail more than the ceiling of validation goods (good and defective parts overlap), zero
escapes is not bought by scrapping good parts. Instead ``review_at`` is the zero-escape point
(PASS only below it) and ``fail_at`` is the ``frr`` threshold for the ceiling (at most the
ceiling of validation goods FAIL); the parts between go to REVIEW, a person's decision. The
expected rates at the chosen thresholds, with exact confidence intervals, and plain-words
warnings about the targets the bundle cannot meet are stated in :class:`OperatingPoint`
(:func:`operating_point`). Escapes count defects that PASS (below ``review_at``).

**Open-set fusion** (``fixed_fail_at``, labelled graphs trained with ``fusion: open_set``): the
graph already FAILs a part where either signal passes its own threshold (:func:`path_threshold` on
validation goods alone), which lands on the fused score's ``fixed_fail_at``. ``fail_at`` stays
there, so the labelled defects never raise the anomaly path's threshold; it moves up only when the
false-reject ceiling is exceeded, and then the text says so. ``review_at`` is the review-rate
level, lowered to the zero-escape point when validation defects score below it.

``review_at`` is otherwise the lowest level at or above which at most ``review_rate`` of the validation
goods score (never above ``fail_at``); ``map_at`` is the ``1 - map_pixel_rate`` quantile of the
validation goods' anomaly-map pixels (never above ``fail_at``), or ``review_at`` without maps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import numpy.typing as npt

from vinspect.errors import ModelError
from vinspect.models.intervals import clopper_pearson
from vinspect.models.manifest import CalibrationEvidence, FusionSpec, OperatingPoint, RateEstimate, Thresholds

__all__ = [
    "CalibrationTarget",
    "anomaly_cap",
    "auroc",
    "best_f1",
    "calibrate",
    "describe_fusion",
    "describe_operating_point",
    "detection_rate_by_class",
    "escape_rate",
    "false_reject_rate",
    "false_reject_rate_at_zero_escape",
    "operating_point",
    "path_threshold",
    "rate_estimate",
    "summarize",
    "thresholds_for_ceiling",
]

Scores = npt.ArrayLike


@dataclass(frozen=True, slots=True, kw_only=True)
class CalibrationTarget:
    """What the operating threshold must achieve on validation data.

    Attributes:
        kind: ``zero_escape`` (catch every validation defect, then the lowest false-reject rate;
            falls back to ``frr`` when there are no validation defects) or ``frr``.
        frr_target: the false-reject rate allowed on validation goods for the ``frr`` target.
        margin_fraction: where ``fail_at`` sits in the free gap above the highest passing good
            (0 = right above it, 1 = at the upper bound).
        margin_cap: the margin never exceeds this times ``g* - median(good)``.
        review_rate: share of validation goods at or above ``review_at`` (REVIEW or FAIL).
        map_pixel_rate: share of validation-good anomaly-map pixels at or above ``map_at``.
        frr_ceiling: most validation goods that may FAIL when zero escapes would cost more (then
            the band between the zero-escape point and ``fail_at`` is REVIEW); None: no ceiling.
        confidence: level of the Clopper-Pearson intervals stated with the rates.
    """

    kind: Literal["zero_escape", "frr"] = "zero_escape"
    frr_target: float = 0.01
    margin_fraction: float = 0.5
    margin_cap: float = 0.25
    review_rate: float = 0.05
    map_pixel_rate: float = 0.001
    frr_ceiling: float | None = 0.05
    confidence: float = 0.95

    def __post_init__(self) -> None:
        for name in ("frr_target", "margin_fraction", "review_rate", "map_pixel_rate", "frr_ceiling"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ModelError(f"calibration target: {name}={value} must be within [0, 1]")
        if not 0.0 < self.confidence < 1.0:
            raise ModelError(f"calibration target: confidence={self.confidence} must be within (0, 1)")
        if self.margin_cap < 0:
            raise ModelError(f"calibration target: margin_cap={self.margin_cap} must be >= 0")


def _vector(scores: Scores, what: str) -> npt.NDArray[np.float64]:
    array = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(array)):
        raise ModelError(f"{what}: scores contain NaN or Inf")
    return array


def auroc(scores_good: Scores, scores_defect: Scores) -> float:
    """Image AUROC: probability that a random defect scores above a random good (ties count 1/2).

    Raises:
        ModelError: either set is empty or holds non-finite scores.
    """
    good, defect = _vector(scores_good, "good"), _vector(scores_defect, "defect")
    if good.size == 0 or defect.size == 0:
        raise ModelError(f"auroc needs good and defect scores (got {good.size} good, {defect.size} defect)")
    both = np.concatenate([good, defect])
    order = both.argsort(kind="mergesort")
    ranks = np.empty(both.size, dtype=np.float64)
    ranks[order] = np.arange(1, both.size + 1)
    _, inverse, counts = np.unique(both, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    ranks = (sums / counts)[inverse]  # average rank of each tie group
    u = ranks[good.size :].sum() - defect.size * (defect.size + 1) / 2.0
    return float(u / (good.size * defect.size))


def false_reject_rate(scores_good: Scores, threshold: float) -> float:
    """Share of good parts that fail (``score >= threshold``); 0 for no goods."""
    good = _vector(scores_good, "good")
    return float(np.mean(good >= threshold)) if good.size else 0.0


def escape_rate(scores_defect: Scores, threshold: float) -> float:
    """Share of defective parts that pass (``score < threshold``); 0 for no defects."""
    defect = _vector(scores_defect, "defect")
    return float(np.mean(defect < threshold)) if defect.size else 0.0


def false_reject_rate_at_zero_escape(scores_good: Scores, scores_defect: Scores) -> float:
    """False-reject rate at the highest threshold that still fails every defect."""
    defect = _vector(scores_defect, "defect")
    if defect.size == 0:
        raise ModelError("false_reject_rate_at_zero_escape needs at least one defect score")
    return false_reject_rate(scores_good, float(defect.min()))


def best_f1(scores_good: Scores, scores_defect: Scores) -> tuple[float, float]:
    """Best F1 (defect = positive) over all thresholds; returns ``(f1, threshold)``."""
    good, defect = _vector(scores_good, "good"), _vector(scores_defect, "defect")
    if defect.size == 0:
        raise ModelError("best_f1 needs at least one defect score")
    best = (0.0, float(defect.max()))
    for t in np.unique(np.concatenate([good, defect])):
        tp = float(np.sum(defect >= t))
        fp = float(np.sum(good >= t))
        f1 = 2 * tp / (2 * tp + fp + (defect.size - tp))
        if f1 > best[0]:
            best = (f1, float(t))
    return best


def detection_rate_by_class(scores: Scores, labels: Sequence[str], *, threshold: float) -> dict[str, float]:
    """Per label, the share of parts with ``score >= threshold`` (sorted by label)."""
    values = _vector(scores, "scores")
    if values.size != len(labels):
        raise ModelError(f"{values.size} scores but {len(labels)} labels")
    names = np.asarray(labels)
    return {str(n): float(np.mean(values[names == n] >= threshold)) for n in sorted(set(labels))}


def _highest_passing_good(good: npt.NDArray[np.float64], *, upper: float, allowed_fails: int) -> float | None:
    below = np.sort(good[good < upper])[::-1]
    fails_above = good.size - below.size
    extra = max(0, allowed_fails - fails_above)
    return float(below[extra]) if extra < below.size else None


def _upper_quantile(values: npt.NDArray[np.float64], rate: float) -> float:
    """Lowest level with at most ``floor(rate * n)`` values at or above it (just above a value)."""
    ordered = np.sort(values)[::-1]
    k = int(np.floor(rate * values.size))
    if k >= values.size:
        return float(ordered[-1])
    return float(np.nextafter(np.float32(ordered[k]), np.float32(np.inf)))


def _fail_at(
    good: npt.NDArray[np.float64], defect: npt.NDArray[np.float64], *, target: CalibrationTarget
) -> tuple[float, str]:
    if target.kind == "zero_escape" and defect.size:
        upper, allowed = float(defect.min()), 0
        text = f"zero escapes on {defect.size} validation defects, then lowest false-reject rate"
    else:
        allowed = int(np.floor(target.frr_target * good.size))
        # the lowest good allowed to fail bounds the threshold from above (most sensitive first)
        upper = float(np.sort(good)[::-1][allowed - 1]) if 0 < allowed <= good.size else np.inf
        text = f"false-reject rate <= {target.frr_target:.1%} on {good.size} validation goods"
        if target.kind == "zero_escape":
            text += " (no validation defects)"
    g_star = _highest_passing_good(good, upper=upper, allowed_fails=allowed)
    if g_star is None:
        return upper, text
    spread = max(g_star - float(np.median(good)), 0.0)
    gap = (upper - g_star) if np.isfinite(upper) else np.inf
    margin = min(target.margin_fraction * gap, target.margin_cap * spread)
    if margin <= 0.0 or not np.isfinite(margin):
        margin = float(abs(np.spacing(np.float32(g_star))))  # strictly above g*, representable in float32
    return float(min(g_star + margin, upper)), text


def anomaly_cap(anomaly_good: Scores, *, target: CalibrationTarget | None = None) -> float:
    """The good-only threshold of the anomaly path alone (``frr_target`` on validation goods).

    With labelled defects the fused score is ``max`` (or noisy-or) of the anomaly score and the
    defect probability, so it is never below the anomaly score: capping ``fail_at`` here means a
    part the good-only model would fail still fails, whatever the labels taught the classifier.
    Labels can add detections; they never make an unlabelled kind harder to catch.
    """
    target = target or CalibrationTarget()
    good = _vector(anomaly_good, "anomaly good")
    if good.size == 0:
        raise ModelError("the anomaly cap needs anomaly scores of at least one validation good part")
    return _fail_at(good, np.empty(0), target=replace(target, kind="frr"))[0]


def path_threshold(scores_good: Scores, *, frr: float, target: CalibrationTarget | None = None) -> float:
    """One signal's own threshold from validation goods alone: at most ``frr`` of them reach it.

    Placed like every ``frr`` threshold (see the module doc: just above the highest good that must
    pass, with a margin), so it does not depend on which defects were labelled.

    Raises:
        ModelError: no good scores, or non-finite scores.
    """
    target = target or CalibrationTarget()
    good = _vector(scores_good, "good")
    if good.size == 0:
        raise ModelError("a signal's threshold needs its scores on at least one validation good part")
    return _fail_at(good, np.empty(0), target=replace(target, kind="frr", frr_target=frr))[0]


def _fixed_thresholds(
    good: npt.NDArray[np.float64], defect: npt.NDArray[np.float64], *, fixed: float, target: CalibrationTarget
) -> tuple[float, float, str]:
    fail_at = fixed
    text = (
        f"open-set fusion: FAIL where the anomaly score or the defect signal passes its own threshold (fused {fixed:g})"
    )
    ceiling = target.frr_ceiling
    if ceiling is not None and false_reject_rate(good, fixed) > ceiling:
        fail_at = max(fixed, _fail_at(good, defect, target=replace(target, kind="frr", frr_target=ceiling))[0])
        text += (
            f"; raised to {fail_at:.4g} because {false_reject_rate(good, fixed):.1%} of {good.size} validation "
            f"goods would fail there, above the {ceiling:.1%} ceiling"
        )
    review_at = min(fail_at, _upper_quantile(good, target.review_rate))
    if target.kind == "zero_escape" and defect.size:
        zero_at = _fail_at(good, defect, target=target)[0]
        if zero_at < review_at:
            review_at = zero_at
            text += f"; REVIEW from the zero-escape point on {defect.size} validation defects"
    return fail_at, review_at, text


def calibrate(
    scores_good: Scores,
    scores_defect: Scores,
    *,
    target: CalibrationTarget | None = None,
    good_map_values: Scores | None = None,
    cap: float | None = None,
    fixed_fail_at: float | None = None,
) -> Thresholds:
    """Pick ``fail_at``, ``review_at`` and ``map_at`` from validation scores (see module doc).

    Args:
        scores_good: image scores of held-out good parts (at least one).
        scores_defect: image scores of held-out defective parts (may be empty).
        target: the calibration target; default :class:`CalibrationTarget()`.
        good_map_values: anomaly-map pixels of the validation goods, for ``map_at``.
        cap: ``fail_at`` never exceeds it (:func:`anomaly_cap`, for fused scores with labels).
        fixed_fail_at: the open-set fused score's FAIL point (see the module doc); ``cap`` is
            then ignored.

    Returns:
        Thresholds with the evidence: rates measured on the same validation scores, the
        operating point with confidence intervals and warnings, and the scores themselves.

    Raises:
        ModelError: no good scores, or non-finite scores.
    """
    target = target or CalibrationTarget()
    good, defect = _vector(scores_good, "good"), _vector(scores_defect, "defect")
    if good.size == 0:
        raise ModelError("calibration needs scores of at least one validation good part")
    ceiling = target.frr_ceiling
    if fixed_fail_at is not None:
        fail_at, review_at, text = _fixed_thresholds(good, defect, fixed=fixed_fail_at, target=target)
        cap = None
    else:
        fail_at, text = _fail_at(good, defect, target=target)
        review_at = min(fail_at, _upper_quantile(good, target.review_rate))
    if (
        fixed_fail_at is None
        and target.kind == "zero_escape"
        and defect.size
        and ceiling is not None
        and false_reject_rate(good, fail_at) > ceiling
    ):
        zero_at, zero_frr = fail_at, false_reject_rate(good, fail_at)
        fail_at, _ = _fail_at(good, defect, target=replace(target, kind="frr", frr_target=ceiling))
        review_at = zero_at
        text = (
            f"zero escapes on {defect.size} validation defects would fail {zero_frr:.1%} of "
            f"{good.size} validation goods, above the {ceiling:.1%} ceiling: FAIL where at most "
            f"{ceiling:.1%} of them fail, REVIEW from the zero-escape point"
        )
    if cap is not None and cap < fail_at:
        fail_at, review_at = cap, min(review_at, cap)
        text += f"; capped at the anomaly path's good-only threshold ({target.frr_target:.1%} of validation goods)"
    if good_map_values is not None and np.asarray(good_map_values).size:
        pixels = _vector(good_map_values, "anomaly map")
        map_at = min(fail_at, float(np.quantile(pixels, 1.0 - target.map_pixel_rate)))
    else:
        map_at = review_at
    evidence = CalibrationEvidence(
        target=text,
        n_good=int(good.size),
        n_defect=int(defect.size),
        false_reject_rate=false_reject_rate(good, fail_at),
        escape_rate=escape_rate(defect, review_at),
        review_rate=float(np.mean((good >= review_at) & (good < fail_at))),
        operating_point=operating_point(
            good, defect, fail_at=fail_at, review_at=review_at, frr_ceiling=ceiling, confidence=target.confidence
        ),
        scores_good=tuple(float(v) for v in np.sort(good)),
        scores_defect=tuple(float(v) for v in np.sort(defect)),
        fixed_fail_at=fixed_fail_at,
    )
    return Thresholds(fail_at=fail_at, review_at=review_at, map_at=map_at, evidence=evidence)


def thresholds_for_ceiling(
    evidence: CalibrationEvidence, *, frr_ceiling: float, config: Mapping[str, object]
) -> Thresholds:
    """Re-derive ``fail_at``/``review_at`` for another false-reject ceiling from a bundle's stored
    validation scores (``config``: the training config in the manifest, for the margins).

    Raises:
        ModelError: the bundle stores no validation scores (trained before they were recorded).
    """
    if not evidence.scores_good:
        raise ModelError(
            "the bundle stores no validation scores (trained before they were recorded), so a "
            "station frr_ceiling cannot be applied to it: retrain it or remove policy.frr_ceiling"
        )
    knobs = {
        k: float(v)
        for k, v in config.items()
        if k in ("frr_target", "margin_fraction", "margin_cap", "review_rate") and isinstance(v, int | float)
    }
    target = CalibrationTarget(**knobs, frr_ceiling=frr_ceiling)  # type: ignore[arg-type]
    return calibrate(evidence.scores_good, evidence.scores_defect, target=target, fixed_fail_at=evidence.fixed_fail_at)


def rate_estimate(events: int, n: int, *, confidence: float = 0.95) -> RateEstimate | None:
    """``events`` of ``n`` with its Clopper-Pearson interval; None when ``n`` is 0 (unknown)."""
    if n == 0:
        return None
    low, high = clopper_pearson(events, n, confidence=confidence)
    return RateEstimate(events=events, n=n, rate=events / n, low=low, high=high)


def _known(estimate: RateEstimate | None) -> RateEstimate:
    assert estimate is not None  # n >= 1 checked by the caller
    return estimate


def _pct(estimate: RateEstimate) -> str:
    return f"{estimate.rate:.1%} ({estimate.events} of {estimate.n}; {estimate.low:.1%}-{estimate.high:.1%})"


def _warnings(point: OperatingPoint, *, source: str) -> tuple[str, ...]:
    out: list[str] = []
    fr, rv, zero, esc = point.false_reject, point.review, point.frr_at_zero_escape, point.escape
    if esc is None:
        out.append(
            f"escape rate unknown: there were no defective parts among the {source} parts, so how "
            f"many defects this model lets pass was never measured; on {fr.n} {source} good parts it "
            f"rejects {fr.rate:.1%} and sends {rv.rate:.1%} to review"
        )
    elif esc.events:
        out.append(
            f"{esc.events} of {esc.n} {source} defects would pass ({esc.rate:.1%}, "
            f"{esc.low:.1%}-{esc.high:.1%} at {point.confidence:.0%} confidence)"
        )
    ceiling = point.frr_ceiling
    if zero is not None and ceiling is not None and zero.rate > ceiling:
        said = (
            f"at zero escapes {zero.rate:.1%} of good parts would be rejected ({zero.events} of {zero.n} "
            f"{source} good parts)"
        )
        if source == "validation":  # there the REVIEW band is exactly what the ceiling opened
            said += f"; with a {ceiling:.1%} false-reject ceiling {rv.rate:.1%} of good parts would need review"
        else:
            said += f", above the {ceiling:.1%} false-reject ceiling; at these thresholds {rv.rate:.1%} go to review"
        out.append(said)
    if ceiling is not None and fr.rate > ceiling:
        out.append(f"{fr.rate:.1%} of good parts would be rejected, above the {ceiling:.1%} false-reject ceiling")
    return tuple(out)


def operating_point(
    scores_good: Scores,
    scores_defect: Scores,
    *,
    fail_at: float,
    review_at: float,
    frr_ceiling: float | None,
    confidence: float = 0.95,
    source: str = "validation",
) -> OperatingPoint:
    """Expected false-reject, review and escape rates at the thresholds, with exact intervals.

    A part FAILs at ``score >= fail_at``, goes to REVIEW at ``review_at <= score < fail_at`` and
    PASSes below ``review_at``; an *escape* is a defective part that PASSes. Rates about defects
    are None (unknown) without defect scores. ``source`` names the parts in the warnings.

    Raises:
        ModelError: no good scores, non-finite scores, or ``review_at > fail_at``.
    """
    good, defect = _vector(scores_good, "good"), _vector(scores_defect, "defect")
    if good.size == 0:
        raise ModelError("an operating point needs scores of at least one validation good part")
    if review_at > fail_at:
        raise ModelError(f"review_at ({review_at}) must not exceed fail_at ({fail_at})")

    def band(values: npt.NDArray[np.float64]) -> int:
        return int(np.sum((values >= review_at) & (values < fail_at)))

    n_d = int(defect.size)
    zero = rate_estimate(int(np.sum(good >= defect.min())), int(good.size), confidence=confidence) if n_d else None
    point = OperatingPoint(
        confidence=confidence,
        frr_ceiling=frr_ceiling,
        false_reject=_known(rate_estimate(int(np.sum(good >= fail_at)), int(good.size), confidence=confidence)),
        review=_known(rate_estimate(band(good), int(good.size), confidence=confidence)),
        escape=rate_estimate(int(np.sum(defect < review_at)), n_d, confidence=confidence),
        defect_review=rate_estimate(band(defect), n_d, confidence=confidence),
        frr_at_zero_escape=zero,
    )
    return point.model_copy(update={"warnings": _warnings(point, source=source)})


def describe_operating_point(point: OperatingPoint) -> list[str]:
    """Plain-words lines for a summary: each rate with its interval, then the warnings."""
    level = f"{point.confidence:.0%} intervals"
    lines = [f"good parts rejected {_pct(point.false_reject)}, sent to review {_pct(point.review)} ({level})"]
    if point.escape is None or point.defect_review is None:
        lines.append("defective parts passed: unknown (no defective validation parts)")
    else:
        lines.append(
            f"defective parts passed (escapes) {_pct(point.escape)}, sent to review {_pct(point.defect_review)}"
        )
    lines += [f"WARNING: {w}" for w in point.warnings]
    return lines


def describe_fusion(fusion: FusionSpec) -> str:
    """One plain-words line: where each signal of an open-set bundle FAILs a part on its own."""
    mask = (
        f", the mask head (trained on defect masks) at {fusion.mask_at:.4g} ({fusion.mask_frr:.1%})"
        if fusion.mask_at is not None and fusion.mask_frr is not None
        else ""
    )
    return (
        f"open-set fusion: the anomaly path fails a part at anomaly score {fusion.anomaly_at:.4g} "
        f"({fusion.anomaly_frr:.1%} of validation goods), the defect signal at P(defect) {fusion.defect_at:.4g} "
        f"({fusion.defect_frr:.1%}){mask}; labelled defects only add FAILs, they never raise the anomaly threshold"
    )


def summarize(scores_good: Scores, scores_defect: Scores, *, threshold: float) -> Mapping[str, float]:
    """AUROC, best F1, FRR at zero escape and the rates at ``threshold`` (needs both sets)."""
    return {
        "auroc": auroc(scores_good, scores_defect),
        "best_f1": best_f1(scores_good, scores_defect)[0],
        "frr_at_zero_escape": false_reject_rate_at_zero_escape(scores_good, scores_defect),
        "false_reject_rate": false_reject_rate(scores_good, threshold),
        "escape_rate": escape_rate(scores_defect, threshold),
    }
