"""Start-up gating: the decision policy of a bundle, the golden self-test and the gate itself.

A station becomes OPERATIONAL only with a model that loaded and verified (manifest schema,
sha256, graph contract) **and** judged every golden sample carried in its bundle as expected.
Anything else keeps it PREOPERATIONAL with the reason visible in the status; the line output
stays reject because nothing is ever accepted without a model. The states themselves are in
:mod:`vinspect.pipeline.state`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt

from vinspect.errors import ModelError
from vinspect.models.calibration import thresholds_for_ceiling
from vinspect.models.runtime import DEFAULT_ALLOW_SPINNING, Bundle, load_bundle
from vinspect.pipeline.decide import DecisionPolicy
from vinspect.pipeline.judge import judge_image
from vinspect.types import Verdict

__all__ = ["GateResult", "PolicyOverrides", "gate_bundle", "policy_for", "self_test"]

GOLDEN_SCORE_TOLERANCE = 1e-3


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyOverrides:
    """Station-file overrides of the bundle's thresholds (None keeps the bundle's value)."""

    fail_at: float | None = None
    review_at: float | None = None
    on_error: str = "FAIL"
    frr_ceiling: float | None = None


def policy_for(bundle: Bundle, overrides: PolicyOverrides | None = None) -> DecisionPolicy:
    """The decision policy for a bundle; its id names the model version (records carry the sha256).

    With ``frr_ceiling`` the thresholds are re-derived from the bundle's validation scores for the
    station's own false-reject ceiling (explicit ``fail_at``/``review_at`` still win).

    Raises:
        ModelError: ``frr_ceiling`` is set but the bundle stores no validation scores.
    """
    o = overrides or PolicyOverrides()
    t, m = bundle.manifest.thresholds, bundle.manifest
    if o.frr_ceiling is not None:
        t = thresholds_for_ceiling(t.evidence, frr_ceiling=o.frr_ceiling, config=m.training.config)
    return DecisionPolicy(
        fail_at=t.fail_at if o.fail_at is None else o.fail_at,
        review_at=t.review_at if o.review_at is None else o.review_at,
        policy_id=f"{m.name}@{m.version}",
        on_error=Verdict(o.on_error),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class GateResult:
    """Outcome of gating: the bundle when it may run, else the reason it may not."""

    bundle: Bundle | None
    reason: str

    @property
    def ok(self) -> bool:
        """True when the bundle passed every check."""
        return self.bundle is not None


def self_test(bundle: Bundle, *, require_golden: bool = True) -> str | None:
    """Judge every golden sample with the bundle's own thresholds; None when all agree.

    Returns:
        The first problem found (missing samples, unreadable file, wrong verdict, score drift).
    """
    samples = bundle.manifest.golden_samples
    if not samples:
        return "bundle carries no golden samples" if require_golden else None
    policy = policy_for(bundle)
    for sample in samples:
        image = cv2.imread(str(bundle.path / sample.file), cv2.IMREAD_UNCHANGED)
        if image is None:
            return f"golden sample {sample.file} missing or unreadable"
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA if image.shape[2] == 4 else cv2.COLOR_BGR2RGB)
        pixels = cast("npt.NDArray[np.uint8] | npt.NDArray[np.uint16]", np.ascontiguousarray(image))
        fmt = "Mono16" if pixels.dtype == np.uint16 else "Mono8"
        judged = judge_image(pixels, bundle=bundle, policy=policy, pixel_format=fmt)
        got = str(judged.decision.verdict)
        if got != sample.expect:
            return f"golden sample {sample.file}: expected {sample.expect}, model says {got}"
        score = judged.prediction.score if judged.prediction else float("nan")
        if not abs(score - sample.score) <= GOLDEN_SCORE_TOLERANCE:
            return f"golden sample {sample.file}: score {score:.6f} drifted from {sample.score:.6f}"
    return None


def gate_bundle(
    bundle_dir: Path | Callable[[], Path],
    *,
    require_golden: bool = True,
    threads: int = 1,
    part_number: str | None = None,
    allow_spinning: bool = DEFAULT_ALLOW_SPINNING,
) -> GateResult:
    """Load, verify and self-test a bundle; never raises for a bad model.

    Args:
        bundle_dir: the bundle folder, or a resolver (e.g. the registry's ACTIVE) whose
            ModelError is reported as the reason.
        require_golden: a bundle without golden samples fails the gate.
        threads: ONNX Runtime intra-op threads.
        allow_spinning: whether idle intra-op threads busy-wait (see ``SessionSettings``).
        part_number: reference bundles: the golden reference to judge against (None: the
            bundle's only one).
    """
    try:
        path = bundle_dir() if callable(bundle_dir) else bundle_dir
        bundle = load_bundle(path, threads=threads, part_number=part_number, allow_spinning=allow_spinning)
    except ModelError as exc:
        return GateResult(bundle=None, reason=f"model refused: {exc}")
    problem = self_test(bundle, require_golden=require_golden)
    if problem is not None:
        return GateResult(bundle=None, reason=f"golden self-test failed: {problem}")
    m = bundle.manifest
    return GateResult(bundle=bundle, reason=f"model {m.name}@{m.version} verified, golden self-test passed")
