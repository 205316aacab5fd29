"""`vinspect inspect` and `vinspect eval` end to end on a real ONNX graph (issue 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vinspect.cli import main
from vinspect.dataset.synth import write_dataset


def test_inspect_reports_verdicts_and_never_passes_bad_images(
    tiny_bundle: Path, write_png, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dark = write_png("imgs/dark.png", np.full((16, 16), 20, np.uint8))
    bright = write_png("imgs/bright.png", np.full((16, 16), 230, np.uint8))
    (tmp_path / "imgs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\ngarbage")
    (tmp_path / "imgs" / "empty.jpg").write_bytes(b"")
    out_json = tmp_path / "r.json"
    code = main(
        [
            "inspect",
            "--model",
            str(tiny_bundle),
            str(tmp_path / "imgs"),
            "--json",
            str(out_json),
            "--heatmaps",
            str(tmp_path / "heat"),
        ]
    )
    assert code == 0
    results = {Path(r["file"]).name: r for r in json.loads(out_json.read_text())["results"]}
    assert results["dark.png"]["verdict"] == "PASS"
    assert results["bright.png"]["verdict"] == "FAIL"
    for name in ("broken.png", "empty.jpg"):
        assert results[name]["verdict"] == "FAIL" and name in results[name]["error"]
    assert (tmp_path / "heat" / "bright_heatmap.png").is_file()
    printed = capsys.readouterr().out
    assert "4 images: 1 PASS, 0 REVIEW, 3 FAIL" in printed and str(dark) in printed and str(bright) in printed


def test_inspect_missing_model_is_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "--model", str(tmp_path / "nope"), str(tmp_path)]) == 2
    assert "model bundle not found" in capsys.readouterr().err


def test_eval_writes_json_and_report(tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_dataset(tmp_path / "d", n_good=6, n_defect_each=2, kinds=("spot", "scratch"))
    (data / "good" / "zero.png").write_bytes(b"")
    code = main(
        [
            "eval",
            "--model",
            str(tiny_bundle),
            "--data",
            str(data),
            "--json",
            str(tmp_path / "m.json"),
            "--report",
            str(tmp_path / "rep"),
            "--no-progress",
        ]
    )
    assert code == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    for key in (
        "auroc",
        "f1",
        "false_reject_rate_at_zero_escape",
        "per_class_detection",
        "defect_type_accuracy",
        "n_good",
        "n_defect",
        "latency_ms",
    ):
        assert key in metrics
    assert metrics["n_good"] == 6 and metrics["n_defect"] == 4
    assert set(metrics["per_class_detection"]) == {"spot", "scratch"}
    assert metrics["unreadable"][0]["file"].endswith("zero.png")
    measured = metrics["operating_point"]["measured"]
    assert measured["false_reject"]["n"] == 6 and measured["escape"]["n"] == 4
    assert measured["false_reject"]["low"] <= measured["false_reject"]["rate"] <= measured["false_reject"]["high"]
    assert metrics["operating_point"]["stated"] is None  # the tiny bundle predates stated rates
    printed = capsys.readouterr().out
    assert "measured on this data:" in printed and "good parts rejected" in printed
    assert "stated by the bundle: no rates" in printed
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "ROC curve" in page and "data:image/png;base64" in page


def test_dataset_validate_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_dataset(tmp_path / "d", n_good=2, n_defect_each=1, kinds=("spot",))
    assert main(["dataset", "validate", str(data)]) == 0
    (data / "spot" / "bad.png").write_bytes(b"\0\0")
    assert main(["dataset", "validate", str(data)]) == 1
    assert "bad.png" in capsys.readouterr().out
