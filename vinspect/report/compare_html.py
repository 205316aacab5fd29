"""The ``vinspect compare --report`` page: champion and challenger side by side, one self-contained
HTML file (no scripts, no network), with every changed verdict shown as the two heatmap overlays
of the same image, worst changes for the line first (defects newly escaping, good parts newly
rejected)."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from vinspect.dataset.images import read_image
from vinspect.errors import ImageDecodeError
from vinspect.imaging import encode_png
from vinspect.models.evaluation_images import ORDER as _ORDER
from vinspect.models.evaluation_images import TITLES as _TITLES
from vinspect.report.compare import Comparison
from vinspect.report.evaluate import Scored
from vinspect.report.overlay import render_overlay

__all__ = ["write_compare_report"]

_ROWS = (
    ("AUROC", "auroc", False),
    ("F1", "f1", False),
    ("good parts rejected at zero escapes", "false_reject_rate_at_zero_escape", True),
    ("defect-type accuracy", "defect_type_accuracy", True),
)


def _pct(v: Any) -> str:
    return "n/a" if v is None else f"{v:.1%}"


def _num(v: Any) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def _overlay(item: Scored, level: float, who: str) -> str:
    j = item.judgement
    if j is None or j.prediction is None:
        return f"<figure><figcaption>{who}: no prediction</figcaption></figure>"
    try:
        image = read_image(item.sample.path)
    except ImageDecodeError:
        return ""
    png = base64.b64encode(encode_png(render_overlay(image, j.prediction, level=level))).decode()
    caption = f"{who}: {j.decision.verdict.value}, score {j.prediction.score:.4g}"
    return (
        f'<figure><img src="data:image/png;base64,{png}" width="200" alt="{html.escape(caption)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _name(summary: dict[str, Any]) -> str:
    return f"{summary['model']['name']} {summary['model']['version']}"


def write_compare_report(
    out_dir: Path, comparison: Comparison, *, champion_level: float, challenger_level: float, frozen: str | None = None
) -> Path:
    """Write ``out_dir/index.html`` and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    a, b = comparison.champion, comparison.challenger
    rows = []
    for title, key, pct in _ROWS:
        f = _pct if pct else _num
        rows.append(f"<tr><th>{title}</th><td>{f(a[key])}</td><td>{f(b[key])}</td></tr>")
    for title, key in (
        ("good parts rejected at its thresholds", "false_reject_rate"),
        ("defects escaping at its thresholds", "escape_rate"),
    ):
        rows.append(
            f"<tr><th>{title}</th><td>{_pct(a['operating_point'][key])}</td>"
            f"<td>{_pct(b['operating_point'][key])}</td></tr>"
        )
    for q in ("p50", "p99"):
        la, lb = a["latency_ms"][q], b["latency_ms"][q]
        rows.append(
            f"<tr><th>latency {q} (ms, this machine, interleaved)</th><td>{_num(la)}</td><td>{_num(lb)}</td></tr>"
        )
    classes = sorted(set(a["per_class_detection"]) | set(b["per_class_detection"]))
    for c in classes:
        rows.append(
            f"<tr><th>detected: {html.escape(c)}</th><td>{_pct(a['per_class_detection'].get(c))}</td>"
            f"<td>{_pct(b['per_class_detection'].get(c))}</td></tr>"
        )
    by_file = {
        str(s.sample.path): (s, t)
        for s, t in zip(comparison.champion_scored, comparison.challenger_scored, strict=True)
    }
    sections = []
    for kind in _ORDER:
        items = [c for c in comparison.changed if c["change"] == kind]
        if not items:
            continue
        figs = []
        for c in items:
            sa, sb = by_file[c["file"]]
            pair = _overlay(sa, champion_level, "champion") + _overlay(sb, challenger_level, "challenger")
            figs.append(
                f"<div class=pair><p>{html.escape(Path(c['file']).name)} · {html.escape(c['label'])}</p>{pair}</div>"
            )
        sections.append(f"<h2>{_TITLES[kind]} ({len(items)})</h2><div class=g>{''.join(figs)}</div>")
    if not sections:
        sections.append("<p>No verdict changed on this set.</p>")
    where = f" on frozen set <code>{html.escape(frozen)}</code>" if frozen else ""
    body = (
        f"<h1>Champion {html.escape(_name(a))} vs challenger {html.escape(_name(b))}</h1>"
        f"<p>{a['n_good']} good and {a['n_defect']} defective images{where}. Each model at its own thresholds."
        f"</p><table><tr><th></th><th>champion</th><th>challenger</th></tr>{''.join(rows)}</table>" + "".join(sections)
    )
    page = (
        "<!doctype html><html><head><meta charset=utf-8><title>vinspect: champion vs challenger</title><style>"
        "body{font-family:sans-serif;margin:2em}td,th{padding:2px 10px;text-align:left}"
        ".g{display:flex;flex-wrap:wrap;gap:12px}.pair{display:flex;gap:4px;flex-wrap:wrap;width:420px}"
        ".pair p{width:100%;margin:0;font-size:12px}figure{margin:0;font-size:11px;width:200px}"
        "</style></head><body>" + body + "</body></html>"
    )
    path = out_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
