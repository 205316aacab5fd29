"""`vinspect run`'s closing report (issue 13): readable text for a person, one JSON line for machines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from vinspect.cli.run_summary import closing_json, closing_text

STATUS = {
    "station_id": "demo-line-1",
    "state": "STOPPED",
    "reason": "max parts reached",
    "books": {
        "triggers": 240,
        "passed": 200,
        "review": 12,
        "failed_defect": 25,
        "failed_fault": {"late": 3},
        "discrepancy": 0,
    },
    "latency_ms": {"n": 120, "p50_ms": 36.188438500000004, "p99_ms": 51.02, "max_ms": 60.9},
    "model": {"name": "demo", "version": "1", "sha256": "ab" * 32},
}


def test_text_report_is_short_readable_and_says_what_is_cumulative() -> None:
    text = closing_text(STATUS, reconciled=True)
    lines = text.splitlines()
    assert len(lines) <= 7
    assert max(len(line) for line in lines) < 120
    assert "240 triggered = 200 pass + 12 review + 25 fail (defect) + 3 fail (fault: late 3)" in text
    assert "all runs of this station" in text
    assert "this run (120 parts): p50 36.2 ms" in text
    assert "books: closed" in text
    assert "demo v1 (abababababab)" in text


def test_json_report_is_one_parsable_line() -> None:
    line = closing_json(STATUS, reconciled=False)
    assert line.count("\n") == 1
    assert json.loads(line)["books_reconciled"] is False


def test_run_prints_text_or_json_as_asked(tmp_path: Path) -> None:
    station = tmp_path / "st.yaml"
    station.write_text(
        "station_id: g\nmodel: {name: absent}\nsignal: {kind: log}\nsinks: [jsonl]\n"
        "source: {kind: synthetic, size_px: 32}\n"
    )
    base = [
        sys.executable,
        "-m",
        "vinspect",
        "--log-level",
        "ERROR",
        "run",
        "--station",
        str(station),
        "--max-parts",
        "5",
    ]
    text = subprocess.run(
        [*base, "--data-dir", str(tmp_path / "a"), "--output", "text"], capture_output=True, text=True, timeout=60
    )
    assert text.returncode == 3
    assert text.stdout.startswith("station g: STOPPED")
    assert "5 triggered = 0 pass" in text.stdout
    assert "{" not in text.stdout
    machine = subprocess.run(
        [*base, "--data-dir", str(tmp_path / "b"), "--json"], capture_output=True, text=True, timeout=60
    )
    assert json.loads(machine.stdout.strip().splitlines()[-1])["books"]["triggers"] == 5
