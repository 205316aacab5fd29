"""Threshold calibration and shared detection metrics (issue 2, model part)."""

from __future__ import annotations

import numpy as np
import pytest

from vinspect.errors import ModelError
from vinspect.models.calibration import (
    CalibrationTarget,
    auroc,
    best_f1,
    calibrate,
    detection_rate_by_class,
    escape_rate,
    false_reject_rate,
    false_reject_rate_at_zero_escape,
)


@pytest.mark.parametrize(
    ("good", "defect", "expected"),
    [
        ([0.1, 0.2, 0.3], [0.4, 0.5], 1.0),  # perfectly separated
        ([0.4, 0.5], [0.1, 0.2, 0.3], 0.0),  # perfectly inverted
        ([0.5, 0.5], [0.5, 0.5], 0.5),  # all tied: ties count one half
        ([1.0, 2.0, 3.0], [2.0, 4.0], 0.75),  # one tie (2 vs 2) and one loss (3 vs 2)
        ([0.0, 1.0], [0.5], 0.5),
    ],
)
def test_auroc_known_values(good: list[float], defect: list[float], expected: float) -> None:
    assert auroc(good, defect) == pytest.approx(expected)


def test_auroc_matches_pairwise_definition() -> None:
    rng = np.random.default_rng(3)
    good, defect = rng.integers(0, 20, 60).astype(float), rng.integers(5, 25, 30).astype(float)
    pairs = (defect[None, :] > good[:, None]) + 0.5 * (defect[None, :] == good[:, None])
    assert auroc(good, defect) == pytest.approx(pairs.mean())


@pytest.mark.parametrize(("good", "defect"), [([], [1.0]), ([1.0], []), ([np.nan], [1.0])])
def test_auroc_refuses_empty_or_non_finite(good: list[float], defect: list[float]) -> None:
    with pytest.raises(ModelError):
        auroc(good, defect)


@pytest.mark.parametrize(
    ("good", "defect", "expected"),
    [
        ([0.1, 0.2, 0.3, 0.4], [0.5, 0.9], 0.0),
        ([0.1, 0.2, 0.6, 0.7], [0.5, 0.9], 0.5),  # the 0.5 defect forces two goods out
        ([0.1, 0.5], [0.5], 0.5),  # a tie fails (score >= threshold)
    ],
)
def test_false_reject_rate_at_zero_escape(good: list[float], defect: list[float], expected: float) -> None:
    assert false_reject_rate_at_zero_escape(good, defect) == pytest.approx(expected)


def test_rates_at_threshold() -> None:
    assert false_reject_rate([0.1, 0.5, 0.9], 0.5) == pytest.approx(2 / 3)
    assert escape_rate([0.1, 0.5, 0.9], 0.5) == pytest.approx(1 / 3)
    assert false_reject_rate([], 0.5) == 0.0


def test_best_f1_finds_the_separating_threshold() -> None:
    f1, threshold = best_f1([0.1, 0.2, 0.3], [0.7, 0.8])
    assert f1 == pytest.approx(1.0)
    assert 0.3 < threshold <= 0.7


def test_detection_rate_by_class() -> None:
    rates = detection_rate_by_class([0.9, 0.2, 0.8, 0.7], ["crack", "crack", "hole", "hole"], threshold=0.5)
    assert rates == {"crack": 0.5, "hole": 1.0}


@pytest.mark.parametrize(
    ("good", "defect", "fail_low", "fail_high", "frr", "escapes"),
    [
        # separated: fail_at lies in the gap, just above the worst good (margin capped by the good spread)
        ([0.1, 0.2, 0.3, 0.4], [0.8, 0.9], 0.4, 0.8, 0.0, 0.0),
        # overlap: zero escapes wins, the goods above the weakest defect are rejected
        ([0.1, 0.2, 0.3, 0.6, 0.7], [0.5, 0.9], 0.3, 0.5, 0.4, 0.0),
        # every good above every defect: fail at the weakest defect, everything rejected
        ([0.8, 0.9], [0.1], 0.1, 0.1, 1.0, 0.0),
    ],
)
def test_calibrate_zero_escape_target(
    good: list[float], defect: list[float], fail_low: float, fail_high: float, frr: float, escapes: float
) -> None:
    t = calibrate(good, defect, target=CalibrationTarget(frr_ceiling=None))  # zero escapes at any cost
    assert fail_low < t.fail_at <= fail_high or t.fail_at == pytest.approx(fail_high)
    assert t.evidence.false_reject_rate == pytest.approx(frr)
    assert t.evidence.escape_rate == escapes
    assert all(d >= t.fail_at for d in defect)
    assert "zero escapes" in t.evidence.target


def test_calibrate_margin_is_capped_by_good_spread() -> None:
    """A confident classifier (defects at 0.99) must not drag fail_at far above the goods."""
    good = np.linspace(0.30, 0.40, 50)
    t = calibrate(good, [0.99, 0.995])
    spread = 0.40 - float(np.median(good))
    assert 0.40 < t.fail_at <= 0.40 + 0.25 * spread + 1e-9


@pytest.mark.parametrize(("n_good", "frr_target", "max_fails"), [(100, 0.01, 1), (100, 0.05, 5), (10, 0.01, 0)])
def test_calibrate_without_defects_uses_the_good_quantile(n_good: int, frr_target: float, max_fails: int) -> None:
    good = np.linspace(0.0, 1.0, n_good)
    t = calibrate(good, [], target=CalibrationTarget(frr_target=frr_target))
    fails = int(np.sum(good >= t.fail_at))
    assert fails == max_fails
    assert t.evidence.n_defect == 0
    assert "no validation defects" in t.evidence.target


@pytest.mark.parametrize("review_rate", [0.0, 0.05, 0.2, 1.0])
def test_review_band_sits_below_fail(review_rate: float) -> None:
    rng = np.random.default_rng(0)
    good, defect = rng.normal(0.3, 0.05, 200), rng.normal(0.8, 0.05, 20)
    t = calibrate(
        good, defect, target=CalibrationTarget(review_rate=review_rate), good_map_values=rng.normal(0.2, 0.05, 5000)
    )
    assert t.review_at <= t.fail_at
    assert t.map_at <= t.fail_at
    assert t.evidence.review_rate <= review_rate + 1e-9


def test_calibrate_with_ties_keeps_zero_escapes() -> None:
    t = calibrate([0.5, 0.5, 0.5, 0.2], [0.5, 0.5], target=CalibrationTarget(frr_ceiling=None))
    assert t.fail_at <= 0.5
    assert t.evidence.escape_rate == 0.0


@pytest.mark.parametrize("bad", [dict(frr_target=1.5), dict(review_rate=-0.1), dict(margin_cap=-1.0)])
def test_calibration_target_refuses_bad_values(bad: dict[str, float]) -> None:
    with pytest.raises(ModelError):
        CalibrationTarget(**bad)  # type: ignore[arg-type]


def test_calibrate_needs_good_scores() -> None:
    with pytest.raises(ModelError, match="at least one validation good"):
        calibrate([], [0.9])
