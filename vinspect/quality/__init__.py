"""Quality analytics put together: the dashboard's figures, SPC/drift alarm checks, charts, CAPA effectiveness.

Reads through :mod:`vinspect.store` (the only SQL), computes with :mod:`vinspect.analytics` (pure
maths) and draws with matplotlib (server-side, SVG for pages and PNG for reports). Used by the
reviewer app, ``vinspect report`` and ``vinspect spc``.
"""
