"""Bundle loading refuses anything but a verified ONNX graph (issue 2)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from vinspect.errors import ModelError, ModelIntegrityError
from vinspect.models.manifest import read_manifest, write_manifest
from vinspect.models.registry import ModelRegistry
from vinspect.models.runtime import load_bundle


def test_load_bundle_runs_the_graph(tiny_bundle: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    out = bundle.model.run(np.full((10, 12, 1), 102, np.uint8))
    assert out.score == pytest.approx(0.4)
    assert out.anomaly_map.shape == (10, 12)
    assert out.defect_probs.shape == (0,)
    assert bundle.ref.sha256 == bundle.manifest.sha256


def test_manifest_round_trip(tiny_bundle: Path, tmp_path: Path) -> None:
    manifest = read_manifest(tiny_bundle)
    out = tmp_path / "copy"
    out.mkdir()
    write_manifest(out, manifest)
    assert read_manifest(out) == manifest


def _edit_manifest(bundle: Path, **changes: object) -> None:
    data = json.loads((bundle / "manifest.json").read_text())
    data.update(changes)
    (bundle / "manifest.json").write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("damage", "error", "needle"),
    [
        (lambda b: (b / "manifest.json").unlink(), ModelError, "manifest missing"),
        (lambda b: (b / "manifest.json").write_text("{not json"), ModelError, "invalid manifest"),
        (lambda b: _edit_manifest(b, task="segmentation"), ModelError, "task"),
        (lambda b: _edit_manifest(b, surprise=1), ModelError, "surprise"),
        (lambda b: _edit_manifest(b, sha256="0" * 64), ModelIntegrityError, "does not match the manifest"),
        (
            lambda b: (b / "model.onnx").write_bytes((b / "model.onnx").read_bytes() + b"\0"),
            ModelIntegrityError,
            "does not match",
        ),
        (lambda b: (b / "model.onnx").unlink(), ModelError, "model file missing"),
        (lambda b: (b / "model.onnx").write_bytes(pickle.dumps({"weights": 1})), ModelIntegrityError, "pickle"),
    ],
)
def test_load_bundle_refuses_damaged_bundle(tiny_bundle: Path, damage, error: type[Exception], needle: str) -> None:
    damage(tiny_bundle)
    with pytest.raises(error, match=needle):
        load_bundle(tiny_bundle)


def test_load_bundle_refuses_a_checkpoint_file(tmp_path: Path) -> None:
    ckpt = tmp_path / "model.pth"
    ckpt.write_bytes(pickle.dumps({"state_dict": {}}, protocol=4))
    with pytest.raises(ModelIntegrityError, match="not ONNX"):
        load_bundle(ckpt)
    with pytest.raises(ModelError, match="not found"):
        load_bundle(tmp_path / "nope")


def test_registry_install_activate_resolve(tiny_bundle: Path, tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    entry = registry.install(tiny_bundle)
    assert not entry.active
    with pytest.raises(ModelError, match="no active version"):
        registry.resolve("tiny")
    registry.activate("tiny", "1")
    assert registry.resolve("tiny") == entry.path
    assert [e.active for e in registry.list()] == [True]
    with pytest.raises(ModelError, match="already installed"):
        registry.install(tiny_bundle)
    with pytest.raises(ModelError, match="no such installed version"):
        registry.activate("tiny", "2")
