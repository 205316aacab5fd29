"""Bundle writers for tests and benchmarks: a real tiny ONNX graph honouring the bundle contract,
its manifest, a stated operating point and golden samples (files on disk, no mocks)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from vinspect.files import sha256_file

__all__ = ["build_tiny_onnx", "state_operating_point", "write_golden_samples", "write_tiny_bundle"]


def build_tiny_onnx(
    path: Path, *, channels: int = 1, labels: tuple[str, ...] = (), poison: str = "", doc: str = ""
) -> None:
    """A real ONNX graph honouring the bundle contract: score = mean pixel / 255,
    anomaly_map = per-pixel mean over channels / 255, defect_probs = softmax of fixed logits.
    ``poison="nan"`` makes every output NaN (for fault tests); ``doc`` (the graph's doc string)
    gives an otherwise identical model other bytes, hence another sha256."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["f", "k255"], ["g"]),
        helper.make_node("ReduceMean", ["g", "ax2"], ["m0"], keepdims=0),
        helper.make_node("ReduceMean", ["m0"], ["s0"], keepdims=1),
        helper.make_node("Reshape", ["s0", "shape1"], ["s1"]),
    ]
    inits = [
        helper.make_tensor("k255", TensorProto.FLOAT, [], [255.0]),
        helper.make_tensor("ax2", TensorProto.INT64, [1], [2]),
        helper.make_tensor("shape1", TensorProto.INT64, [1], [1]),
        helper.make_tensor("logits", TensorProto.FLOAT, [len(labels)], list(range(len(labels)))),
    ]
    if poison == "nan":
        inits.append(helper.make_tensor("nan", TensorProto.FLOAT, [], [float("nan")]))
        nodes += [
            helper.make_node("Mul", ["s1", "nan"], ["score"]),
            helper.make_node("Mul", ["m0", "nan"], ["anomaly_map"]),
        ]
    else:
        nodes += [
            helper.make_node("Identity", ["s1"], ["score"]),
            helper.make_node("Identity", ["m0"], ["anomaly_map"]),
        ]
    nodes.append(helper.make_node("Softmax", ["logits"], ["defect_probs"], axis=0))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["h", "w", channels])],
        [
            helper.make_tensor_value_info("score", TensorProto.FLOAT, [1]),
            helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, ["h", "w"]),
            helper.make_tensor_value_info("defect_probs", TensorProto.FLOAT, [len(labels)]),
        ],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="vinspect-tests")
    model.ir_version = 8
    model.doc_string = doc
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def write_tiny_bundle(
    bundle: Path,
    *,
    fail_at: float = 0.6,
    review_at: float = 0.5,
    channels: int = 1,
    labels: tuple[str, ...] = (),
    poison: str = "",
    name: str = "tiny",
    version: str = "1",
    doc: str = "",
) -> Path:
    """Write model.onnx + manifest.json for the tiny graph; returns the bundle dir."""
    bundle.mkdir(parents=True, exist_ok=True)
    build_tiny_onnx(bundle / "model.onnx", channels=channels, labels=labels, poison=poison, doc=doc)
    sha = sha256_file(bundle / "model.onnx")
    manifest = {
        "name": name,
        "version": version,
        "sha256": sha,
        "task": "anomaly+classifier" if labels else "anomaly",
        "input": {"channels": channels, "model_size_px": [32, 32]},
        "labels": list(labels),
        "thresholds": {
            "fail_at": fail_at,
            "review_at": review_at,
            "map_at": fail_at,
            "evidence": {"target": "test", "n_good": 0, "n_defect": 0, "false_reject_rate": 0.0, "escape_rate": 0.0},
        },
        "training": {
            "dataset_root": "-",
            "dataset_layout": "classes",
            "dataset_sha256": "0" * 64,
            "n_train_good": 0,
            "n_train_defect": 0,
            "config": {},
            "metrics": {},
            "duration_s": 0.0,
        },
    }
    (bundle / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return bundle


def state_operating_point(
    bundle: Path, good: Sequence[float], defect: Sequence[float], *, version: str | None = None
) -> Path:
    """Replace a bundle's thresholds by those calibrated on these validation scores (rates stated)."""
    from vinspect.models.calibration import calibrate

    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    manifest["thresholds"] = calibrate(good, defect).model_dump(mode="json")
    if version is not None:
        manifest["version"] = version
    (bundle / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return bundle


def write_golden_samples(bundle_dir: Path, samples: Sequence[tuple[str, npt.NDArray[np.uint8], str, float]]) -> None:
    """Write ``golden/<name>.png`` files and list them in the manifest as (name, image, expect, score)."""
    (bundle_dir / "golden").mkdir(exist_ok=True)
    manifest_path = bundle_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    entries = []
    for name, image, expect, score in samples:
        if not cv2.imwrite(str(bundle_dir / "golden" / f"{name}.png"), image):
            raise OSError(f"cannot write golden sample {name}")
        entries.append({"file": f"golden/{name}.png", "expect": expect, "score": score})
    manifest["golden_samples"] = entries
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
