"""The false-reject ceiling, the REVIEW band it opens, and the rates stated with exact intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vinspect.models.calibration import (
    CalibrationTarget,
    calibrate,
    describe_operating_point,
    operating_point,
    rate_estimate,
)
from vinspect.models.intervals import binomial_tail_at_least, clopper_pearson
from vinspect.models.manifest import Thresholds


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        (0, 10, 0.0, 1 - 0.025**0.1),  # closed forms at the ends
        (10, 10, 0.025**0.1, 1.0),
        (5, 20, 0.0865715, 0.4910459),  # R: binom.test(5, 20)$conf.int
        (83, 100, 0.7418246, 0.8977351),  # R: binom.test(83, 100)$conf.int
    ],
)
def test_clopper_pearson_known_values(k: int, n: int, low: float, high: float) -> None:
    got = clopper_pearson(k, n)
    assert got == pytest.approx((low, high), abs=2e-7)


def test_clopper_pearson_ends_have_the_stated_tail_probability() -> None:
    for k, n in [(1, 7), (3, 40), (17, 250), (249, 250)]:
        low, high = clopper_pearson(k, n, confidence=0.9)
        assert binomial_tail_at_least(k, n, low) == pytest.approx(0.05, rel=1e-6)
        assert 1 - binomial_tail_at_least(k + 1, n, high) == pytest.approx(0.05, rel=1e-6)
        assert low < k / n < high


@pytest.mark.parametrize(("k", "n"), [(-1, 5), (6, 5), (0, 0)])
def test_clopper_pearson_refuses_bad_counts(k: int, n: int) -> None:
    with pytest.raises(ValueError, match="0 <= k <= n"):
        clopper_pearson(k, n)


def test_binomial_tail_is_exact_for_small_n() -> None:
    p = 0.3
    expected = sum(math.comb(6, i) * p**i * (1 - p) ** (6 - i) for i in range(2, 7))
    assert binomial_tail_at_least(2, 6, p) == pytest.approx(expected, rel=1e-12)


def _overlapping(seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Good and defective scores that overlap (AUROC about 0.86), like the held-back family."""
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 1.0, 200), rng.normal(1.5, 1.0, 40)


def test_overlapping_scores_get_a_review_band_instead_of_scrapping_good_parts() -> None:
    good, defect = _overlapping()
    t = calibrate(good, defect, target=CalibrationTarget(frr_ceiling=0.05))
    point = t.evidence.operating_point
    assert point is not None
    # PASS only below the zero-escape point: no validation defect passes
    assert t.review_at <= defect.min()
    assert point.escape is not None and point.escape.events == 0
    # FAIL rejects at most the ceiling of validation goods
    assert point.false_reject.events <= int(0.05 * good.size)
    assert np.mean(good >= t.fail_at) <= 0.05
    assert t.review_at < t.fail_at
    # the goods in between go to REVIEW, and the band's rate is what zero escapes would have cost
    zero = point.frr_at_zero_escape
    assert zero is not None and zero.rate > 0.05
    assert point.review.events == int(np.sum((good >= t.review_at) & (good < t.fail_at)))
    assert point.review.events + point.false_reject.events == zero.events
    assert "above the 5.0% ceiling" in t.evidence.target
    warning = next(w for w in point.warnings if w.startswith("at zero escapes"))
    assert f"{zero.rate:.1%} of good parts would be rejected" in warning
    assert f"with a 5.0% false-reject ceiling {point.review.rate:.1%} of good parts would need review" in warning


def test_without_a_ceiling_zero_escapes_wins_at_any_cost_and_says_so() -> None:
    good, defect = _overlapping()
    t = calibrate(good, defect, target=CalibrationTarget(frr_ceiling=None))
    assert t.fail_at <= defect.min()
    point = t.evidence.operating_point
    assert point is not None and point.false_reject.rate > 0.05
    assert not any(w.startswith("at zero escapes") for w in point.warnings)


def test_separated_scores_meet_the_targets_without_warnings() -> None:
    rng = np.random.default_rng(1)
    t = calibrate(rng.normal(0.2, 0.02, 150), rng.normal(0.9, 0.02, 30))
    point = t.evidence.operating_point
    assert point is not None and point.warnings == ()
    assert point.escape is not None and point.escape.rate == 0.0 and point.escape.high > 0.0
    assert point.false_reject.rate <= 0.05


def test_good_only_calibration_states_the_escape_rate_as_unknown_never_zero() -> None:
    t = calibrate(np.linspace(0.0, 1.0, 100), [])
    point = t.evidence.operating_point
    assert point is not None
    assert point.escape is None and point.defect_review is None and point.frr_at_zero_escape is None
    assert point.warnings[0].startswith("escape rate unknown")
    lines = describe_operating_point(point)
    assert "defective parts passed: unknown (no defective validation parts)" in lines
    assert not any("escape" in line and "0.0%" in line for line in lines)


