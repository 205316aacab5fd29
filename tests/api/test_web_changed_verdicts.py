"""Issue 20 item 4 in the reviewer app: the Models page shows the changed verdicts of a candidate's current
evaluation with both heatmaps (written by ``vinspect models evaluate``, named by the evidence's hash)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from webseed import TEST_OPTIONS, TestClient, add_users, build_app, login, open_store

from testkit.bundles import state_operating_point, write_tiny_bundle
from vinspect.api.auth import PasswordService
from vinspect.cli import main


def _bundle(root: Path, version: str, write_png: Callable[..., Path], *, fail_at: float | None = None) -> Path:
    bundle = write_tiny_bundle(root / f"tiny-{version}")
    rng = np.random.default_rng(1)
    state_operating_point(bundle, rng.normal(0.2, 0.02, 150), rng.normal(0.9, 0.02, 30), version=version)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["training"]["trained_by"] = "tom"
    if fail_at is not None:  # a candidate that lets a 0.75 defect through
        manifest["thresholds"] |= {"fail_at": fail_at, "review_at": fail_at - 0.02, "map_at": fail_at}
    golden = []
    for name, level, expect in (("00_good.png", 51, "PASS"), ("01_crack.png", 242, "FAIL")):
        write_png(bundle / "golden" / name, np.full((32, 32), level, dtype=np.uint8))
        golden.append({"file": f"golden/{name}", "expect": expect, "score": level / 255})
    manifest["golden_samples"] = golden
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    return bundle


def test_models_page_shows_the_changed_verdicts_of_the_current_evaluation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_png: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "station"
    models = ["models", "--data-dir", str(data)]
    assert main([*models, "install", str(_bundle(tmp_path, "1", write_png)), "--activate"]) == 0
    assert main([*models, "install", str(_bundle(tmp_path, "2", write_png, fail_at=0.8))]) == 0
    source = tmp_path / "eval-src"
    for i, level in enumerate((0.18, 0.2, 0.22)):
        write_png(source / "good" / f"g{i}.png", np.full((32, 32), round(level * 255), dtype=np.uint8))
    for i, level in enumerate((0.75, 0.95)):
        write_png(source / "crack" / f"c{i}.png", np.full((32, 32), round(level * 255), dtype=np.uint8))
    frozen = tmp_path / "frozen"
    assert main(["dataset", "freeze", str(source), "--out", str(frozen), "--name", "eval", "--version", "1"]) == 0
    assert (
        main(
            ["models", "criteria", "tiny", "2", "--data-dir", str(data), "--max-escape", "0", "--reason", "no escapes"]
        )
        == 0
    )
    capsys.readouterr()
    assert (
        main(["models", "evaluate", "tiny", "2", "--data-dir", str(data), "--data", str(frozen), "--no-progress"]) == 1
    )  # the escape fails the criterion
    assert "changed verdicts: 1 (both heatmaps of each in" in capsys.readouterr().out

    store = open_store(data)
    add_users(
        store, PasswordService(time_cost=TEST_OPTIONS.argon2_time_cost, memory_cost_kib=TEST_OPTIONS.argon2_memory_kib)
    )
    with TestClient(build_app(data, store), base_url="http://127.0.0.1:8600", follow_redirects=False) as client:
        login(client, "reviewer")
        html = client.get("/models").text
        section = html.split('id="changed-tiny-2"')[1].split("</div>")[0]
        assert "Changed verdicts on the frozen set (1)" in section
        assert "Defects the challenger lets through (escapes)" in section and "c0.png · crack" in section
        assert 'running model: <span class="verdict v-FAIL">FAIL</span>' in section
        assert 'this candidate: <span class="verdict v-PASS">PASS</span>' in section
        for who in ("champion", "challenger"):
            image = client.get(f"/evidence/changed/tiny/2/0-{who}.png")
            assert image.status_code == 200 and image.content[:4] == b"\x89PNG"
        assert client.get("/evidence/changed/tiny/2/1-champion.png").status_code == 404
        assert client.get("/evidence/changed/tiny/2/..%2Fchanged.json").status_code == 404
    store.engine.dispose()
