"""Evaluate a golden-reference bundle on template/test pairs (the DeepPCB card's report).

Each case is judged through :func:`vinspect.pipeline.judge.judge_image` with the bundle's limits
against the case's own template, exactly as the station judges a frame against its pinned one.
Reported: image AUROC, false-reject rate at zero escapes, box recall (IoU >= 0.33 or centre
inside) and false boxes per image at the operating point, recall per defect type, FAIL reasons,
and latency per image (registration included, decode excluded).
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from vinspect.dataset.images import read_image
from vinspect.dataset.layouts import Sample
from vinspect.models.calibration import auroc, false_reject_rate_at_zero_escape
from vinspect.models.combined import CombinedModel
from vinspect.models.reference import ReferenceModel
from vinspect.models.runtime import Bundle
from vinspect.pipeline.decide import DecisionPolicy
from vinspect.pipeline.judge import judge_image
from vinspect.report.boxes import match_boxes
from vinspect.types import Prediction

__all__ = ["PairCase", "evaluate_pairs", "sample_cases"]

U8 = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True, kw_only=True)
class PairCase:
    """One part to judge against its template; no boxes means a good part."""

    case_id: str
    template: U8
    image: U8
    boxes: tuple[tuple[int, int, int, int], ...] = ()
    box_labels: tuple[str, ...] = ()


def _grey(image: U8) -> U8:
    return image if image.ndim == 2 else np.asarray(image.mean(axis=2).round(), dtype=np.uint8)


def sample_cases(samples: Iterable[Sample]) -> Iterable[PairCase]:
    """Cases from a pairs dataset's samples (each test image against its own template)."""
    for s in samples:
        if s.reference_path is None:
            continue
        yield PairCase(
            case_id=s.stem,
            template=_grey(read_image(s.reference_path)),
            image=_grey(read_image(s.path)),
            boxes=tuple(b.box_xyxy for b in s.boxes),
            box_labels=tuple(b.label for b in s.boxes),
        )


def evaluate_pairs(
    cases: Iterable[PairCase], *, bundle: Bundle, policy: DecisionPolicy, progress: bool = False
) -> dict[str, Any]:
    """Judge every case and summarise (see the module docstring)."""
    if not isinstance(bundle.model, ReferenceModel | CombinedModel):
        raise TypeError("evaluate_pairs needs a reference bundle")
    base = bundle.model
    good_scores: list[float] = []
    bad_scores: list[float] = []
    latencies: list[float] = []
    reasons: Counter[str] = Counter()
    per_type_hit: Counter[str] = Counter()
    per_type_n: Counter[str] = Counter()
    false_boxes = n_images = 0
    curve: list[tuple[list[float], list[bool], int, list[float]]] = []
    codes: list[tuple[str, str]] = []
    for case in tqdm(cases, desc="pairs", disable=not progress):
        judged_bundle = dataclasses.replace(bundle, model=base.with_reference(case.template, part_number="pair"))
        j = judge_image(case.image, bundle=judged_bundle, policy=policy)
        n_images += 1
        latencies.append(j.latency_ms)
        reasons.update(j.decision.reasons or ("pass",))
        score = j.prediction.score if j.prediction is not None else math.inf  # a refused frame is a reject
        (bad_scores if case.boxes else good_scores).append(score)
        found = [r.box_xyxy for r in j.prediction.regions] if j.prediction is not None else []
        recalled, genuine = match_boxes(found, list(case.boxes))
        false_boxes += genuine.count(False)
        curve.append(_curve_entry(j.prediction, list(case.boxes)))
        for label, hit in zip(case.box_labels, recalled, strict=True):
            per_type_n[label] += 1
            per_type_hit[label] += hit  # a refused frame fails the part but localises nothing
        if j.prediction is not None:
            codes.extend(_codes(j.prediction, case))
    good, bad = np.asarray(good_scores), np.asarray(bad_scores)
    both = good.size > 0 and bad.size > 0
    n_boxes = sum(per_type_n.values())
    lat = np.asarray(latencies)
    return {
        "n_good": int(good.size),
        "n_defect": int(bad.size),
        "n_boxes": n_boxes,
        "auroc": auroc(_finite(good), _finite(bad)) if both else None,
        "false_reject_rate_at_zero_escape": false_reject_rate_at_zero_escape(_finite(good), _finite(bad))
        if both
        else None,
        "operating_point": {
            "fail_at": policy.fail_at,
            "false_reject_rate": float((good >= policy.review_at).mean()) if good.size else None,
            "escape_rate": float((bad < policy.review_at).mean()) if bad.size else None,
            "box_recall": sum(per_type_hit.values()) / n_boxes if n_boxes else None,
            "false_boxes_per_image": false_boxes / n_images if n_images else None,
        },
        "recall_per_type": {k: per_type_hit[k] / per_type_n[k] for k in sorted(per_type_n)},
        "defect_code_accuracy": sum(t == p for t, p in codes) / len(codes) if codes else None,
        "defect_code_confusion": _confusion(codes),
        "box_recall_at_false_boxes_per_image": {str(at): _recall_at(curve, at, n_boxes) for at in (0.1, 0.25, 0.5)},
        "reasons": dict(sorted(reasons.items())),
        "latency_ms": {
            "n": int(lat.size),
            "p50": float(np.percentile(lat, 50)) if lat.size else None,
            "p99": float(np.percentile(lat, 99)) if lat.size else None,
        },
    }