def test_operating_point_intervals_and_round_trip_through_the_manifest() -> None:
    good, defect = _overlapping(3)
    t = calibrate(good, defect)
    again = Thresholds.model_validate_json(t.model_dump_json())
    assert again == t
    point = again.evidence.operating_point
    assert point is not None
    for est in (point.false_reject, point.review, point.escape, point.defect_review):
        assert est is not None and est.low <= est.rate <= est.high
        assert (est.low, est.high) == pytest.approx(clopper_pearson(est.events, est.n))
    assert again.evidence.scores_good == tuple(sorted(good))
    assert again.evidence.scores_defect == tuple(sorted(defect))


def test_operating_point_at_given_thresholds_counts_escapes_below_review_at() -> None:
    point = operating_point([0.1, 0.2, 0.6], [0.3, 0.5, 0.9], fail_at=0.55, review_at=0.4, frr_ceiling=0.05)
    assert point.false_reject.events == 1
    assert point.review.events == 0
    assert point.escape is not None and point.escape.events == 1  # 0.3 passes
    assert point.defect_review is not None and point.defect_review.events == 1  # 0.5 is reviewed
    assert any(w.startswith("1 of 3 validation defects would pass") for w in point.warnings)
    assert any("above the 5.0% false-reject ceiling" in w for w in point.warnings)


def test_rate_estimate_is_unknown_for_no_parts() -> None:
    assert rate_estimate(0, 0) is None


def test_a_station_ceiling_re_derives_the_thresholds_from_the_stored_scores() -> None:
    from vinspect.models.calibration import thresholds_for_ceiling

    good, defect = _overlapping()
    stated = calibrate(good, defect, target=CalibrationTarget(frr_ceiling=0.05))
    wider = thresholds_for_ceiling(stated.evidence, frr_ceiling=0.20, config={"review_rate": 0.05})
    assert wider.review_at == stated.review_at  # the zero-escape point does not move
    assert wider.fail_at < stated.fail_at
    assert 0.05 < float(np.mean(good >= wider.fail_at)) <= 0.20


def test_a_station_ceiling_needs_stored_scores() -> None:
    from vinspect.errors import ModelError
    from vinspect.models.calibration import thresholds_for_ceiling
    from vinspect.models.manifest import CalibrationEvidence

    old = CalibrationEvidence(target="t", n_good=10, n_defect=0, false_reject_rate=0.0, escape_rate=0.0)
    with pytest.raises(ModelError, match="stores no validation scores"):
        thresholds_for_ceiling(old, frr_ceiling=0.1, config={})


def test_policy_for_applies_the_station_ceiling(tiny_bundle) -> None:  # type: ignore[no-untyped-def]
    from testkit.bundles import state_operating_point
    from vinspect.errors import ModelError
    from vinspect.models.runtime import load_bundle
    from vinspect.pipeline.gating import PolicyOverrides, policy_for

    with pytest.raises(ModelError, match="stores no validation scores"):
        policy_for(load_bundle(tiny_bundle), PolicyOverrides(frr_ceiling=0.1))
    good, defect = _overlapping()
    bundle = load_bundle(state_operating_point(tiny_bundle, good, defect))
    own, station = policy_for(bundle), policy_for(bundle, PolicyOverrides(frr_ceiling=0.2))
    assert station.review_at == own.review_at and station.fail_at < own.fail_at


def test_labels_never_raise_the_anomaly_paths_threshold() -> None:
    """Fused = max(anomaly, defect probability). Labelled defects score ~1 through the classifier,
    so zero escapes on them alone would put fail_at far up; the cap keeps it at the anomaly
    path's good-only threshold, so an unlabelled kind the anomaly path flags still fails."""
    from vinspect.models.calibration import anomaly_cap

    rng = np.random.default_rng(5)
    a_good = rng.uniform(0.2, 0.5, 300)
    p_good = rng.uniform(0.0, 0.1, 300)
    fused_good = np.maximum(a_good, p_good)
    fused_labelled = np.full(20, 0.97)  # the classifier is sure about the kinds it was taught
    unlabelled_anomaly = 0.52  # a new kind: above every good's anomaly score, unknown to the classifier
    target = CalibrationTarget(frr_target=0.01)
    uncapped = calibrate(fused_good, fused_labelled, target=target)
    cap = anomaly_cap(a_good, target=target)
    capped = calibrate(fused_good, fused_labelled, target=target, cap=cap)
    assert cap <= 0.5 < unlabelled_anomaly
    assert capped.fail_at == cap and capped.review_at <= capped.fail_at
    assert unlabelled_anomaly >= capped.fail_at  # caught with the cap
    assert uncapped.fail_at > capped.fail_at
    assert "capped at the anomaly path's good-only threshold" in capped.evidence.target
    assert np.mean(fused_good >= capped.fail_at) <= 0.01 + 1e-9


def test_a_cap_above_fail_at_changes_nothing() -> None:
    good, defect = np.linspace(0.1, 0.4, 100), np.array([0.9, 0.95])
    assert calibrate(good, defect, cap=5.0) == calibrate(good, defect)
