"""``quantize: auto`` (the default): labelled bundles ship int8 when its gate passes, else float, said
plainly; good-only bundles stay float (issue 12h)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import yaml

from vinspect.models.manifest import ModelManifest, read_manifest

pytestmark = pytest.mark.train


def _ops(path: Path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


@pytest.fixture(scope="module")
def auto_bundle(tiny_dataset: Path, small_config: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    from training import train_bundle

    out = tmp_path_factory.mktemp("bundles") / "auto"
    # the full search, as in test_quantize.py's int8_bundle (int8 with a projection: test_knn_search_dim.py)
    config = small_config.model_copy(update={"quantize": "auto", "knn_search_dim": None})
    return out, train_bundle(tiny_dataset, out, name="tinyauto", version="a1", config=config, progress=False)


def test_auto_is_the_default() -> None:
    from training import TrainConfig

    assert TrainConfig().quantize == "auto"


def test_auto_ships_int8_for_a_labelled_bundle(auto_bundle: tuple[Path, ModelManifest]) -> None:
    out, manifest = auto_bundle
    assert manifest.task == "anomaly+classifier"
    assert sorted(p.name for p in out.glob("*.onnx")) == ["model.onnx"]  # the float graph is not left behind
    ops = _ops(out / "model.onnx")
    assert "QLinearMatMul" in ops and "MatMul" not in ops and "Conv" in ops  # the kNN search only
    config, metrics = manifest.training.config, manifest.training.metrics
    assert (config["quantize"], config["quantize_shipped"], config["quantize_note"]) == ("auto", "int8", None)
    assert metrics["int8_nodes_quantized"] == 1
    assert metrics["int8_verdict_flips"] <= 0.02 * metrics["int8_verdicts_compared"]


def test_the_station_loads_and_runs_the_auto_int8_bundle(auto_bundle: tuple[Path, ModelManifest]) -> None:
    from vinspect.pipeline.gating import gate_bundle

    out, manifest = auto_bundle
    gate = gate_bundle(out, require_golden=True)  # hash, golden self-test through the station's session
    assert gate.bundle is not None, gate.reason
    assert gate.bundle.manifest == read_manifest(out) == manifest


def test_auto_keeps_a_good_only_bundle_float(tiny_dataset: Path, small_config: Any, tmp_path: Path) -> None:
    from training import train_bundle

    config = small_config.model_copy(update={"quantize": "auto"})
    manifest = train_bundle(tiny_dataset, tmp_path / "g", good_only=True, config=config, progress=False)
    assert manifest.task == "anomaly"
    ops = _ops(tmp_path / "g" / "model.onnx")
    assert "MatMul" in ops and not any(op.startswith("QLinear") for op in ops)
    config_seen = manifest.training.config
    assert (config_seen["quantize"], config_seen["quantize_shipped"]) == ("auto", "none")
    assert "keeps good-only bundles float" in config_seen["quantize_note"]
    assert not any(k.startswith("int8_") for k in manifest.training.metrics)


def _train_cli(dataset: Path, config: Path, out: Path, *extra: str) -> int:
    from vinspect.cli import main

    return main(["train", "--data", str(dataset), "--out", str(out), "--config", str(config), "--no-progress", *extra])


def test_auto_falls_back_to_float_with_the_gates_reason(
    tiny_dataset: Path,
    small_config: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A gate no int8 graph can pass (no map cell may move at all): auto ships the float graph and the
    summary, the log and the manifest say why; explicit ``int8`` still refuses the bundle."""
    config = tmp_path / "strict.yaml"
    config.write_text(
        yaml.safe_dump(
            small_config.model_copy(update={"quantize": "auto", "int8_map_atol": 0.0}).model_dump(mode="json")
        )
    )
    out = tmp_path / "auto"
    assert _train_cli(tiny_dataset, config, out) == 0
    said, logged = capsys.readouterr()  # the CLI logs WARNING and above on stderr
    assert "graph: float (quantize: auto): int8 refused by the parity gate (anomaly map max |diff|" in said
    assert "exceeds the 0 tolerance" in said and said.rstrip().endswith("shipped the float graph")
    assert "quantize: auto: int8 refused by the parity gate (anomaly map max |diff|" in logged
    manifest = read_manifest(out)
    assert manifest.task == "anomaly+classifier"
    assert sorted(p.name for p in out.glob("*.onnx")) == ["model.onnx"]
    ops = _ops(out / "model.onnx")
    assert "MatMul" in ops and not any(op.startswith("QLinear") for op in ops)
    config_seen = manifest.training.config
    assert (config_seen["quantize"], config_seen["quantize_shipped"]) == ("auto", "none")
    assert config_seen["quantize_note"].startswith("int8 refused by the parity gate (anomaly map max |diff|")
    assert not any(k.startswith("int8_") for k in manifest.training.metrics)
    # the golden scores were measured with the graph that ships (the float one, restored)
    assert all(abs(a - b) <= 1e-5 for a, b in _golden_scores(out, manifest))
    from vinspect.pipeline.gating import gate_bundle

    assert gate_bundle(out, require_golden=True).bundle is not None

    refused = tmp_path / "int8"
    assert _train_cli(tiny_dataset, config, refused, "--quantize", "int8") != 0
    err = capsys.readouterr().err
    assert "int8 graph disagrees with its float graph: anomaly map max |diff|" in err and "bundle not written" in err
    assert not refused.exists()


def _golden_scores(out: Path, manifest: ModelManifest) -> list[tuple[float, float]]:
    from PIL import Image

    from training.export import ort_session

    session = ort_session(out / "model.onnx")
    pairs = []
    for golden in manifest.golden_samples:
        pixels = np.asarray(Image.open(out / golden.file))
        pairs.append((float(session.run(None, {"image": pixels[:, :, None]})[0][0]), golden.score))
    return pairs


def test_auto_ships_float_when_quantisation_itself_fails(
    tiny_dataset: Path, small_config: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ONNX Runtime's quantiser failing (it raises untyped errors for graphs it cannot handle) is not
    a failed training under ``auto``: the float graph ships, with the quantiser's message."""
    from training import bundle, train_bundle
    from vinspect.errors import ModelError

    def broken(src: Path, dst: Path, **_: Any) -> int:
        dst.write_bytes(b"half-written")  # what a failing quantiser may leave behind
        raise ModelError(f"{src}: int8 quantisation failed (unsupported node)")

    monkeypatch.setattr(bundle, "quantize_int8", broken)
    out = tmp_path / "b"
    config = small_config.model_copy(update={"quantize": "auto"})
    manifest = train_bundle(tiny_dataset, out, config=config, progress=False)
    note = manifest.training.config["quantize_note"]
    assert manifest.training.config["quantize_shipped"] == "none"
    assert note.startswith("int8 quantisation failed (") and "unsupported node" in note
    assert note.endswith("shipped the float graph")
    assert sorted(p.name for p in out.glob("*.onnx")) == ["model.onnx"]
    assert "MatMul" in _ops(out / "model.onnx")  # the float graph, not the half-written file
    assert manifest.sha256 == hashlib.sha256((out / "model.onnx").read_bytes()).hexdigest()
