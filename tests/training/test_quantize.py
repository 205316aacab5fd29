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
    config = small_config.model_copy(update={"quantize": "int8"})
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
    goods = [to_hwc(read_image(s.path), channels=1) for s in open_dataset(make_dataset(tmp_path / "d")).samples
             if s.is_good]
    int8 = tmp_path / "q.onnx"
    nodes = quantize_int8(out / "model.onnx", int8, images=goods[:8], ops=("MatMul", "Conv"), per_channel=True)
    assert nodes > 1
    images = parity_images(goods, channels=1, count=4)
    val = (np.zeros(0), [])
    pair = (manifest.thresholds, manifest.thresholds)
    report = judge_int8(out / "model.onnx", int8, images=images, val_float=val, val_int8=val, thresholds=pair,
                        gate=Int8Gate(score_atol=1.0), nodes=nodes)
    assert report.score_max_abs_diff > 0
    with pytest.raises(ModelError, match=r"disagrees with its float graph: score max \|diff\| .* exceeds the "
                                         r"1e-09 tolerance.*bundle not written"):
        judge_int8(out / "model.onnx", int8, images=images, val_float=val, val_int8=val, thresholds=pair,
                   gate=Int8Gate(score_atol=1e-9), nodes=nodes)


def test_gate_refuses_changed_verdicts(labelled_bundle: tuple[Path, ModelManifest]) -> None:
    from training.quantize import Int8Gate, judge_int8

    out, manifest = labelled_bundle
    t = manifest.thresholds
    f_val = np.array([t.review_at - 0.01] * 50)
    q_val = f_val.copy()
    q_val[:2] = t.fail_at + 0.001  # two of 50 PASS become FAIL: 4 % > the 2 % allowed
    maps = [np.zeros((2, 2), np.float32)] * 50
    with pytest.raises(ModelError, match="2 of 50 validation verdicts change"):
        judge_int8(out / "model.onnx", out / "model.onnx", images=[], val_float=(f_val, maps),
                   val_int8=(q_val, maps), thresholds=(t, t), gate=Int8Gate(score_atol=1.0), nodes=1)
    q_val[1] = f_val[1]  # one of 50 (2 %) is allowed
    report = judge_int8(out / "model.onnx", out / "model.onnx", images=[], val_float=(f_val, maps),
                        val_int8=(q_val, maps), thresholds=(t, t), gate=Int8Gate(score_atol=1.0), nodes=1)
    assert report.verdict_flips == 1


def test_train_command_quantize_flag_refuses_beyond_tolerance(  # type: ignore[no-untyped-def]
        tiny_dataset: Path, small_config, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from vinspect.cli import main

    config = tmp_path / "c.yaml"  # quantize: none in the file; the flag turns it on
    config.write_text(yaml.safe_dump(small_config.model_copy(update={"int8_score_atol": 0.0}).model_dump(mode="json")))
    out = tmp_path / "refused"
    code = main(["train", "--data", str(tiny_dataset), "--out", str(out), "--good-only", "--config", str(config),
                 "--quantize", "int8", "--no-progress"])
    assert code != 0
    assert "int8 graph disagrees with its float graph" in capsys.readouterr().err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


@pytest.mark.parametrize(("ops", "match"), [(("Softmax",), "not supported"), (("Gemm",), "found no Gemm node"),
                                            ((), "not supported")])
def test_quantize_refuses_what_it_cannot_do(tiny_bundle: Path, ops: tuple[str, ...], match: str) -> None:
    from training.quantize import quantize_int8

    with pytest.raises(ModelError, match=match):
        quantize_int8(tiny_bundle / "model.onnx", tiny_bundle / "q.onnx", images=[np.zeros((8, 8, 1), np.uint8)],
                      ops=ops)


def test_quantize_needs_calibration_images(tiny_bundle: Path) -> None:
    from training.quantize import quantize_int8

    with pytest.raises(ModelError, match="needs calibration images"):
        quantize_int8(tiny_bundle / "model.onnx", tiny_bundle / "q.onnx", images=[])


def test_training_parity_uses_the_station_session(labelled_bundle: tuple[Path, ModelManifest]) -> None:
    from training.export import ort_session
    from vinspect.models.runtime import create_session

    out, _ = labelled_bundle
    ours, station = ort_session(out / "model.onnx").get_session_options(), \
        create_session(out / "model.onnx").get_session_options()
    key = "session.intra_op.allow_spinning"
    assert (ours.intra_op_num_threads, ours.inter_op_num_threads, ours.execution_mode,
            ours.get_session_config_entry(key)) == \
        (station.intra_op_num_threads, station.inter_op_num_threads, station.execution_mode,
         station.get_session_config_entry(key))
