"""Shared fixtures: a tiny ONNX bundle built with onnx.helper, image writers, clean env."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test sees the developer's VINSPECT_* settings."""
    import os

    for key in list(os.environ):
        if key.startswith("VINSPECT_"):
            monkeypatch.delenv(key)
    yield


def build_tiny_onnx(path: Path, *, channels: int = 1, labels: tuple[str, ...] = (), poison: str = "") -> None:
    """A real ONNX graph honouring the bundle contract: score = mean pixel / 255,
    anomaly_map = per-pixel mean over channels / 255, defect_probs = softmax of fixed logits.
    ``poison="nan"`` makes every output NaN (for fault tests)."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["f", "k255"], ["g"]),
        helper.make_node("ReduceMean", ["g", "ax2"], ["m0"], keepdims=0),
        helper.make_node("ReduceMean", ["m0"], ["s0"], keepdims=1),
        helper.make_node("Reshape", ["s0", "shape1"], ["s1"]),
    ]
    inits = [helper.make_tensor("k255", TensorProto.FLOAT, [], [255.0]),
             helper.make_tensor("ax2", TensorProto.INT64, [1], [2]),
             helper.make_tensor("shape1", TensorProto.INT64, [1], [1]),
             helper.make_tensor("logits", TensorProto.FLOAT, [len(labels)], list(range(len(labels))))]
    if poison == "nan":
        inits.append(helper.make_tensor("nan", TensorProto.FLOAT, [], [float("nan")]))
        nodes += [helper.make_node("Mul", ["s1", "nan"], ["score"]),
                  helper.make_node("Mul", ["m0", "nan"], ["anomaly_map"])]
    else:
        nodes += [helper.make_node("Identity", ["s1"], ["score"]),
                  helper.make_node("Identity", ["m0"], ["anomaly_map"])]
    nodes.append(helper.make_node("Softmax", ["logits"], ["defect_probs"], axis=0))
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["h", "w", channels])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [1]),
         helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, ["h", "w"]),
         helper.make_tensor_value_info("defect_probs", TensorProto.FLOAT, [len(labels)])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="vinspect-tests")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def write_tiny_bundle(
    bundle: Path, *, fail_at: float = 0.6, review_at: float = 0.5, channels: int = 1,
    labels: tuple[str, ...] = (), poison: str = "",
) -> Path:
    """Write model.onnx + manifest.json for the tiny graph; returns the bundle dir."""
    bundle.mkdir(parents=True, exist_ok=True)
    build_tiny_onnx(bundle / "model.onnx", channels=channels, labels=labels, poison=poison)
    sha = hashlib.sha256((bundle / "model.onnx").read_bytes()).hexdigest()
    manifest = {
        "name": "tiny", "version": "1", "sha256": sha,
        "task": "anomaly+classifier" if labels else "anomaly",
        "input": {"channels": channels, "model_size_px": [32, 32]},
        "labels": list(labels),
        "thresholds": {"fail_at": fail_at, "review_at": review_at, "map_at": fail_at,
                       "evidence": {"target": "test", "n_good": 0, "n_defect": 0,
                                    "false_reject_rate": 0.0, "escape_rate": 0.0}},
        "training": {"dataset_root": "-", "dataset_layout": "classes", "dataset_sha256": "0" * 64,
                     "n_train_good": 0, "n_train_defect": 0, "config": {}, "metrics": {}, "duration_s": 0.0},
    }
    (bundle / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return bundle


def state_operating_point(bundle: Path, good: Sequence[float], defect: Sequence[float], *,
                          version: str | None = None) -> Path:
    """Replace a bundle's thresholds by those calibrated on these validation scores (rates stated)."""
    from vinspect.models.calibration import calibrate

    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    manifest["thresholds"] = calibrate(good, defect).model_dump(mode="json")
    if version is not None:
        manifest["version"] = version
    (bundle / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return bundle


@pytest.fixture()
def tiny_bundle(tmp_path: Path) -> Path:
    """A valid greyscale tiny bundle: FAIL at mean brightness >= 0.6, REVIEW from 0.5."""
    return write_tiny_bundle(tmp_path / "bundle")


@pytest.fixture()
def tiny_bundle_factory(tmp_path: Path) -> Callable[..., Path]:
    """Build tiny bundles with custom thresholds, channels, labels or poison."""
    counter = iter(range(1000))
    return lambda **kw: write_tiny_bundle(tmp_path / f"bundle{next(counter)}", **kw)


@pytest.fixture()
def write_png(tmp_path: Path) -> Callable[..., Path]:
    """Write an image array as PNG under tmp_path (or a given path) and return the path."""

    def _write(name: str | Path, image: np.ndarray) -> Path:
        path = tmp_path / name if not isinstance(name, Path) or not name.is_absolute() else name
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), image)
        return path

    return _write
