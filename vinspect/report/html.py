"""The `vinspect eval --report` page: one self-contained HTML file (inline SVG and PNG, no
scripts, no network), with the ROC curve, score histograms per class, and heatmap overlays of
the worst cases (good parts scored highest, defects scored lowest)."""

from __future__ import annotations

import base64
import html
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vinspect.dataset.images import read_image
from vinspect.errors import ImageDecodeError
from vinspect.imaging import encode_png
from vinspect.report.evaluate import Scored
from vinspect.report.overlay import render_overlay

__all__ = ["write_report"]

_W, _H, _PAD = 360, 240, 30
_COLOURS = ("#2a9d8f", "#e76f51", "#264653", "#f4a261", "#8e44ad", "#e9c46a", "#6d597a", "#b5838d")


def roc_points(good: npt.NDArray[np.float64], bad: npt.NDArray[np.float64]) -> list[tuple[float, float]]:
    """(false-positive rate, true-positive rate) for every threshold, from (0,0) to (1,1)."""
    thresholds = np.unique(np.concatenate([good, bad]))[::-1]
    pts = [(0.0, 0.0)] + [(float((good >= t).mean()), float((bad >= t).mean())) for t in thresholds]
    return [*pts, (1.0, 1.0)]


def _svg_roc(
    good: npt.NDArray[np.float64],
    bad: npt.NDArray[np.float64],
    *,
    fail_at: float | None = None,
    auroc: float | None = None,
) -> str:
    """The ROC curve with the area under it shaded, the chance diagonal, ticks, and the
    operating point (``fail_at``) marked: a perfect model reads as a filled square, not an
    empty box whose edges hide the curve."""
    pts = roc_points(good, bad)
    inner_w, inner_h = _W - 2 * _PAD, _H - 2 * _PAD

    def xy(x: float, y: float) -> str:
        return f"{_PAD + x * inner_w:.1f},{_H - _PAD - y * inner_h:.1f}"

    curve = " ".join(xy(x, y) for x, y in pts)
    area = f"{xy(0, 0)} {curve} {xy(1, 0)}"
    ticks = "".join(
        f'<text x="{_PAD + v * inner_w:.1f}" y="{_H - _PAD + 12}" font-size="9" text-anchor="middle">{v:g}</text>'
        f'<text x="{_PAD - 4}" y="{_H - _PAD - v * inner_h + 3:.1f}" font-size="9" text-anchor="end">{v:g}</text>'
        for v in (0.0, 0.5, 1.0)
    )
    marker = ""
    if fail_at is not None and math.isfinite(fail_at):
        fx, fy = float((good >= fail_at).mean()), float((bad >= fail_at).mean())
        cx, cy = xy(fx, fy).split(",")
        right = fx > 0.4  # keep the label inside the plot: left of the point on the right half
        label_x = float(cx) + (-6 if right else 8)
        marker = (
            f'<circle cx="{cx}" cy="{cy}" r="4" fill="#264653"/>'
            f'<text x="{label_x:.1f}" y="{float(cy) + 16:.1f}" font-size="10" '
            f'text-anchor="{"end" if right else "start"}">fail_at: {fx:.1%} false rejects, {fy:.1%} detected'
            f"</text>"
        )
    title = f"ROC (AUROC {auroc:.3f})" if auroc is not None else "ROC"
    return (
        f'<svg width="{_W}" height="{_H + 14}" role="img" aria-label="ROC curve">'
        f'<text x="{_W / 2}" y="{_PAD - 10}" text-anchor="middle" font-size="12">{title}</text>'
        f'<polygon points="{area}" fill="#e76f51" fill-opacity="0.18" stroke="none"/>'
        f'<rect x="{_PAD}" y="{_PAD}" width="{inner_w}" height="{inner_h}" fill="none" stroke="#ccc"/>'
        f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - _PAD}" y2="{_PAD}" stroke="#bbb" stroke-dasharray="4 3"/>'
        f'<polyline points="{curve}" fill="none" stroke="#e76f51" stroke-width="2.5"/>{marker}{ticks}'
        f'<text x="{_W / 2}" y="{_H + 10}" text-anchor="middle" font-size="11">'
        f"false-reject rate (good parts)</text>"
        f'<text x="10" y="{_H / 2}" font-size="11" transform="rotate(-90 10 {_H / 2})" text-anchor="middle">'
        f"detection rate</text></svg>"
    )


