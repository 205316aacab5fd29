"""Hand-computed fixtures for the analytics maths (quality-domain §10-14)."""

from __future__ import annotations

import math

import pytest

from vinspect.analytics.agreement import cohen_kappa, kappa_from_pairs
from vinspect.analytics.drift import ks_two_sample, psi, psi_band
from vinspect.analytics.kpis import KpiCounts, compute_kpis, percentile
from vinspect.analytics.pareto import pareto
from vinspect.analytics.rates import exact_rate, two_proportion_test, wilson
from vinspect.analytics.spc import Baseline, ChartPoint, NelsonMonitor, chart, freeze_baseline, nelson

# ---- rates -----------------------------------------------------------------------------------


def test_wilson_matches_the_textbook_interval() -> None:
    r = wilson(5, 100)  # Wilson 95 %: 0.0215 .. 0.1118 (Newcombe 1998, Table I style)
    assert r.value == 0.05
    assert r.low == pytest.approx(0.02154, abs=1e-4)
    assert r.high == pytest.approx(0.11175, abs=1e-4)
    assert wilson(0, 0).value is None


def test_exact_rate_with_no_escapes_gives_the_rule_of_three_bound() -> None:
    r = exact_rate(0, 300)
    assert r.low == 0.0
    # Clopper-Pearson upper end at k = 0: 1 - 0.025**(1/n) ≈ 3.69 / n
    assert r.high == pytest.approx(1 - 0.025 ** (1 / 300), rel=1e-6)


def test_two_proportion_test_on_a_constructed_before_after() -> None:
    # before 50/1000, after 20/1000: pooled 0.035, SE = sqrt(0.035*0.965*(2/1000)) = 0.0082189
    t = two_proportion_test(50, 1000, 20, 1000)
    assert t.z == pytest.approx(-0.03 / math.sqrt(0.035 * 0.965 * 0.002), rel=1e-9)
    assert t.z == pytest.approx(-3.650, abs=1e-3)
    assert t.p_value == pytest.approx(2.62e-4, rel=0.02)
    assert t.significant and "significantly lower" in t.verdict()
    same = two_proportion_test(50, 1000, 45, 1000)
    assert not same.significant and "no significant change" in same.verdict()
    with pytest.raises(ValueError, match="both sides"):
        two_proportion_test(1, 10, 0, 0)


# ---- p-chart -------------------------------------------------------------------------------


def test_p_chart_centre_and_limits_with_varying_subgroup_sizes() -> None:
    base = freeze_baseline([2, 3, 5], [100, 200, 200], min_subgroups=3)
    assert base.p_bar == pytest.approx(10 / 500)
    pts = chart(base, [1, 8, 50], [100, 400, 2500])
    # n=100: sigma = sqrt(.02*.98/100) = .014 -> UCL .062, LCL max(0, -.022) = 0
    assert pts[0].ucl == pytest.approx(0.062) and pts[0].lcl == 0.0
    # n=400: sigma = .007 -> UCL .041, LCL 0
    assert pts[1].ucl == pytest.approx(0.041) and pts[1].lcl == 0.0
    # n=2500: sigma = .0028 -> UCL .0284, LCL .0116; p = .02 -> z = 0
    assert pts[2].ucl == pytest.approx(0.0284) and pts[2].lcl == pytest.approx(0.0116)
    assert pts[2].z == pytest.approx(0.0)
    assert pts[1].z == pytest.approx((0.02 - 0.02) / 0.007)


def test_baseline_refuses_too_few_or_degenerate_subgroups() -> None:
    with pytest.raises(ValueError, match="at least 20"):
        freeze_baseline([1] * 5, [100] * 5)
    with pytest.raises(ValueError, match="no control limits"):
        freeze_baseline([0] * 20, [100] * 20)
    with pytest.raises(ValueError, match="subgroup 3"):
        freeze_baseline([1, 1, 1, 200] + [1] * 16, [100] * 20)


def _pts(zs: list[float], ps: list[float] | None = None) -> list[ChartPoint]:
    ps = ps if ps is not None else zs
    return [ChartPoint(d=0, n=1, p=p, ucl=0.0, lcl=0.0, z=z) for z, p in zip(zs, ps, strict=True)]


def _rules(zs: list[float], rule: int) -> list[tuple[int, int]]:
    return [(v.first, v.last) for v in nelson(_pts(zs), rules=(rule,))]


def test_nelson_rule_1_fires_beyond_three_sigma_only() -> None:
    zs = [0.5, 3.5, 3.2, 0.1, -3.1, 3.0, -3.0, 0.2]
    assert _rules(zs, 1) == [(1, 2), (4, 4)]  # exactly 3 sigma is on the limit, not beyond


def test_nelson_rule_2_fires_at_the_ninth_point_on_one_side() -> None:
    assert _rules([0.5] * 8 + [-0.5], 2) == []
    zs = [0.5] * 11 + [0.0] + [-0.2] * 9
    # fires at index 8 (window 0..8), extends to 10; the point on the line breaks the run;
    # nine below fire again at index 20 (window 12..20)
    assert _rules(zs, 2) == [(0, 10), (12, 20)]


