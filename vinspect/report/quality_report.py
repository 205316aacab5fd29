"""``vinspect report``: an HTML quality report with PNG charts for a shift, a day or a week.

Writes ``index.html`` (no scripts, no network) and one PNG per chart into the output folder,
from the same figures as the reviewer app's dashboard, plus the alarms and the CAPAs.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from vinspect.analytics.kpis import KPI_LINES, Kpis
from vinspect.analytics.rates import Rate
from vinspect.files import write_atomically
from vinspect.quality import charts
from vinspect.quality.dashboard import Dashboard, build_dashboard
from vinspect.store.alarms import AlarmView, list_alarms
from vinspect.store.analytics_queries import Window
from vinspect.store.capa import CapaSummary, capa_summaries
from vinspect.store.review_queries import DbSession

__all__ = ["write_quality_report"]

_CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:1.5rem auto;max-width:1100px;color:#1b1f23}
table{border-collapse:collapse;margin:.5rem 0 1.2rem;width:100%}
th,td{border-bottom:1px solid #d7dde3;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}small,.muted{color:#5c6670}img{max-width:100%;border:1px solid #d7dde3}.bad{color:#b00020}"""


def _e(value: object) -> str:
    return html.escape(str(value))


def _rate(r: Rate) -> str:
    if r.value is None or r.low is None or r.high is None:
        return f"— <small>(0 of {r.n})</small>"
    return (
        f"<strong>{100 * r.value:.2f} %</strong> <small>[{100 * r.low:.2f}, {100 * r.high:.2f}] · "
        f"{r.k} of {r.n}</small>"
    )


def _faults(k: Kpis) -> str:
    return "<br>".join(f"{_e(r)} {_rate(v)}" for r, v in k.fault_rates.items()) or "—"


def _kpi_table(title: str, groups: dict[str, Kpis]) -> str:
    rows = "".join(
        f"<tr><th>{_e(name)}</th><td>{k.reject_rate.n}</td><td>{_rate(k.first_pass_yield)}</td>"
        f"<td>{_rate(k.reject_rate)}</td><td>{_rate(k.review_rate)}</td><td>{_rate(k.overturn_share)}</td>"
        f"<td>{_rate(k.escape_rate)}</td><td>{_faults(k)}</td></tr>"
        for name, k in groups.items()
    )
    return (
        f"<h3>{_e(title)}</h3><table><tr><th></th><th>Parts</th><th>First-pass yield</th><th>Reject rate</th>"
        "<th>REVIEW rate</th><th>Overturn share</th><th>Escape rate</th><th>Fault rate by reason</th></tr>"
        f"{rows or '<tr><td colspan=8>No parts.</td></tr>'}</table>"
    )


def _png(out: Path, name: str, data: bytes) -> str:
    path = out / name
    path.write_bytes(data)
    return f'<img src="{_e(name)}" alt="{_e(name)}">'


def _what(a: AlarmView) -> str:
    d = a.detail
    if a.kind == "config":  # a station file changed on disk without approval (issue 20)
        return str(d.get("message", ""))
    if a.kind == "drift":
        return f"PSI {d.get('psi')} ({d.get('band')}), KS D {d.get('ks_d')} on {d.get('live_n')} live parts"
    return f"Nelson {a.rule}: {d.get('description', '')}"


def _ack(a: AlarmView) -> str:
    return f"{_e(a.ack_reason)} (signed)" if a.acknowledged_at else "<span class=bad>open</span>"


def _alarms(alarms: Sequence[AlarmView]) -> str:
    rows = "".join(
        f"<tr><td>{a.id}</td><td>{_e(a.kind)}</td><td>{_e(a.station_id)}</td><td>{_e(a.chart)}</td>"
        f"<td>{_e(_what(a))}</td>"
        f"<td>{a.first_at:%Y-%m-%d %H:%M} to {a.last_at:%Y-%m-%d %H:%M}</td><td>{_ack(a)}</td></tr>"
        for a in alarms
    )
    return (
        "<table><tr><th>#</th><th>Kind</th><th>Station</th><th>Chart</th><th>What</th><th>Subgroups (UTC)</th>"
        f"<th>Acknowledgement</th></tr>{rows or '<tr><td colspan=7>No alarms.</td></tr>'}</table>"
    )


def _capas(capas: Sequence[CapaSummary]) -> str:
    rows = "".join(
        f"<tr><td>{_e(c.capa_number)}</td><td>{_e(c.title)}</td><td>{_e(c.status)}</td><td>{_e(c.source)}</td>"
        f"<td>{c.ncr_count}</td><td>{c.signed_steps} of 8</td></tr>"
        for c in capas
    )
    return (
        "<table><tr><th>CAPA</th><th>Title</th><th>Status</th><th>Opened from</th><th>NCRs</th>"
        f"<th>Steps signed</th></tr>{rows or '<tr><td colspan=6>No CAPAs.</td></tr>'}</table>"
    )


