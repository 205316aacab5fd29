"""A candidate model judged against the active one on a frozen set: the evidence a promotion gate reads.

Shared by ``vinspect models evaluate`` and the reviewer app's "Run the evaluation" button, so
both record the same :class:`~vinspect.models.promotion_criteria.Evaluation` the same way:
the frozen set is verified file by file, both bundles judge every image (ONNX Runtime only),
the candidate's golden self-test runs, and the shadow statistics the caller read (from the
station's data directory or the store) are attached. Nothing here writes to the store; the
caller records the evaluation and then writes the changed verdicts' images named by its hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vinspect.dataset.frozen import FrozenSet, is_frozen, verify_frozen
from vinspect.dataset.layouts import open_dataset
from vinspect.errors import ConfigError, DatasetError
from vinspect.models.promotion_criteria import Evaluation
from vinspect.models.registry import ModelRegistry
from vinspect.models.runtime import load_bundle
from vinspect.pipeline.gating import policy_for
from vinspect.report.changed_images import write_changed_images
from vinspect.report.compare import Comparison, compare_bundles, golden_outcome
from vinspect.report.evaluate import score_samples, summarize

__all__ = ["SHADOW_KEYS", "CandidateEvaluation", "evaluate_candidate", "slim_summary", "write_evaluation_images"]

SHADOW_KEYS = ("parts", "agree", "agreement", "disagree", "dropped_busy", "late", "active_model", "updated_at")
_SUMMARY_KEYS = (
    "model",
    "n_good",
    "n_defect",
    "auroc",
    "f1",
    "false_reject_rate_at_zero_escape",
    "per_class_detection",
    "defect_type_accuracy",
    "latency_ms",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class CandidateEvaluation:
    """What one evaluation found (the ``evaluation`` is what gets recorded)."""

    evaluation: Evaluation
    frozen: FrozenSet
    active_version: str | None
    doc: dict[str, Any]  # the full comparison as JSON (``--json``)
    result: Comparison | None  # None: no active version to compare with
    champion_level: float | None
    challenger_level: float


def slim_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """The part of a model's evaluation summary the recorded evidence keeps."""
    out = {k: summary.get(k) for k in _SUMMARY_KEYS}
    op = summary.get("operating_point", {})
    out["operating_point"] = {k: op.get(k) for k in ("fail_at", "review_at", "false_reject_rate", "escape_rate")}
    return out


def evaluate_candidate(
    *,
    registry: ModelRegistry,
    name: str,
    version: str,
    data: Path,
    shadow: dict[str, Any] | None,
    threads: int = 1,
    progress: bool = False,
) -> CandidateEvaluation:
    """Judge ``name`` ``version`` and the active version on the frozen set ``data``.

    Args:
        shadow: the candidate's shadow statistics on the line (``stats.json`` content), or None.

    Raises:
        DatasetError: ``data`` is not a frozen set, or a file of it changed (named).
        ConfigError: the candidate is already the active version.
        ModelError: a bundle cannot be loaded.
    """
    if not is_frozen(data):
        raise DatasetError(
            f"{data}: not a frozen set; a promotion is judged on a frozen set "
            "(vinspect dataset freeze DATA --out SET --name N --version V)"
        )
    frozen = verify_frozen(data)
    candidate = load_bundle(registry.resolve(name, version), threads=threads)
    active = registry.active_version(name)
    if active == version:
        raise ConfigError(f"{name} {version} is already the active version")
    champion = None if active is None else load_bundle(registry.resolve(name, active), threads=threads)
    policy = policy_for(candidate)
    samples = open_dataset(data).test_samples()
    result: Comparison | None = None
    if champion is not None:
        result = compare_bundles(
            samples,
            champion=champion,
            challenger=candidate,
            champion_policy=policy_for(champion),
            challenger_policy=policy,
            progress=progress,
        )
        challenger_doc, champion_doc, doc = result.challenger, result.champion, result.to_json()
    else:
        scored = score_samples(samples, bundle=candidate, policy=policy, progress=progress)
        challenger_doc, champion_doc = summarize(scored, bundle=candidate, policy=policy), None
        doc = {"challenger": challenger_doc, "champion": None}
    golden = golden_outcome(candidate, policy)
    evaluation = Evaluation(
        frozen_set={"name": frozen.name, "version": frozen.version, "set_sha256": frozen.set_sha256},
        golden_defects=golden.defects,
        golden_defects_failed=golden.defects_failed,
        golden_goods=golden.goods,
        golden_goods_passed=golden.goods_passed,
        challenger=slim_summary(challenger_doc),
        champion=None if champion_doc is None else slim_summary(champion_doc),
        shadow_parts=None if shadow is None else int(shadow["parts"]),
        shadow=None if shadow is None else {k: shadow.get(k) for k in SHADOW_KEYS},
    )
    return CandidateEvaluation(
        evaluation=evaluation,
        frozen=frozen,
        active_version=active,
        doc=doc,
        result=result,
        champion_level=None if champion is None else champion.manifest.thresholds.map_at,
        challenger_level=candidate.manifest.thresholds.map_at,
    )


def write_evaluation_images(folder: Path, ev: CandidateEvaluation) -> list[dict[str, Any]] | None:
    """Both heatmap overlays of every changed verdict under ``folder`` (None: nothing was compared)."""
    if ev.result is None or ev.champion_level is None:
        return None
    return write_changed_images(
        folder, ev.result, champion_level=ev.champion_level, challenger_level=ev.challenger_level
    )