def _svg_histograms(by_class: dict[str, list[float]], *, fail_at: float, review_at: float) -> str:
    values = np.concatenate([np.array(v) for v in by_class.values()])
    lo, hi = float(values.min()), float(values.max())
    lo, hi = min(lo, review_at), max(hi, fail_at) + 1e-9
    edges = np.linspace(lo, hi, 31)
    counts = {k: np.histogram(v, bins=edges)[0] / max(len(v), 1) for k, v in by_class.items()}
    top = max(float(c.max()) for c in counts.values()) or 1.0
    sx = (_W * 2 - 2 * _PAD) / (hi - lo)
    parts = []
    for i, (label, c) in enumerate(counts.items()):
        colour = _COLOURS[i % len(_COLOURS)]
        pts = " ".join(
            f"{_PAD + (edges[j] - lo) * sx:.1f},{_H - _PAD - c[j] / top * (_H - 2 * _PAD):.1f}" for j in range(len(c))
        )
        parts.append(
            f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>'
            f'<text x="{_W * 2 - _PAD - 120}" y="{_PAD + 14 * i}" font-size="11" fill="{colour}">'
            f"{html.escape(label)} (n={len(by_class[label])})</text>"
        )
    # The review label sits left of its line and the fail label right of its own, on separate
    # rows, so the two never overlap however close the thresholds are (one label when they are equal).
    marks = [(fail_at, f"fail_at {fail_at:.3g}", _H - _PAD - 18)]
    if review_at != fail_at:
        marks.append((review_at, f"review_at {review_at:.3g}", _H - _PAD - 4))
    else:
        marks[0] = (fail_at, f"review_at = fail_at {fail_at:.3g}", _H - _PAD - 18)
    for value, name, y in marks:
        x = _PAD + (value - lo) * sx
        # the review label goes left of its line unless that would leave the plot
        left = name.startswith("review_at ") and x - _PAD > 6 * len(name)
        parts.append(
            f'<line x1="{x:.1f}" y1="{_PAD}" x2="{x:.1f}" y2="{_H - _PAD}" stroke="#000" '
            f'stroke-dasharray="4 3"/><text x="{x + (-3 if left else 3):.1f}" y="{y}" font-size="10" '
            f'text-anchor="{"end" if left else "start"}">{name}</text>'
        )
    return (
        f'<svg width="{_W * 2}" height="{_H}" role="img" aria-label="score histograms">'
        f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W * 2 - _PAD}" y2="{_H - _PAD}" stroke="#999"/>'
        f'{"".join(parts)}<text x="{_W}" y="{_H - 5}" text-anchor="middle" font-size="11">'
        f"score ({lo:.3g} .. {hi:.3g})</text></svg>"
    )


def _overlay_tag(item: Scored, *, level: float) -> str:
    j = item.judgement
    if j is None or j.prediction is None:
        return ""
    try:
        image = read_image(item.sample.path)
    except ImageDecodeError:
        return ""
    png = base64.b64encode(encode_png(render_overlay(image, j.prediction, level=level))).decode()
    caption = (
        f"{html.escape(item.sample.path.name)} · {html.escape(item.sample.label)} · "
        f"score {j.prediction.score:.4g} · {j.decision.verdict.value}"
    )
    return (
        f'<figure><img src="data:image/png;base64,{png}" width="220" alt="{caption}">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def write_report(out_dir: Path, *, summary: dict[str, Any], scored: list[Scored], level: float, worst: int = 6) -> Path:
    """Write ``out_dir/index.html`` and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    usable = [s for s in scored if math.isfinite(s.score)]
    good = np.array([s.score for s in usable if s.sample.is_good])
    bad = np.array([s.score for s in usable if not s.sample.is_good])
    by_class: dict[str, list[float]] = defaultdict(list)
    for s in usable:
        by_class[s.sample.label].append(s.score)
    op = summary["operating_point"]
    high_good = sorted((s for s in usable if s.sample.is_good), key=lambda s: -s.score)[:worst]
    low_bad = sorted((s for s in usable if not s.sample.is_good), key=lambda s: s.score)[:worst]
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(_fmt(v))}</td></tr>"
        for k, v in summary.items()
        if not isinstance(v, dict | list)
    )
    classes = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{v:.1%}</td></tr>" for k, v in summary["per_class_detection"].items()
    )
    body = [
        f"<h1>Evaluation of {html.escape(summary['model']['name'])} {html.escape(summary['model']['version'])}</h1>",
        f"<p>model sha256 <code>{summary['model']['sha256']}</code></p>",
        f"<table>{rows}</table><h2>Detection per defect class (rejected at review_at)</h2><table>{classes}</table>",
        _svg_roc(good, bad, fail_at=op["fail_at"], auroc=summary.get("auroc"))
        if good.size and bad.size
        else "<p>ROC needs good and defective samples.</p>",
        "<h2>Score histograms</h2>",
        _svg_histograms(by_class, fail_at=op["fail_at"], review_at=op["review_at"]) if by_class else "",
        "<h2>Good parts scored highest (false-reject risk)</h2>",
        "<div class=g>" + "".join(_overlay_tag(s, level=level) for s in high_good) + "</div>",
        "<h2>Defects scored lowest (escape risk)</h2>",
        "<div class=g>" + "".join(_overlay_tag(s, level=level) for s in low_bad) + "</div>",
    ]
    page = (
        "<!doctype html><html><head><meta charset=utf-8><title>vinspect evaluation</title><style>"
        "body{font-family:sans-serif;margin:2em}td,th{padding:2px 10px;text-align:left}"
        ".g{display:flex;flex-wrap:wrap;gap:8px}figure{margin:0;font-size:11px;width:220px}"
        "</style></head><body>" + "".join(body) + "</body></html>"
    )
    path = out_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
