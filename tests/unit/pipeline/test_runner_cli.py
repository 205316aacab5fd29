"""`vinspect run` end to end: registry model, hot swap between parts, gating exit code (issue 4)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from testkit.bundles import write_golden_samples
from vinspect.models.registry import ModelRegistry

GOLDEN = [
    ("good", np.full((20, 20), 50, np.uint8), "PASS", 50 / 255),
    ("bad", np.full((20, 20), 200, np.uint8), "FAIL", 200 / 255),
]


def cli() -> list[str]:
    return [sys.executable, "-m", "vinspect", "--log-level", "ERROR", "run"]


def records(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def wait_until(predicate, timeout_s: float = 20) -> None:
    end = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def test_run_hot_swaps_registry_model_between_parts(tmp_path, tiny_bundle_factory) -> None:
    data = tmp_path / "data"
    registry = ModelRegistry(data / "models")
    v1, v2 = tiny_bundle_factory(), tiny_bundle_factory(labels=("spot",))
    for bundle in (v1, v2):
        write_golden_samples(bundle, GOLDEN)
    manifest = json.loads((v2 / "manifest.json").read_text()) | {"version": "2"}
    (v2 / "manifest.json").write_text(json.dumps(manifest))
    registry.install(v1, activate=True)
    registry.install(v2)
    station = tmp_path / "st.yaml"
    station.write_text(
        "station_id: hs\nmodel: {name: tiny}\nsignal: {kind: log}\nsinks: [jsonl]\n"
        "source: {kind: synthetic, fps: 60, size_px: 32}\n"
    )
    proc = subprocess.Popen(
        [*cli(), "--station", str(station), "--data-dir", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    jsonl = data / "inspections.jsonl"
    try:
        wait_until(lambda: len(records(jsonl)) >= 10)
        registry.activate("tiny", "2")
        wait_until(lambda: any(r["model_sha256"] == manifest["sha256"] for r in records(jsonl)))
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == 0, err
    recs = records(jsonl)
    seqs, shas = [r["part_seq"] for r in recs], [r["model_sha256"] for r in recs]
    assert seqs == list(range(len(recs)))
    switch = shas.index(manifest["sha256"])
    assert switch >= 10
    assert len(set(shas[:switch])) == 1
    assert set(shas[switch:]) == {manifest["sha256"]}
    closing = json.loads(out.strip().splitlines()[-1])
    assert closing["model"]["version"] == "2"
    assert closing["extras"]["swaps"] == 1
    assert closing["books_reconciled"]


def test_run_gated_out_exits_3_and_rejects_every_part(tmp_path) -> None:
    station = tmp_path / "st.yaml"
    station.write_text(
        "station_id: g\nmodel: {name: absent}\nsignal: {kind: log}\nsinks: [jsonl]\n"
        "source: {kind: synthetic, size_px: 32}\n"
    )
    done = subprocess.run(
        [*cli(), "--station", str(station), "--data-dir", str(tmp_path / "d"), "--max-parts", "25"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3
    assert "stays PREOPERATIONAL" in done.stderr
    assert "no active version" in done.stderr
    closing = json.loads(done.stdout.strip().splitlines()[-1])
    assert closing["books"]["triggers"] == 25
    assert closing["books"]["passed"] == 0
    assert closing["books_reconciled"]
    assert closing["state"] == "STOPPED"
    assert "PREOPERATIONAL" in closing["reason"]


def test_run_bad_station_file_exits_2_naming_the_field(tmp_path) -> None:
    station = tmp_path / "st.yaml"
    station.write_text("station_id: g\nmodel: {name: m}\nsource: {kind: synthetic, fps: 0}\n")
    done = subprocess.run([*cli(), "--station", str(station)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert str(station) in done.stderr
    assert "source.synthetic.fps" in done.stderr
