"""Charts drawn on the server with matplotlib (Agg): SVG text for pages, PNG bytes for reports."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from vinspect.analytics.pareto import Bar
from vinspect.quality.dashboard import DriftFigure, PChart

__all__ = ["drift_chart", "p_chart", "pareto_chart"]

_RED, _BLUE, _GREY = "#b3261e", "#1f5fa8", "#6b6b6b"
_SPAN_WORDS = {"hour": "hourly", "day": "daily (UTC)", "week": "weekly (Mon-Sun UTC)"}


def _figure(width: float = 7.5, height: float = 3.0) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _render(fig: Any, fmt: str) -> bytes:
    if fmt not in ("svg", "png"):
        raise ValueError(f"chart format {fmt!r}: svg or png")
    buf = io.BytesIO()
    fig.tight_layout()
    # A fixed hash salt and no date keep the SVG byte-identical for identical data.
    meta = {"Date": None} if fmt == "svg" else {"Software": None}
    fig.savefig(buf, format=fmt, metadata=meta)
    return buf.getvalue()


def p_chart(pc: PChart, *, fmt: str = "svg") -> bytes:
    """Subgroup proportions with the frozen centre line, stepwise limits and violating points in red."""
    import matplotlib

    matplotlib.rcParams["svg.hashsalt"] = "vinspect"
    fig, ax = _figure()
    x = list(range(len(pc.hours)))
    if pc.points:
        ps = [p.p for p in pc.points]
        bad = {i for v in pc.violations for i in range(v.first, v.last + 1)}
        ax.plot(x, ps, marker="o", color=_BLUE, linewidth=1, markersize=3, label="p (rejects / parts)")
        ax.step(x, [p.ucl for p in pc.points], where="mid", color=_RED, linewidth=1, label="UCL / LCL")
        ax.step(x, [p.lcl for p in pc.points], where="mid", color=_RED, linewidth=1)
        assert pc.baseline is not None
        ax.axhline(pc.baseline.p_bar, color=_GREY, linewidth=1, label=f"p̄ = {pc.baseline.p_bar:.4f} (frozen)")
        ax.scatter(
            [i for i in x if i in bad],
            [ps[i] for i in x if i in bad],
            color=_RED,
            zorder=3,
            s=25,
            label="Nelson rule violation",
        )
        ax.legend(loc="upper left", fontsize=7)
    else:
        ps = [d / n for d, n in zip(pc.defects, pc.sizes, strict=True)]
        ax.plot(x, ps, marker="o", color=_BLUE, linewidth=1, markersize=3)
        ax.set_title("no frozen limits yet", fontsize=9)
    ticks = x[:: max(1, len(x) // 8)]
    ax.set_xticks(ticks)
    by_parts = pc.by_parts
    label = "%m-%d %H:%M:%S" if by_parts else {"day": "%Y-%m-%d", "week": "wk %Y-%m-%d"}.get(pc.span, "%m-%d %H:00")
    ax.set_xticklabels([pc.hours[i].strftime(label) for i in ticks], fontsize=7, rotation=20)
    ax.set_ylabel("reject proportion", fontsize=8)
    grouping = f"subgroups of {by_parts} parts" if by_parts else f"{_SPAN_WORDS.get(pc.span, pc.span)} subgroups"
    if pc.sizes and not by_parts:
        grouping += f" (n {min(pc.sizes):,} to {max(pc.sizes):,} parts)"
    kind = (
        f"Laney p'-chart (sigma_z {pc.baseline.sigma_z:.3f})"
        if pc.baseline is not None and pc.baseline.sigma_z
        else "p-chart"
    )
    ax.set_title(f"{kind}, {pc.station_id}, {grouping}", fontsize=9)
    return _render(fig, fmt)


def pareto_chart(bars: Sequence[Bar], *, title: str, fmt: str = "svg") -> bytes:
    """Bars by count (vital few dark), cumulative share as a line on the right axis."""
    import matplotlib

    matplotlib.rcParams["svg.hashsalt"] = "vinspect"
    fig, ax = _figure()
    keys = [b.key for b in bars]
    ax.bar(range(len(bars)), [b.count for b in bars], color=[_BLUE if b.vital else "#9db8d9" for b in bars])
    ax.set_xticks(range(len(bars)))
    ax.set_xticklabels(keys, fontsize=7, rotation=20)
    ax.set_ylabel("NCRs", fontsize=8)
    right = ax.twinx()
    right.plot(range(len(bars)), [100 * b.cumulative for b in bars], color=_RED, marker="o", markersize=3)
    right.set_ylim(0, 105)
    right.set_ylabel("cumulative %", fontsize=8)
    right.axhline(80, color=_GREY, linewidth=0.8, linestyle="--")
    ax.set_title(title, fontsize=9)
    return _render(fig, fmt)


def drift_chart(d: DriftFigure, *, fmt: str = "svg") -> bytes:
    """Validation vs live anomaly-score histograms of one model version."""
    import matplotlib

    matplotlib.rcParams["svg.hashsalt"] = "vinspect"
    fig, ax = _figure(height=2.6)
    lo = min([*d.expected, *d.live], default=0.0)
    hi = max([*d.expected, *d.live], default=1.0)
    bins = [lo + (hi - lo) * i / 30 for i in range(31)] if hi > lo else 10
    if d.expected:
        ax.hist(d.expected, bins=bins, density=True, alpha=0.5, color=_GREY, label="validation (good parts)")
    if d.live:
        ax.hist(d.live, bins=bins, density=True, alpha=0.5, color=_BLUE, label="live")
    title = f"anomaly scores, model {d.model_version}"
    if d.psi is not None and d.ks is not None:
        title += f": PSI {d.psi.value:.3f} ({d.psi.band}), KS D {d.ks.d:.3f} (p {d.ks.p_value:.2g})"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _render(fig, fmt)
