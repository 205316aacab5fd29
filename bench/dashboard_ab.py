"""Time the dashboard of any vinspect tree on a fill that ``dashboard_bench.py`` kept, without migrating it.

    PYTHONPATH=<tree> python bench/dashboard_ab.py URL --end ISO [--repeats 20] [--http] [--out FILE]

``dashboard_bench.py --database-url`` migrates the database first, which an older tree cannot do to
a newer schema. This script imports the tree on ``PYTHONPATH`` (its ``bench/dashboard_bench.py``
for the windows, the timing and the page requests, and its ``vinspect``), rolls up, and times
``build_dashboard`` per window and, with ``--http``, the page and one p-chart SVG: the same
measurement for the code before a change and after it, back to back on one fill.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path

TREE = Path(os.environ.get("PYTHONPATH", ".").split(":")[0]).resolve()
for sub in ("bench", "tests/store", "tests/api"):
    sys.path.insert(0, str(TREE / sub))

import dashboard_bench as bench  # noqa: E402  (the tree's own)

from vinspect.quality.dashboard import build_dashboard  # noqa: E402
from vinspect.store.analytics_rollup import roll_up  # noqa: E402
from vinspect.store.db import make_engine, session_scope  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--end", required=True, help="the filled year's end (ISO 8601)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--http", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    engine = make_engine(args.url)
    start = time.perf_counter()
    roll_up(engine)
    result: dict[str, object] = {
        "command": "PYTHONPATH=" + str(TREE) + " python bench/dashboard_ab.py " + " ".join(sys.argv[1:]),
        "tree": str(TREE),
        "shared": True,
        "load_before": bench.load_average(),
        "rollup_pass_s": round(time.perf_counter() - start, 2),
    }
    spans = bench.windows(datetime.fromisoformat(args.end))
    scores = {f"2026.{k}": [0.05 + 0.4 * (i / 999) for i in range(1000)] for k in range(1, 5)}
    timings = {}
    for name, window in spans.items():

        def call(w: object = window) -> object:
            with session_scope(engine, readonly=True) as session:
                return build_dashboard(session, w, validation_scores=scores)

        timings[name] = bench.timed(call, args.repeats)
        print(f"  build_dashboard {name}: {timings[name]}", flush=True)
    result["build_dashboard"] = timings
    if args.http:
        result["http"] = bench.http_times(engine, spans, args.repeats)
    result["load_after"] = bench.load_average()
    engine.dispose()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
