"""Quality analytics: KPIs, p-chart with Nelson rules, Pareto, drift, attribute agreement.

Pure maths over plain numbers (no web, no SQL): the store's :mod:`vinspect.store.analytics_queries`
reads the counts, :mod:`vinspect.analytics.charts` draws them (matplotlib, server-side).
Definitions follow ``docs/quality-domain.md`` §10-14.
"""