def _codes(prediction: Prediction, case: PairCase) -> list[tuple[str, str]]:
    """(true type, code of the best-scoring region that recalls it) for every recalled box."""
    out = []
    for box, label in zip(case.boxes, case.box_labels, strict=True):
        hits = [r for r in prediction.regions if match_boxes([r.box_xyxy], [box])[0][0]]
        if hits:
            out.append((label, max(hits, key=lambda r: r.score).label))
    return out


def _confusion(codes: list[tuple[str, str]]) -> dict[str, dict[str, int]]:
    table: dict[str, Counter[str]] = {}
    for true, found in codes:
        table.setdefault(true, Counter())[found] += 1
    return {k: dict(sorted(v.items())) for k, v in sorted(table.items())}


def _curve_entry(
    prediction: Prediction | None, true: list[tuple[int, int, int, int]]
) -> tuple[list[float], list[bool], int, list[float]]:
    """Region scores, which are genuine, and for each true box the best score that recalls it."""
    if prediction is None:  # a refused frame: the part fails, but no box is localised
        return [], [], len(true), [-math.inf] * len(true)
    regions = prediction.regions
    _, genuine = match_boxes([r.box_xyxy for r in regions], true)
    best = [max((r.score for r in regions if match_boxes([r.box_xyxy], [t])[0][0]), default=-math.inf) for t in true]
    return [r.score for r in regions], genuine, len(true), best


def _recall_at(
    curve: list[tuple[list[float], list[bool], int, list[float]]], per_image: float, n_boxes: int
) -> float | None:
    """Box recall at the strictest region-score level whose false boxes per image stay <= ``per_image``.

    A curve point over the reported regions (score >= fail_at), like AUROC: a threshold read off
    the test data, not the bundle's operating point.
    """
    if not curve or not n_boxes:
        return None
    levels = sorted({s for scores, _, _, _ in curve for s in scores} | {math.inf})
    for level in levels:
        false = sum(
            1 for scores, genuine, _, _ in curve for s, g in zip(scores, genuine, strict=True) if s >= level and not g
        )
        if false / len(curve) <= per_image:
            return sum(1 for _, _, _, best in curve for b in best if b >= level) / n_boxes
    return None


def _finite(scores: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Refused frames (inf) rank above every score; keep AUROC finite by mapping them to 1.0."""
    return np.where(np.isfinite(scores), scores, 1.0)
