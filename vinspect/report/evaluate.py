"""Score a dataset through a bundle and summarise it the way the benchmark protocol asks.

The summary (``vinspect eval --json``) always carries ``auroc``, ``f1``,
``false_reject_rate_at_zero_escape``, ``per_class_detection``, ``defect_type_accuracy``,
``n_good``, ``n_defect`` and latency figures, so runs can be compared by scripts.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from vinspect.dataset.images import read_image
from vinspect.dataset.layouts import Sample
from vinspect.errors import ImageDecodeError
from vinspect.models.calibration import (
    auroc,
    best_f1,
    detection_rate_by_class,
    false_reject_rate_at_zero_escape,
    operating_point,
)
from vinspect.models.runtime import Bundle
from vinspect.pipeline.decide import DecisionPolicy
from vinspect.pipeline.judge import Judgement, judge_image

__all__ = ["Scored", "score_samples", "summarize"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Scored:
    """One sample and how the bundle judged it (``judgement`` None when the file is unreadable)."""

    sample: Sample
    judgement: Judgement | None
    error: str | None = None

    @property
    def score(self) -> float:
        j = self.judgement
        return j.prediction.score if j is not None and j.prediction is not None else math.nan


def score_samples(
    samples: list[Sample], *, bundle: Bundle, policy: DecisionPolicy, progress: bool = True
) -> list[Scored]:
    """Judge every sample; unreadable files are kept with their error, never dropped silently."""
    out = []
    for sample in tqdm(samples, desc="scoring", unit="img", disable=not progress):
        try:
            image = read_image(sample.path)
        except ImageDecodeError as exc:
            out.append(Scored(sample=sample, judgement=None, error=str(exc)))
            continue
        out.append(Scored(sample=sample, judgement=judge_image(image, bundle=bundle, policy=policy)))
    return out


def summarize(scored: list[Scored], *, bundle: Bundle, policy: DecisionPolicy) -> dict[str, Any]:
    """Metrics for the scored samples (unreadable and non-finite ones listed, not scored)."""
    usable = [s for s in scored if math.isfinite(s.score)]
    defects = [s for s in usable if not s.sample.is_good]
    good = np.array([s.score for s in usable if s.sample.is_good], dtype=np.float64)
    bad = np.array([s.score for s in defects], dtype=np.float64)
    both = good.size > 0 and bad.size > 0
    latencies = np.array([s.judgement.latency_ms for s in scored if s.judgement is not None])
    verdicts = Counter(s.judgement.decision.verdict.value for s in scored if s.judgement is not None)
    m = bundle.manifest
    point = m.thresholds.evidence.operating_point
    return {
        "model": {"name": m.name, "version": m.version, "sha256": m.sha256, "task": m.task},
        "n_good": int(good.size),
        "n_defect": int(bad.size),
        "auroc": auroc(good, bad) if both else None,
        "f1": best_f1(good, bad)[0] if both else None,
        "false_reject_rate_at_zero_escape": false_reject_rate_at_zero_escape(good, bad) if both else None,
        "operating_point": {
            "fail_at": policy.fail_at,
            "review_at": policy.review_at,
            "false_reject_rate": float((good >= policy.review_at).mean()) if good.size else None,
            "escape_rate": float((bad < policy.review_at).mean()) if bad.size else None,
            "verdicts": dict(verdicts),
            "measured": _measured(good, bad, policy=policy, bundle=bundle),
            "stated": None if point is None else point.model_dump(mode="json"),
        },
        "per_class_detection": detection_rate_by_class(
            [s.score for s in defects], [s.sample.label for s in defects], threshold=policy.review_at
        ),
        **_defect_types(usable, policy, labels=m.labels),
        "latency_ms": _latency(latencies),
        "unreadable": [{"file": str(s.sample.path), "error": s.error} for s in scored if s.judgement is None],
    }


def _measured(good: np.ndarray, bad: np.ndarray, *, policy: DecisionPolicy, bundle: Bundle) -> dict[str, Any] | None:
    """Rates at the policy's thresholds on these samples, with exact intervals (None without goods)."""
    if good.size == 0:
        return None
    stated = bundle.manifest.thresholds.evidence.operating_point
    ceiling = stated.frr_ceiling if stated is not None else None
    point = operating_point(
        good, bad, fail_at=policy.fail_at, review_at=policy.review_at, frr_ceiling=ceiling, source="evaluation"
    )
    return point.model_dump(mode="json")


def _defect_types(usable: list[Scored], policy: DecisionPolicy, *, labels: tuple[str, ...]) -> dict[str, Any]:
    caught = [s for s in usable if not s.sample.is_good and s.score >= policy.review_at]
    confusion: dict[str, dict[str, int]] = defaultdict(Counter)
    for s in caught:
        assert s.judgement is not None and s.judgement.prediction is not None
        confusion[s.sample.label][s.judgement.prediction.defect_code or "none"] += 1
    known = [s for s in caught if s.sample.label in labels]
    correct = sum(
        1
        for s in known
        if s.judgement and s.judgement.prediction and s.judgement.prediction.defect_code == s.sample.label
    )
    accuracy = correct / len(known) if known else None
    return {
        "defect_type_accuracy": accuracy,
        "defect_type_n": len(known),
        "confusion": {k: dict(v) for k, v in sorted(confusion.items())},
    }


def _latency(values: np.ndarray) -> dict[str, float | int | None]:
    if values.size == 0:
        return {"n": 0, "p50": None, "p99": None, "mean": None}
    return {
        "n": int(values.size),
        "p50": float(np.percentile(values, 50)),
        "p99": float(np.percentile(values, 99)),
        "mean": float(values.mean()),
    }
