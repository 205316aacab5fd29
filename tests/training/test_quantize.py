"""Int8 export: the quantised graph ships only within its stated tolerance of the float graph (issue 12)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from vinspect.errors import ModelError
from vinspect.models.manifest import ModelManifest, read_manifest

pytestmark = pytest.mark.train


@pytest.fixture(scope="module")
def int8_bundle(tiny_dataset: Path, small_config, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from training import train_bundle

    out = tmp_path_factory.mktemp("bundles") / "int8"
    # the full search (knn_search_dim null): on the tiny data the default's projected search misses the
    # int8 map tolerance by a hair (0.109 > 0.1); int8 with a projection: test_knn_search_dim.py
    config = small_config.model_copy(update={"quantize": "int8", "knn_search_dim": None})
    return out, train_bundle(tiny_dataset, out, name="tiny8", version="q1", config=config, progress=False)


def _ops(path: Path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def test_int8_bundle_ships_the_quantised_graph_with_its_gate(int8_bundle: tuple[Path, ModelManifest]) -> None:
    out, manifest = int8_bundle
    assert sorted(p.name for p in out.glob("*.onnx")) == ["model.onnx"]  # the float graph is not left behind
    ops = _ops(out / "model.onnx")
    assert "QLinearMatMul" in ops and "MatMul" not in ops
    assert "Conv" in ops  # only the chosen op types are quantised
    metrics, config = manifest.training.metrics, manifest.training.config
    assert config["quantize"] == "int8" and config["quantize_ops"] == ["MatMul"]
    assert config["int8_score_atol"] == 0.05 and config["int8_max_verdict_flips"] == 0.02  # stated tolerance
    assert config["int8_map_atol"] == 0.1 and config["int8_map_peak_cells"] == 2  # the heatmap's tolerance
    assert 0.0 <= metrics["int8_map_max_abs_diff"] <= 0.1
    assert 0 <= metrics["int8_map_peak_max_shift_cells"] <= 2
    assert 0 <= metrics["int8_map_peaks_compared"] <= metrics["int8_parity_images"]
    assert metrics["int8_nodes_quantized"] == 1
    # within tolerance; it may be exactly 0 on this labelled set: with open-set fusion (issue 12a) the
    # score of these images comes from the defect signal, which the int8 kNN does not touch
    assert 0.0 <= metrics["int8_score_max_abs_diff"] <= 0.05
    assert metrics["int8_verdict_flips"] <= 0.02 * metrics["int8_verdicts_compared"]
    assert metrics["int8_parity_images"] >= metrics["int8_verdicts_compared"] > 0


def test_int8_bundle_passes_the_station_gate(int8_bundle: tuple[Path, ModelManifest]) -> None:
    from vinspect.pipeline.gating import gate_bundle

    out, manifest = int8_bundle
    gate = gate_bundle(out, require_golden=True)
    assert gate.bundle is not None, gate.reason
    assert read_manifest(out) == manifest


def test_gate_refuses_beyond_score_tolerance(labelled_bundle: tuple[Path, ModelManifest], tmp_path: Path) -> None:
    from tests.training.conftest import make_dataset
    from training.data import to_hwc
    from training.export import parity_images
    from training.quantize import Int8Gate, judge_int8, quantize_int8
    from vinspect.dataset import open_dataset, read_image

    out, manifest = labelled_bundle
    goods = [
        to_hwc(read_image(s.path), channels=1) for s in open_dataset(make_dataset(tmp_path / "d")).samples if s.is_good
    ]
    int8 = tmp_path / "q.onnx"
    nodes = quantize_int8(out / "model.onnx", int8, images=goods[:8], ops=("MatMul", "Conv"), per_channel=True)
    assert nodes > 1
    images = parity_images(goods, channels=1, count=4)
    val = (np.zeros(0), [])
    pair = (manifest.thresholds, manifest.thresholds)
    loose = Int8Gate(score_atol=1.0, map_atol=1.0, map_peak_cells=100)
    report = judge_int8(
        out / "model.onnx", int8, images=images, val_float=val, val_int8=val, thresholds=pair, gate=loose, nodes=nodes
    )
    assert report.score_max_abs_diff > 0 and report.map_max_abs_diff > 0
    with pytest.raises(
        ModelError,
        match=r"disagrees with its float graph: score max \|diff\| .* exceeds the "
        r"1e-09 tolerance \(worst: parity image \d, float .*bundle not written",
    ):
        judge_int8(
            out / "model.onnx",
            int8,
            images=images,
            val_float=val,
            val_int8=val,
            thresholds=pair,
            gate=Int8Gate(score_atol=1e-9, map_atol=1.0, map_peak_cells=100),
            nodes=nodes,
        )
    with pytest.raises(
        ModelError,
        match=r"anomaly map max \|diff\| .* exceeds the 1e-09 tolerance \(worst: "
        r"parity image \d; \d image\(s\) beyond\)",
    ):
        judge_int8(
            out / "model.onnx",
            int8,
            images=images,
            val_float=val,
            val_int8=val,
            thresholds=pair,
            gate=Int8Gate(score_atol=1.0, map_atol=1e-9, map_peak_cells=100),
            nodes=nodes,
        )


def test_gate_refuses_changed_verdicts(labelled_bundle: tuple[Path, ModelManifest]) -> None:
    from training.quantize import Int8Gate, judge_int8

    out, manifest = labelled_bundle
    t = manifest.thresholds
    f_val = np.array([t.review_at - 0.01] * 50)
    q_val = f_val.copy()
    q_val[:2] = t.fail_at + 0.001  # two of 50 PASS become FAIL: 4 % > the 2 % allowed
    maps = [np.zeros((2, 2), np.float32)] * 50
    with pytest.raises(ModelError, match="2 of 50 validation verdicts change"):
        judge_int8(
            out / "model.onnx",
            out / "model.onnx",
            images=[],
            val_float=(f_val, maps),
            val_int8=(q_val, maps),
            thresholds=(t, t),
            gate=Int8Gate(score_atol=1.0),
            nodes=1,
        )
    q_val[1] = f_val[1]  # one of 50 (2 %) is allowed
    report = judge_int8(
        out / "model.onnx",
        out / "model.onnx",
        images=[],
        val_float=(f_val, maps),
        val_int8=(q_val, maps),
        thresholds=(t, t),
        gate=Int8Gate(score_atol=1.0),
        nodes=1,
    )
    assert report.verdict_flips == 1


def _judge_maps(bundle: Path, thresholds, f_maps, q_maps, gate=None):  # type: ignore[no-untyped-def]
    """The gate on validation maps alone (scores equal, so only the map check can refuse)."""
    from training.quantize import Int8Gate, judge_int8

    scores = np.array([float(m.max()) for m in f_maps])
    return judge_int8(
        bundle,
        bundle,
        images=[],
        val_float=(scores, f_maps),
        val_int8=(scores, q_maps),
        thresholds=(thresholds, thresholds),
        gate=gate or Int8Gate(score_atol=1.0),
        nodes=1,
        val_names=[f"part-{i}.png" for i in range(len(f_maps))],
    )


def test_gate_refuses_a_perturbed_anomaly_map(labelled_bundle: tuple[Path, ModelManifest]) -> None:
    out, manifest = labelled_bundle
    t = manifest.thresholds
    f_maps = [np.full((6, 6), 0.2, np.float32) for _ in range(3)]
    q_maps = [m.copy() for m in f_maps]
    q_maps[2][4, 1] += 0.09  # within the default 0.1 tolerance, and below map_at: the peak is not judged
    report = _judge_maps(out / "model.onnx", t, f_maps, q_maps)
    assert report.map_max_abs_diff == pytest.approx(0.09, abs=1e-6) and report.map_peaks_compared == 0
    q_maps[1][0, 5] -= 0.15  # one cell of one part beyond it: refused, naming the part and the difference
    with pytest.raises(
        ModelError,
        match=r"int8 graph disagrees with its float graph: anomaly map max \|diff\| "
        r"0\.15 exceeds the 0\.1 tolerance \(worst: part-1\.png; 1 image\(s\) "
        r"beyond\).*bundle not written",
    ):
        _judge_maps(out / "model.onnx", t, f_maps, q_maps)


def test_gate_refuses_a_moved_hottest_cell_where_the_map_outlines_a_region(
    labelled_bundle: tuple[Path, ModelManifest],
) -> None:
    out, manifest = labelled_bundle
    t = manifest.thresholds
    base = np.full((8, 8), t.map_at - 0.02, np.float32)
    f_region = base.copy()
    f_region[1, 1] = t.map_at + 0.03  # a region the heatmap outlines, hottest at row 1, column 1
    f_good = np.full((8, 8), t.map_at - 0.2, np.float32)
    f_good[0, 0] += 0.01  # a flat good map: its hottest cell is chance
    q_good = np.full((8, 8), t.map_at - 0.2, np.float32)
    q_good[7, 7] += 0.01  # moved 7 cells, but nothing is outlined there: not judged
    q_near = f_region.copy()
    q_near[3, 2] = t.map_at + 0.04  # the hottest cell 2 cells away: allowed by default
    report = _judge_maps(out / "model.onnx", t, [f_good, f_region], [q_good, q_near])
    assert report.map_peak_max_shift_cells == 2 and report.map_peaks_compared == 1
    assert report.metrics()["int8_map_peak_max_shift_cells"] == 2.0
    q_far = f_region.copy()
    q_far[1, 1] = t.map_at + 0.01
    q_far[6, 4] = t.map_at + 0.05  # every cell within 0.1, but the heatmap now points 5 cells away
    with pytest.raises(
        ModelError,
        match=r"the anomaly map's hottest cell moves 5 cells \(at most 2 allowed\) on "
        r"part-1\.png: row/column \(1, 1\) in the float map, \(6, 4\) in the "
        r"int8 map \(1 of 1 region-outlining maps moved\)",
    ):
        _judge_maps(out / "model.onnx", t, [f_good, f_region], [q_good, q_far])
    from training.quantize import Int8Gate

    assert (
        _judge_maps(
            out / "model.onnx", t, [f_good, f_region], [q_good, q_far], gate=Int8Gate(score_atol=1.0, map_peak_cells=5)
        ).map_peak_max_shift_cells
        == 5
    )


def test_gate_refuses_a_map_of_another_shape(labelled_bundle: tuple[Path, ModelManifest]) -> None:
    out, manifest = labelled_bundle
    with pytest.raises(
        ModelError,
        match=r"part-0\.png: the int8 anomaly map has shape \[4, 4\], the float map "
        r"\[6, 6\]",
    ):
        _judge_maps(
            out / "model.onnx", manifest.thresholds, [np.zeros((6, 6), np.float32)], [np.zeros((4, 4), np.float32)]
        )


@pytest.mark.parametrize(
    ("field", "says"), [("int8_score_atol", "score max |diff|"), ("int8_map_atol", "anomaly map max |diff|")]
)
def test_train_command_quantize_flag_refuses_beyond_tolerance(  # type: ignore[no-untyped-def]
    tiny_dataset: Path, small_config, tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, says: str
) -> None:
    import yaml

    from vinspect.cli import main

    config = tmp_path / "c.yaml"  # quantize: none in the file; the flag turns it on
    loose = {"int8_score_atol": 1.0, "int8_map_atol": 1.0, "int8_map_peak_cells": 1000, field: 0.0}
    config.write_text(yaml.safe_dump(small_config.model_copy(update=loose).model_dump(mode="json")))
    out = tmp_path / "refused"
    code = main(
        [
            "train",
            "--data",
            str(tiny_dataset),
            "--out",
            str(out),
            "--good-only",
            "--config",
            str(config),
            "--quantize",
            "int8",
            "--no-progress",
        ]
    )
    assert code != 0
    err = capsys.readouterr().err
    assert "int8 graph disagrees with its float graph" in err and says in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


@pytest.mark.parametrize(
    ("ops", "match"), [(("Softmax",), "not supported"), (("Gemm",), "found no Gemm node"), ((), "not supported")]
)
def test_quantize_refuses_what_it_cannot_do(tiny_bundle: Path, ops: tuple[str, ...], match: str) -> None:
    from training.quantize import quantize_int8

    with pytest.raises(ModelError, match=match):
        quantize_int8(
            tiny_bundle / "model.onnx", tiny_bundle / "q.onnx", images=[np.zeros((8, 8, 1), np.uint8)], ops=ops
        )


def test_quantize_needs_calibration_images(tiny_bundle: Path) -> None:
    from training.quantize import quantize_int8

    with pytest.raises(ModelError, match="needs calibration images"):
        quantize_int8(tiny_bundle / "model.onnx", tiny_bundle / "q.onnx", images=[])


def test_training_parity_uses_the_station_session(labelled_bundle: tuple[Path, ModelManifest]) -> None:
    from training.export import ort_session
    from vinspect.models.runtime import create_session

    out, _ = labelled_bundle
    ours, station = (
        ort_session(out / "model.onnx").get_session_options(),
        create_session(out / "model.onnx").get_session_options(),
    )
    key = "session.intra_op.allow_spinning"
    assert (
        ours.intra_op_num_threads,
        ours.inter_op_num_threads,
        ours.execution_mode,
        ours.get_session_config_entry(key),
    ) == (
        station.intra_op_num_threads,
        station.inter_op_num_threads,
        station.execution_mode,
        station.get_session_config_entry(key),
    )