def test_nelson_rule_3_six_points_trending_equal_neighbours_break() -> None:
    assert _rules([1, 2, 3, 4, 5, 6], 3) == [(0, 5)]
    assert _rules([1, 2, 3, 4, 5], 3) == []
    assert _rules([1, 2, 3, 3, 4, 5, 6], 3) == []
    assert _rules([6, 5, 4, 3, 2, 1, 0, 1], 3) == [(0, 6)]


def test_nelson_rule_4_fourteen_alternating() -> None:
    alt = [0.1 if i % 2 else -0.1 for i in range(14)]
    assert _rules(alt, 4) == [(0, 13)]
    assert _rules(alt[:13], 4) == []
    broken = [*alt[:7], alt[6], *alt[7:]]  # an equal neighbour breaks the alternation
    assert _rules(broken, 4) == []


def test_nelson_rules_fire_nowhere_else_on_an_in_control_series() -> None:
    zs = [0.3, -0.4, 0.2, 0.2, -1.1, 1.5, 0.0, -0.3, 0.6, 0.6, -2.1, 0.4, 0.5, -0.2, 1.0, 1.0]
    assert nelson(_pts(zs)) == []


def test_monitor_reports_each_violation_once_as_data_arrives() -> None:
    monitor = NelsonMonitor()
    fired = [monitor.add(p) for p in _pts([0.5] * 12)]
    assert [len(f) for f in fired] == [0] * 8 + [1, 0, 0, 0]
    assert fired[8][0].rule == 2
    assert monitor.violations[0].last == 11
    with pytest.raises(ValueError, match="rules 1-4"):
        NelsonMonitor(rules=(5,))


def test_chart_points_feed_rule_1_from_real_limits() -> None:
    base = Baseline(p_bar=0.02, subgroups=20, parts=10_000, defects=200)
    pts = chart(base, [2, 10, 2], [100, 100, 100])  # 10/100 = .10 > UCL .062
    assert [(v.rule, v.first) for v in nelson(pts)] == [(1, 1)]


# ---- Pareto, drift, agreement, KPIs --------------------------------------------------------------


def test_pareto_sorts_and_marks_the_vital_few() -> None:
    bars = pareto({"scratch": 30, "dent": 50, "unknown:open_set": 15, "spot": 5, "none": 0})
    assert [b.key for b in bars] == ["dent", "scratch", "unknown:open_set", "spot"]
    assert [b.cumulative for b in bars] == pytest.approx([0.5, 0.8, 0.95, 1.0])
    assert [b.vital for b in bars] == [True, True, False, False]


def test_psi_against_a_computed_example() -> None:
    # one edge at .5; expected 50/50, actual 80/20:
    # PSI = (.8-.5) ln(.8/.5) + (.2-.5) ln(.2/.5) = .141001 + .274887 = .415888
    expected = [0.25] * 50 + [0.75] * 50
    actual = [0.25] * 80 + [0.75] * 20
    r = psi(expected, actual, edges=[0.5])
    assert r.value == pytest.approx(0.415888, abs=1e-6)
    assert r.band == "alarm" and psi_band(0.05) == "stable" and psi_band(0.2) == "watch"
    assert psi(expected, expected, edges=[0.5]).value == pytest.approx(0.0)


def test_ks_against_a_computed_example() -> None:
    r = ks_two_sample([1, 2, 3, 4], [3, 4, 5, 6])
    assert r.d == pytest.approx(0.5)  # at x=2: F_e=.5, F_a=0; at x=4: 1 vs .5
    # lambda = (sqrt(2) + .12 + .11/sqrt(2)) * .5 = .80600; Q = 2(e^-2l^2 - e^-8l^2 + e^-18l^2) = .5344
    assert r.p_value == pytest.approx(0.5344, abs=2e-4)
    assert ks_two_sample([0.1] * 50, [0.9] * 50).p_value < 1e-6


def test_kappa_against_the_textbook_example() -> None:
    k = cohen_kappa(["FAIL", "PASS"], [[40, 10], [5, 145]])
    assert k.p_observed == pytest.approx(0.925)
    assert k.p_expected == pytest.approx(0.6375)
    assert k.kappa == pytest.approx(0.2875 / 0.3625)  # 0.7931
    se = math.sqrt(0.925 * 0.075 / (200 * 0.3625**2))
    assert k.low == pytest.approx(k.kappa - 1.959964 * se, abs=1e-6)
    assert k.reading == "good to excellent"
    pairs = [("FAIL", "defect")] * 3 + [("FAIL", "good")] + [("PASS", "good")] * 4
    with pytest.raises(ValueError, match="not among"):
        kappa_from_pairs(pairs, ["FAIL", "PASS"])


def test_kappa_of_one_category_is_undefined_not_a_number() -> None:
    k = kappa_from_pairs([("FAIL", "FAIL")] * 5)
    assert k.kappa is None and "undefined" in k.reading


