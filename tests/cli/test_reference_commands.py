"""`vinspect train --task reference`, `inspect`, `eval` and `run` on synthetic PCB pairs (issue 11)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import pytest

from vinspect.cli import main
from vinspect.dataset.linechange import LineChange, apply_change
from vinspect.dataset.synth_pcb import draw_board, inject_defect, write_pairs
from vinspect.errors import ModelError, ModelIntegrityError
from vinspect.models.runtime import load_bundle

LINE = LineChange(
    dx_px=5.0, dy_px=3.0, rotation_deg=-0.6, gain=0.93, offset=8.0, noise_sigma=2.0, jpeg_quality=92, seed=1
)


@pytest.fixture(scope="module")
def ref_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ref")
    data = write_pairs(root / "pairs", n_good=4, n_defect_each=4, seed=0)
    out = root / "bundle"
    code = main(
        [
            "train",
            "--task",
            "reference",
            "--data",
            str(data),
            "--out",
            str(out),
            "--name",
            "pcb",
            "--version",
            "1",
            "--part-number",
            "PCB-7",
        ]
    )
    assert code == 0
    return out


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("frames")
    board = draw_board(0)
    (root / "good").mkdir()
    (root / "open").mkdir()
    (root / "misplaced").mkdir()
    for i in range(3):
        cv2.imwrite(str(root / "good" / f"good_{i}.png"), apply_change(board, LineChange(**{**_line(), "seed": i})))
    defect, _ = inject_defect(board, "open", seed=11)
    cv2.imwrite(str(root / "open" / "open_0.png"), apply_change(defect, LINE))
    cv2.imwrite(str(root / "misplaced" / "far_0.png"), apply_change(board, LineChange(dx_px=48.0)))
    return root


def _line() -> dict[str, float | int | None]:
    return {
        "dx_px": LINE.dx_px,
        "dy_px": LINE.dy_px,
        "rotation_deg": LINE.rotation_deg,
        "gain": LINE.gain,
        "offset": LINE.offset,
        "noise_sigma": LINE.noise_sigma,
        "jpeg_quality": LINE.jpeg_quality,
    }


def test_reference_bundle_pins_its_golden_image(ref_bundle: Path, tmp_path: Path) -> None:
    bundle = load_bundle(ref_bundle)
    assert bundle.manifest.task == "reference" and bundle.manifest.golden_samples
    edited = tmp_path / "edited"
    shutil.copytree(ref_bundle, edited)
    png = edited / "reference" / "PCB-7.png"
    image = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
    image[10, 10] = 255 - image[10, 10]
    cv2.imwrite(str(png), image)
    with pytest.raises(ModelIntegrityError, match=r"PCB-7\.png: sha256"):
        load_bundle(edited)
    png.unlink()
    with pytest.raises(ModelError, match="reference file missing"):
        load_bundle(edited)
    with pytest.raises(ModelError, match="no reference for part number 'PCB-9'"):
        load_bundle(ref_bundle, part_number="PCB-9")


def test_inspect_fails_defects_and_misplaced_parts(ref_bundle: Path, frames: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    assert (
        main(
            [
                "inspect",
                "--model",
                str(ref_bundle),
                str(frames),
                "--json",
                str(out),
                "--heatmaps",
                str(tmp_path / "heat"),
            ]
        )
        == 0
    )
    results = {Path(r["file"]).stem: r for r in json.loads(out.read_text())["results"]}
    assert [results[f"good_{i}"]["verdict"] for i in range(3)] == ["PASS"] * 3
    assert results["open_0"]["verdict"] == "FAIL" and results["open_0"]["reasons"] == ["score"]
    assert results["far_0"]["verdict"] == "FAIL" and results["far_0"]["reasons"] == ["alignment"]
    assert (tmp_path / "heat" / "open_0_heatmap.png").is_file()


def test_eval_on_pairs_reports_box_metrics(ref_bundle: Path, tmp_path: Path) -> None:
    data = write_pairs(tmp_path / "pairs", n_good=3, n_defect_each=2, seed=0)
    assert (
        main(
            [
                "eval",
                "--model",
                str(ref_bundle),
                "--data",
                str(data),
                "--json",
                str(tmp_path / "m.json"),
                "--no-progress",
            ]
        )
        == 0
    )
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["n_boxes"] > 0 and m["operating_point"]["box_recall"] is not None
    assert set(m["recall_per_type"]) <= {"open", "short", "pin-hole", "copper"}


def test_station_run_fails_defective_part_with_reason(ref_bundle: Path, frames: Path, tmp_path: Path) -> None:
    station = tmp_path / "station.yaml"
    station.write_text(
        f"station_id: pcb-line\nmodel: {{path: {ref_bundle}, part_number: PCB-7}}\n"
        f"source: {{kind: folder, path: {frames}}}\nsignal: {{kind: null}}\n"
        "sinks: [{kind: jsonl, path: inspections.jsonl}]\n",
        encoding="utf-8",
    )
    assert main(["run", "--station", str(station), "--data-dir", str(tmp_path / "d"), "--max-parts", "5"]) == 0
    records = [json.loads(line) for line in (tmp_path / "d" / "inspections.jsonl").read_text().splitlines()]
    by_part = {r["frame"]["part_id"]: r for r in records}
    assert by_part["open_0"]["verdict"] == "FAIL" and "score" in by_part["open_0"]["reasons"]
    assert by_part["far_0"]["verdict"] == "FAIL" and by_part["far_0"]["reasons"] == ["alignment"]
    assert all(by_part[f"good_{i}"]["verdict"] == "PASS" for i in range(3))


def test_reference_bundle_installs_in_registry_and_verifies(
    ref_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    assert main(["models", "--data-dir", str(data_dir), "install", str(ref_bundle), "--activate"]) == 0
    installed = data_dir / "models" / "pcb" / "1"
    assert load_bundle(installed).manifest.task == "reference"
    (installed / "reference.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ModelIntegrityError, match=r"reference\.json: sha256"):
        load_bundle(installed)


def test_reference_bundle_with_anomaly_model_fails_on_either_signal(tiny_bundle: Path, tmp_path: Path) -> None:
    import numpy as np

    from vinspect.pipeline.gating import policy_for, self_test
    from vinspect.pipeline.judge import judge_image

    data = write_pairs(tmp_path / "pairs", n_good=4, n_defect_each=4, seed=0)
    out = tmp_path / "combo"
    assert (
        main(
            [
                "train",
                "--task",
                "reference",
                "--data",
                str(data),
                "--out",
                str(out),
                "--name",
                "combo",
                "--version",
                "1",
                "--with-anomaly",
                str(tiny_bundle),
            ]
        )
        == 0
    )
    bundle = load_bundle(out)
    policy = policy_for(bundle)
    assert self_test(bundle) is None
    board = draw_board(0)
    good = judge_image(apply_change(board, LINE), bundle=bundle, policy=policy)
    assert good.decision.verdict.value == "PASS"
    defect, _ = inject_defect(board, "open", seed=11)
    caught = judge_image(apply_change(defect, LINE), bundle=bundle, policy=policy)
    assert caught.decision.verdict.value == "FAIL" and caught.prediction is not None
    assert caught.prediction.regions[0].label != "anomaly"
    washed = np.where(board > 128, 255, 160).astype(np.uint8)  # far brighter: only the anomaly model objects
    assert bundle.model.reference.run(washed[:, :, None]).score < 0.5  # type: ignore[union-attr]
    flagged = judge_image(washed, bundle=bundle, policy=policy)
    assert flagged.decision.verdict.value == "FAIL" and flagged.prediction is not None
    assert any(r.label == "anomaly" for r in flagged.prediction.regions)
    assert flagged.prediction.anomaly_map is not None and flagged.prediction.anomaly_map.shape == board.shape
    onnx = out / "anomaly" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes() + b"\0")
    with pytest.raises(ModelIntegrityError, match="sha256"):
        load_bundle(out)