def _body(board: Dashboard, out: Path, alarms: Sequence[AlarmView], capas: Sequence[CapaSummary]) -> str:
    parts = [
        f"<h1>Quality report <small>{board.window.since:%Y-%m-%d %H:%M} to {board.window.until:%Y-%m-%d %H:%M}"
        f" UTC</small></h1>",
        f"<p class=muted>{board.inspected} parts inspected. Generated "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC by vinspect report.</p>",
    ]
    o = board.overall
    parts.append(_kpi_table("All stations", {"all": o}))
    lat = " / ".join("—" if v is None else f"{v:.1f}" for v in o.latency_ms.values())
    parts.append(
        f"<p><small>Model-reject rate {_rate(o.defect_reject_rate)} · false-reject rate (estimated) "
        f"{'—' if o.false_reject_rate is None else f'{100 * o.false_reject_rate:.2f} %'} · escape upper bound "
        f"{'—' if o.escape_ppm_upper is None else f'{o.escape_ppm_upper:.0f} ppm'} · throughput "
        f"{'—' if o.throughput_per_hour is None else f'{o.throughput_per_hour:.1f} parts/h'} · latency "
        f"capture→record p50/p95/p99 {lat} ms</small></p>"
    )
    parts += [
        _kpi_table("By station", board.by_station),
        _kpi_table("By shift (UTC start hour)", board.by_shift),
        _kpi_table("By model version", board.by_model),
        _kpi_table("By part number", board.by_part),
    ]
    parts.append(
        "<ul>"
        + "".join(f"<li><strong>{_e(k.replace('_', ' '))}</strong>: {_e(v)}</li>" for k, v in KPI_LINES.items())
        + "</ul>"
    )
    parts.append("<h2>Alarms</h2>" + _alarms(alarms))
    parts.append("<h2>p-charts</h2>")
    for i, pc in enumerate(board.charts):
        parts.append(_png(out, f"pchart-{i + 1}.png", charts.p_chart(pc, fmt="png")))
        if pc.baseline is None:
            parts.append(f"<p class=muted>{_e(pc.note)}</p>")
        for v in pc.violations:
            fmt = "%Y-%m-%d %H:%M:%S" if pc.by_parts else "%Y-%m-%d %H:00"
            parts.append(
                f"<p class=bad>Nelson {v.rule} ({_e(v.description)}) at subgroups from "
                f"{pc.hours[v.first]:{fmt}} to {pc.hours[v.last]:{fmt}}</p>"
            )
    parts.append("<h2>Pareto</h2>")
    if board.pareto_codes:
        parts.append(
            _png(
                out, "pareto-codes.png", charts.pareto_chart(board.pareto_codes, title="NCRs by defect code", fmt="png")
            )
        )
    if board.pareto_stations:
        chart = charts.pareto_chart(board.pareto_stations, title="NCRs by station", fmt="png")
        parts.append(_png(out, "pareto-stations.png", chart))
    parts.append("<h2>Attribute agreement (Cohen's κ, vision vs reviewer)</h2>")
    for model, k in board.kappa_by_model.items():
        value = "undefined" if k.kappa is None else f"{k.kappa:.3f} [{k.low:.3f}, {k.high:.3f}]"
        cells = "".join(
            f"<tr><th>{_e(k.categories[i])}</th>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>"
            for i, row in enumerate(k.table)
        )
        parts.append(
            f"<h3>Model {_e(model)}: κ = {value} <small>{_e(k.reading)}, N = {k.n}</small></h3><table>"
            f"<tr><th>vision \\ reviewer</th>{''.join(f'<th>{_e(c)}</th>' for c in k.categories)}</tr>"
            f"{cells}</table>"
        )
    if not board.kappa_by_model:
        parts.append("<p class=muted>No adjudications or blind audits in this window.</p>")
    parts.append("<h2>Score drift</h2>")
    for i, d in enumerate(board.drift):
        parts.append(_png(out, f"drift-{i + 1}.png", charts.drift_chart(d, fmt="png")))
        if d.note:
            parts.append(f"<p class=muted>{_e(d.note)}</p>")
    if not board.drift:
        parts.append("<p class=muted>No scored parts of an installed model with validation scores.</p>")
    parts.append("<h2>Corrective actions (CAPA)</h2>" + _capas(capas))
    return "\n".join(parts)


def write_quality_report(
    session: DbSession,
    window: Window,
    out: Path,
    *,
    station_id: str | None = None,
    validation_scores: dict[str, Sequence[float]] | None = None,
) -> Path:
    """Write ``out/index.html`` and its PNG charts; returns the index path."""
    out.mkdir(parents=True, exist_ok=True)
    board = build_dashboard(session, window, station_id=station_id, validation_scores=validation_scores)
    alarms = [
        a for a in list_alarms(session=session, limit=1000) if a.last_at >= window.since and a.first_at < window.until
    ]
    body = _body(board, out, alarms, capa_summaries(session=session))
    index = out / "index.html"
    page = (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>vinspect quality report</title>"
        f"<style>{_CSS}</style></head><body>{body}</body></html>\n"
    )
    write_atomically(index, page, durable=False)
    return index