def test_kpis_from_counts() -> None:
    c = KpiCounts(
        inspected=1000,
        passed=950,
        review=20,
        failed=30,
        defect_rejects=45,
        faults={"late": 5},
        first_inspected=900,
        first_passed=860,
        adjudicated=40,
        false_rejects=10,
        audited_passes=100,
        escapes=1,
        hours=2.0,
        latencies_ms=[10, 20, 30, 40],
    )
    k = compute_kpis(c)
    assert k.reject_rate.value == pytest.approx(0.05)
    assert k.first_pass_yield.value == pytest.approx(860 / 900)
    assert k.review_rate.value == pytest.approx(0.02)
    assert k.fault_rates["late"].value == pytest.approx(0.005)
    assert k.overturn_share.value == pytest.approx(0.25)
    assert k.false_reject_rate == pytest.approx(12.5 / (12.5 + 950))
    assert k.escape_rate.value == pytest.approx(0.01) and k.escape_rate.method == "clopper-pearson"
    assert k.throughput_per_hour == 500.0
    assert k.latency_ms["p50"] == 25.0 and percentile([], 50) is None
    with pytest.raises(ValueError, match="inspected"):
        KpiCounts(inspected=10, passed=5, review=0, failed=0, defect_rejects=0)


def test_exact_interval_for_few_escapes_in_many_audits_is_the_full_sum_one_and_fast() -> None:
    """The short-side sum used for small k agrees with inverting the full binomial tail."""
    import time

    from vinspect.models.intervals import binomial_tail_at_least, clopper_pearson

    def by_full_sum(k: int, n: int, goal: float) -> float:
        lo, hi = 0.0, 1.0
        for _ in range(80):
            mid = (lo + hi) / 2.0
            lo, hi = (mid, hi) if binomial_tail_at_least(k, n, mid) < goal else (lo, mid)
        return (lo + hi) / 2.0

    for k, n in ((1, 400), (3, 2000), (7, 900)):
        low, high = clopper_pearson(k, n)
        assert low == pytest.approx(by_full_sum(k, n, 0.025), rel=1e-9)
        assert high == pytest.approx(by_full_sum(k + 1, n, 0.975), rel=1e-9)
    start = time.perf_counter()
    low, high = clopper_pearson(30, 10_000)
    assert time.perf_counter() - start < 0.5  # summing 10,000 terms 160 times took seconds
    assert low < 30 / 10_000 < high


def test_laney_p_prime_chart_against_a_hand_computed_example() -> None:
    """d = 2, 4, 6, 8 of n = 100 each: p-bar 0.05, sigma_p = sqrt(0.05 * 0.95 / 100) = 0.0217945,
    z = -1.37649, -0.45883, 0.45883, 1.37649, moving ranges 0.917663 each, sigma_z = 0.917663 / 1.128
    = 0.813531, UCL = 0.05 + 3 * 0.0217945 * 0.813531 = 0.103192 (the p-chart's own: 0.115383)."""
    from vinspect.analytics.spc import laney_sigma_z, point

    base = freeze_baseline([2, 4, 6, 8], [100] * 4, min_subgroups=4, laney=True)
    assert base.p_bar == pytest.approx(0.05)
    assert base.sigma_z == pytest.approx(0.813531, abs=1e-6)
    pt = point(base, 11, 100)
    assert pt.ucl == pytest.approx(0.103192, abs=1e-6) and pt.lcl == 0.0
    assert pt.z == pytest.approx((0.11 - 0.05) / (0.0217945 * 0.813531), rel=1e-5)  # 3.384: beyond the limit
    classic = freeze_baseline([2, 4, 6, 8], [100] * 4, min_subgroups=4)
    assert classic.sigma_z == 1.0 and point(classic, 11, 100).ucl == pytest.approx(0.115383, abs=1e-6)
    # overdispersed large subgroups: the p-chart flags every point, Laney's limits do not
    defects, sizes = [4800, 5300, 4550, 5200, 4700, 5450], [100_000] * 6
    wide = freeze_baseline(defects, sizes, min_subgroups=6, laney=True)
    narrow = freeze_baseline(defects, sizes, min_subgroups=6)
    assert nelson(chart(wide, defects, sizes), rules=(1,)) == []
    assert len(nelson(chart(narrow, defects, sizes), rules=(1,))) >= 1
    with pytest.raises(ValueError, match="do not vary"):
        laney_sigma_z(0.05, [5, 5], [100, 100])


def test_the_dashboard_draws_hours_up_to_a_week_days_up_to_92_days_then_weeks() -> None:
    from datetime import UTC, datetime, timedelta

    from vinspect.quality.dashboard import display_span
    from vinspect.store.analytics_queries import Window

    end = datetime(2026, 12, 5, 22, tzinfo=UTC)
    spans = {d: display_span(Window(end - timedelta(days=d), end)) for d in (1 / 3, 1, 7, 7.01, 30, 92, 92.01, 365)}
    assert spans == {1 / 3: "hour", 1: "hour", 7: "hour", 7.01: "day", 30: "day", 92: "day", 92.01: "week", 365: "week"}
