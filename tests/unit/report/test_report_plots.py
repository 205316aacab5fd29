"""The eval report's plots (issue 13): a perfect ROC is visible, threshold labels never overlap."""

from __future__ import annotations

import re

import numpy as np

from vinspect.report.html import _svg_histograms, _svg_roc


def test_a_perfect_roc_is_a_filled_square_not_an_empty_box() -> None:
    good, bad = np.linspace(0.1, 0.4, 50), np.linspace(0.6, 0.9, 20)
    svg = _svg_roc(good, bad, fail_at=0.5, auroc=1.0)
    assert "AUROC 1.000" in svg
    area = re.search(r'<polygon points="([^"]+)" fill="#e76f51" fill-opacity', svg)
    assert area is not None and len(area.group(1).split()) >= 4  # the shaded area under the curve
    assert 'stroke-dasharray="4 3"' in svg  # chance diagonal
    assert "fail_at: 0.0% false rejects, 100.0% detected" in svg


def test_a_real_roc_marks_the_operating_point() -> None:
    rng = np.random.default_rng(0)
    svg = _svg_roc(rng.normal(0.3, 0.1, 200), rng.normal(0.5, 0.1, 40), fail_at=0.55, auroc=0.9)
    assert re.search(r"fail_at: \d+\.\d% false rejects, \d+\.\d% detected", svg) and "<circle" in svg


def test_threshold_labels_do_not_overlap_even_when_close() -> None:
    svg = _svg_histograms({"good": [0.1, 0.2, 0.3], "spot": [0.6, 0.7]}, fail_at=0.52, review_at=0.5)
    labels = dict(re.findall(r'<text x="[^"]+" y="([^"]+)" font-size="10" text-anchor="\w+">(\w+)_at', svg))
    review = re.search(r'<text x="([^"]+)" y="([^"]+)" font-size="10" text-anchor="end">review_at', svg)
    fail = re.search(r'<text x="([^"]+)" y="([^"]+)" font-size="10" text-anchor="start">fail_at', svg)
    assert review and fail and review.group(2) != fail.group(2) and len(labels) == 2


def test_equal_thresholds_get_one_label_inside_the_plot() -> None:
    svg = _svg_histograms({"good": [0.1, 0.2], "spot": [0.6, 0.9]}, fail_at=0.1, review_at=0.1)
    assert svg.count("review_at = fail_at 0.1") == 1 and "review_at 0.1" not in svg
    x = float(re.search(r'<text x="([^"]+)" y="[^"]+" font-size="10" text-anchor="start">review_at =', svg).group(1))
    assert x > 0
