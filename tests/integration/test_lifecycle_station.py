"""The model lifecycle on a running station (issue 20): a candidate in shadow accumulates agreement
statistics without signalling; a two-person promotion switches the running station to it, and a
signed rollback puts the previous sha256 back on the running station within 60 s."""

from __future__ import annotations

import io
import itertools
import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from testkit.bundles import state_operating_point, write_golden_samples
from vinspect.cli import main
from vinspect.models.registry import ModelRegistry

PASSWORD = "a long enough passphrase"
GOLDEN = [
    ("good", np.full((20, 20), 25, np.uint8), "PASS", 25 / 255),
    ("bad", np.full((20, 20), 230, np.uint8), "FAIL", 230 / 255),
]


def _records(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def _wait(predicate, timeout_s: float = 60) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout_s, "timed out"
        time.sleep(0.05)
    return time.monotonic() - start


def _bundle(
    factory,
    version: str,
    *,
    goods: float,
    defects: float,  # type: ignore[no-untyped-def]
    labels: tuple[str, ...] = (),
):
    rng = np.random.default_rng(3)
    bundle = state_operating_point(
        factory(labels=labels), rng.normal(goods, 0.02, 150), rng.normal(defects, 0.02, 30), version=version
    )
    write_golden_samples(bundle, GOLDEN)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["training"]["trained_by"] = "tom"
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    return bundle, manifest["sha256"]


@pytest.mark.slow
def test_shadow_then_promotion_then_rollback_on_a_running_station(
    tmp_path: Path, tiny_bundle_factory, monkeypatch: pytest.MonkeyPatch, write_png
) -> None:
    data = tmp_path / "data"
    registry = ModelRegistry(data / "models")
    v1, sha1 = _bundle(tiny_bundle_factory, "1", goods=0.3, defects=0.9)
    v2, sha2 = _bundle(tiny_bundle_factory, "2", goods=0.2, defects=0.6, labels=("spot",))  # another graph
    assert sha1 != sha2
    registry.install(v1, activate=True)
    registry.install(v2)
    for user in ("quinn", "petra"):
        monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
        assert (
            main(
                [
                    "users",
                    "add",
                    user,
                    "--display-name",
                    user.title(),
                    "--role",
                    "quality_engineer",
                    "--password-stdin",
                    "--data-dir",
                    str(data),
                ]
            )
            == 0
        )
    station = tmp_path / "st.yaml"
    station.write_text(
        "station_id: lc\nmodel: {name: tiny}\nsignal: {kind: log}\n"
        "sinks: [jsonl, {kind: shadow, model: {name: tiny, version: '2'}}]\n"
        "source: {kind: synthetic, fps: 40, size_px: 32}\n"
    )
    from tests.unit.pipeline.test_runner_cli import cli

    proc = subprocess.Popen(
        [*cli(), "--station", str(station), "--data-dir", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    jsonl, stats = data / "inspections.jsonl", data / "shadow" / "tiny@2" / "stats.json"
    try:
        _wait(lambda: stats.is_file() and json.loads(stats.read_text())["parts"] >= 20)
        assert {r["model_sha256"] for r in _records(jsonl)} == {sha1}  # the shadow never signals or records

        for level, label in ((20, "good"), (25, "good"), (240, "crack"), (250, "crack")):
            write_png(tmp_path / "src" / label / f"{label}{level}.png", np.full((32, 32), level, np.uint8))
        assert (
            main(
                [
                    "dataset",
                    "freeze",
                    str(tmp_path / "src"),
                    "--out",
                    str(tmp_path / "frozen"),
                    "--name",
                    "e",
                    "--version",
                    "1",
                ]
            )
            == 0
        )
        assert (
            main(
                [
                    "models",
                    "criteria",
                    "tiny",
                    "2",
                    "--data-dir",
                    str(data),
                    "--min-shadow-parts",
                    "20",
                    "--allow-more-false-rejects",
                    "--reason",
                    "lower thresholds for faint defects",
                ]
            )
            == 0
        )
        assert (
            main(
                [
                    "models",
                    "evaluate",
                    "tiny",
                    "2",
                    "--data-dir",
                    str(data),
                    "--data",
                    str(tmp_path / "frozen"),
                    "--no-progress",
                ]
            )
            == 0
        )
        for user in ("quinn", "petra"):
            monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
            assert (
                main(
                    [
                        "models",
                        "sign",
                        "tiny",
                        "2",
                        "--data-dir",
                        str(data),
                        "--user",
                        user,
                        "--reason",
                        "ok",
                        "--password-stdin",
                    ]
                )
                == 0
            )
        assert main(["models", "promote", "tiny", "2", "--data-dir", str(data)]) == 0
        _wait(lambda: any(r["model_sha256"] == sha2 for r in _records(jsonl)))

        monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
        assert (
            main(
                [
                    "models",
                    "rollback",
                    "tiny",
                    "--data-dir",
                    str(data),
                    "--user",
                    "quinn",
                    "--reason",
                    "new false rejects on the line",
                    "--password-stdin",
                ]
            )
            == 0
        )
        seen = len(_records(jsonl))
        took = _wait(lambda: any(r["model_sha256"] == sha1 for r in _records(jsonl)[seen:]))
        assert took < 60
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == 0, err
    shas = [r["model_sha256"] for r in _records(jsonl)]
    runs = [shas[0]] + [b for a, b in itertools.pairwise(shas) if a != b]
    assert runs == [sha1, sha2, sha1], [s[:8] for s in runs]
    final = json.loads(stats.read_text())
    assert final["parts"] >= 20 and final["candidate"]["sha256"] == sha2
