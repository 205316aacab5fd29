"""Reviewer API under load beside a running station (issue #6, goal S11).

Three processes, as in production: the station runtime (``bench/station_bench.py``'s
``run_station``: synthetic triggered line at 30 parts/s, tiny ONNX model, JSONL + SQLite store
with evidence) writing into one data directory, the web app (uvicorn, 1 worker) serving that
same directory on 127.0.0.1, and this process as an open-loop load generator (requests are
sent on a fixed 50/s schedule, each on its own thread, so a slow reply never delays the next
request: no coordinated omission). Phases:

1. ``baseline``: station alone for ``--seconds`` (API process up, idle) → verdict p99.
2. ``loaded``: station for ``--seconds`` while the API gets ``--rate`` req/s (bounded:
   rate × seconds requests) → API p50/p99/max, errors, and the verdict p99 again.
3. ``baseline_after``: station alone again, an A/A control: the spread between the two
   baselines is the noise floor the loaded rise must be read against.

The mix (signed in as a quality engineer): NCR list (JSON), one NCR (JSON), review queue,
station status, NCR list page (HTML), one evidence PNG. Results go to bench/results/api.json
with the exact command and the machine's load average (the bench machine is shared: compare
the two phases of one run, not runs on different days).

    python bench/api_bench.py --seconds 20 --rate 50
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "api"))

PASSWORD = "bench passphrase 2026"
STATION_CHILD = """
import json, sys
from pathlib import Path
sys.path.insert(0, {bench!r})
import station_bench
result = station_bench.run_station(Path({work!r}), fps={fps}, count=None, seconds={seconds}, deadline_ms=150.0)
sys.stdout.write("RESULT " + json.dumps(result, default=str) + "\\n")
"""
API_CHILD = """
import os, sys
os.nice({nice})
sys.path.insert(0, {tests!r})
import uvicorn
from pathlib import Path
from webseed import build_app
from vinspect.api.deps import ApiOptions
from vinspect.store import EvidenceStore, make_engine
from vinspect.store.review_queries import StoreHandle
data = Path({work!r})
engine = make_engine(f"sqlite:///{{data / 'vinspect.db'}}")
store = StoreHandle(engine=engine, evidence=EvidenceStore(data / "evidence"))
app = build_app(data, store, options=ApiOptions())
uvicorn.run(app, host="127.0.0.1", port={port}, log_config=None, access_log=False)
"""


def _prepare(work: Path) -> None:
    """Schema and the bench user (argon2 production parameters)."""
    from vinspect.api.auth import PasswordService
    from vinspect.store import make_engine, session_scope, upgrade
    from vinspect.store.users import create_user

    engine = make_engine(f"sqlite:///{work / 'vinspect.db'}")
    upgrade(engine)
    with session_scope(engine) as session:
        create_user(
            "qe",
            session=session,
            display_name="Bench QE",
            role="quality_engineer",  # type: ignore[arg-type]
            password_hash=PasswordService().hash(PASSWORD),
            actor="system:bench",
        )
    engine.dispose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


STATION_CPUS, WEB_CPUS = {0}, {1}  # --pin: the line on core 0, the web tier (and its load) on core 1


def _station(work: Path, *, fps: float, seconds: float, pin: bool = False) -> subprocess.Popen[str]:
    code = STATION_CHILD.format(bench=str(ROOT / "bench"), work=str(work), fps=fps, seconds=seconds)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    if pin:
        os.sched_setaffinity(proc.pid, STATION_CPUS)  # before the child starts its threads
    return proc


def _station_result(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=600)
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    result: dict[str, Any] = json.loads(line[len("RESULT ") :])
    return result


def _client(base: str) -> tuple[httpx.Client, dict[str, str]]:
    # Expire idle keep-alive connections before uvicorn's 5 s server-side timeout closes them, or a
    # request can race the close and fail with ReadError (a client artefact, not a server error).
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=32, keepalive_expiry=2.0)
    client = httpx.Client(base_url=base, timeout=10.0, limits=limits)
    token = client.get("/api/v1/auth/session").json()["csrf_token"]
    response = client.post(
        "/api/v1/auth/login", json={"username": "qe", "password": PASSWORD}, headers={"X-CSRF-Token": token}
    )
    response.raise_for_status()
    return client, {}


def _targets(client: httpx.Client) -> list[str]:
    ncrs = client.get("/api/v1/ncrs?limit=5").json()["data"]
    paths = ["/api/v1/ncrs?limit=20", "/api/v1/queue", "/api/v1/station/status", "/ncrs"]
    if ncrs:
        doc = client.get(f"/api/v1/ncrs/{ncrs[0]['ncr_uuid']}").json()
        paths.append(f"/api/v1/ncrs/{ncrs[0]['ncr_uuid']}")
        if doc["evidence"]:
            paths.append(f"/evidence/{doc['evidence'][0]['sha256']}")
    return paths


def _load(client: httpx.Client, paths: list[str], *, rate: float, count: int) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    lock = threading.Lock()

    def one(path: str) -> None:
        started = time.perf_counter()
        try:
            code = str(client.get(path).status_code)
        except httpx.HTTPError as exc:
            code = type(exc).__name__
        elapsed = (time.perf_counter() - started) * 1000
        with lock:
            latencies.append(elapsed)
            statuses[code] = statuses.get(code, 0) + 1

    threads = []
    t0 = time.perf_counter()
    for i in range(count):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        thread = threading.Thread(target=one, args=(paths[i % len(paths)],))
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - t0
    values = np.array(latencies)
    ok = sum(n for code, n in statuses.items() if code.startswith("2"))
    return {
        "requests": count,
        "achieved_rate_per_s": round(count / wall, 1),
        "statuses": statuses,
        "error_rate": round(1 - ok / count, 4),
        "p50_ms": round(float(np.percentile(values, 50)), 2),
        "p99_ms": round(float(np.percentile(values, 99)), 2),
        "max_ms": round(float(values.max()), 2),
        "mix": paths,
    }


def _verdict(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "parts": result["parts"],
        "parts_per_s": result["parts_per_s"],
        "latency_ms": result["latency_ms"],
        "deadline_misses": result["deadline_misses"],
        "overflow_rejects": result["overflow_rejects"],
        "books_reconciled": result["books_reconciled"],
    }


def run(work: Path, *, seconds: float, rate: float, fps: float, nice: int, pin: bool) -> dict[str, Any]:
    _prepare(work)
    port = _free_port()
    api = subprocess.Popen(
        [
            sys.executable,
            "-c",
            API_CHILD.format(tests=str(ROOT / "tests" / "api"), work=str(work), port=port, nice=nice),
        ],
        cwd=ROOT,
    )
    if pin:
        os.sched_setaffinity(api.pid, WEB_CPUS)
        os.sched_setaffinity(0, WEB_CPUS)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_up(base)
        baseline = _station_result(_station(work, fps=fps, seconds=seconds, pin=pin))
        station = _station(work, fps=fps, seconds=seconds, pin=pin)
        time.sleep(1.0)  # let the line reach steady state and open a few NCRs
        if nice:
            os.nice(nice)  # the load generator stands in for browsers on other machines
        client, _ = _client(base)
        api_result = _load(client, _targets(client), rate=rate, count=int(rate * (seconds - 2)))
        loaded = _station_result(station)
        control = _station_result(_station(work, fps=fps, seconds=seconds, pin=pin))  # A/A: the noise floor
    finally:
        api.terminate()
        api.wait(timeout=20)
    base_p99 = baseline["latency_ms"]["p99_ms"]
    loaded_p99 = loaded["latency_ms"]["p99_ms"]
    control_p99 = control["latency_ms"]["p99_ms"]
    return {
        "api": api_result,
        "api_nice": nice,
        "pinned": pin,
        "verdict_baseline": _verdict(baseline),
        "verdict_loaded": _verdict(loaded),
        "verdict_baseline_after": _verdict(control),
        "verdict_p99_baseline_spread_pct": round(100 * abs(control_p99 - base_p99) / base_p99, 1),
        "verdict_p99_rise_pct": round(100 * (loaded_p99 - base_p99) / base_p99, 1),
        "goals": {
            "api_p99_under_250_ms": api_result["p99_ms"] < 250,
            "verdict_p99_rise_at_most_10_pct": loaded_p99 <= 1.10 * base_p99,
            "api_errors_zero": api_result["error_rate"] == 0,
        },
    }


def _wait_up(base: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/api/v1/auth/session", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("API did not come up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--rate", type=float, default=50.0, help="API requests per second")
    parser.add_argument("--fps", type=float, default=30.0, help="station parts per second")
    parser.add_argument(
        "--nice",
        type=int,
        default=10,
        help="niceness of the API process and the load generator (deploy: Nice=10 on vinspect-api)",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="pin the station to core 0 and the API + load generator to core 1 (deploy: CPUAffinity=)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "api.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vinspect-api-bench-") as tmp:
        result = run(Path(tmp), seconds=args.seconds, rate=args.rate, fps=args.fps, nice=args.nice, pin=args.pin)
    result |= {
        "command": " ".join(["python", *sys.argv]),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_avg_at_end": os.getloadavg(),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(
        json.dumps(
            {
                "api": {
                    k: result["api"][k] for k in ("p50_ms", "p99_ms", "max_ms", "error_rate", "achieved_rate_per_s")
                },
                "verdict_p99_ms": [
                    result["verdict_baseline"]["latency_ms"]["p99_ms"],
                    result["verdict_loaded"]["latency_ms"]["p99_ms"],
                ],
                "baseline_after_p99_ms": result["verdict_baseline_after"]["latency_ms"]["p99_ms"],
                "rise_pct": result["verdict_p99_rise_pct"],
                "aa_spread_pct": result["verdict_p99_baseline_spread_pct"],
                "goals": result["goals"],
            }
        )
    )


if __name__ == "__main__":
    main()
