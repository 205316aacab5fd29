"""Magnetic-tile benchmark: train (good-only and with labels), evaluate the exported bundles through
ONNX Runtime on the protocol's test split, leave-one-defect-class-out, latency.

Protocol: /work/shared/datasets/magnetic-tile/README.md (split by sha256("split:" + stem) % 100).
Dataset: Huang, Qiu, Yuan, "Saliency of magnetic tile surface defects" (2018), Magnetic Tile
Surface Defect Dataset (abin24/Magnetic-tile-defect-datasets.).

    python bench/magnetic_tile_bench.py [--data DIR] [--out /tmp/vinspect-bench] [--no-loco]
    python bench/magnetic_tile_bench.py --loco-only [--results NAME.json]

Writes bench/results/magnetic_tile.json (with the command); ``--loco-only`` trains the labelled model
and the five leave-one-class-out models only and writes bench/results/magnetic_tile_loco.json, again
after every held-out class (``"complete": false`` until the last).
Bundles go under --out (outside the repo by default). Timings are wall-clock on a shared 2-core
machine: other work perturbs them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training import TrainConfig, train_bundle
from training.data import to_hwc
from training.export import ort_session, run_ort
from vinspect.dataset import Sample, open_dataset, read_image
from vinspect.models.calibration import detection_rate_by_class, summarize
from vinspect.models.manifest import MODEL_NAME, read_manifest

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_DATA = Path("/work/shared/datasets/magnetic-tile")


def evaluate(bundle: Path, test: list[Sample]) -> dict[str, Any]:
    """Score the test split through ORT; every protocol metric at the bundle's own fail_at."""
    manifest = read_manifest(bundle)
    session = ort_session(bundle / MODEL_NAME, threads=2)
    outs = [run_ort(session, to_hwc(read_image(s.path), channels=manifest.input.channels)) for s in test]
    scores = np.array([float(o[0][0]) for o in outs])
    good = np.array([s.is_good for s in test])
    fail_at = manifest.thresholds.fail_at
    summary = summarize(scores[good], scores[~good], threshold=fail_at)
    result: dict[str, Any] = {k: round(v, 4) for k, v in summary.items()}
    labels = [s.label for s in test if not s.is_good]
    result["detection_at_fail_at"] = detection_rate_by_class(scores[~good], labels, threshold=fail_at)
    result["review_or_fail_rate_good"] = round(float(np.mean(scores[good] >= manifest.thresholds.review_at)), 4)
    result["review_rate_good"] = round(
        float(np.mean((scores[good] >= manifest.thresholds.review_at) & (scores[good] < fail_at))), 4
    )
    result["escape_rate_at_review_at"] = round(float(np.mean(scores[~good] < manifest.thresholds.review_at)), 4)
    if manifest.fusion is not None:  # what the anomaly path alone fails at its own threshold
        anomaly = np.array([float(o[1].max()) for o in outs])
        at = manifest.fusion.anomaly_at
        result["fusion"] = manifest.fusion.model_dump(mode="json")
        result["anomaly_path_false_reject_rate"] = round(float(np.mean(anomaly[good] >= at)), 4)
        result["anomaly_path_detection"] = detection_rate_by_class(anomaly[~good], labels, threshold=at)
    if manifest.labels:
        caught = [i for i in np.flatnonzero(~good) if scores[i] >= fail_at]
        hits = [manifest.labels[int(np.argmax(outs[i][2]))] == test[i].label for i in caught]
        result["defect_type_accuracy"] = round(float(np.mean(hits)), 4) if hits else None
    result["thresholds"] = manifest.thresholds.model_dump(mode="json")
    result["val_metrics"] = manifest.training.metrics
    return result


def latency(bundle: Path, image: np.ndarray, *, threads: int, runs: int) -> dict[str, float]:
    """p50/p99 of one ORT call (in-graph preprocessing included, decode excluded), batch 1."""
    session = ort_session(bundle / MODEL_NAME, threads=threads)
    for _ in range(20):
        run_ort(session, image)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run_ort(session, image)
        times.append((time.perf_counter() - t0) * 1e3)
    return {"p50_ms": round(float(np.percentile(times, 50)), 2), "p99_ms": round(float(np.percentile(times, 99)), 2)}


# Good-only approaches compared on the benchmark (the default TrainConfig is the one kept).
APPROACHES: dict[str, dict[str, Any]] = {
    "patchcore_plain": {"resize_supersample": 1, "position_norm": False, "coreset_size": 2048},
    "gaussian_patch": {"anomaly_method": "gaussian"},
    "patchcore_posnorm_aa": {},
}


def train(
    data: Path, out: Path, *, good_only: bool, name: str, overrides: dict[str, Any] | None = None
) -> tuple[Path, float]:
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    config = TrainConfig(**(overrides or {}))
    train_bundle(data, out, name=name, version="bench", good_only=good_only, config=config, progress=False)
    return out, round(time.perf_counter() - t0, 1)


def loco_dataset(root: Path, held: str, dest: Path) -> Path:
    """Symlinked copy of the dataset where class ``held`` keeps only its test-split images."""
    index = open_dataset(root)
    shutil.rmtree(dest, ignore_errors=True)
    for s in index.samples:
        if s.label == held and s.split == "train":
            continue
        target = dest / s.label / s.path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(s.path)
        if s.mask_path is not None:
            (dest / s.label / s.mask_path.name).symlink_to(s.mask_path)
    return dest


def run_loco(
    data: Path, out: Path, test: list[Sample], labels: list[str], on_row: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """One labelled model per held-out class; ``on_row(rows)`` after each (so finished classes are kept)."""
    rows: dict[str, Any] = {}
    for held in labels:
        ds = loco_dataset(data, held, out / f"loco-data-{held}")
        bundle, fit_s = train(ds, out / f"loco-{held}", good_only=False, name="loco")
        ev = evaluate(bundle, test)
        rows[held] = {
            "held_out_detection_at_fail_at": ev["detection_at_fail_at"][held],
            "auroc": ev["auroc"],
            "frr_at_zero_escape": ev["frr_at_zero_escape"],
            "false_reject_rate": ev["false_reject_rate"],
            "fit_s": fit_s,
            "detection_at_fail_at": ev["detection_at_fail_at"],
            "review_rate_good": ev["review_rate_good"],
            "escape_rate_at_review_at": ev["escape_rate_at_review_at"],
            "anomaly_path_detection": ev.get("anomaly_path_detection"),
            "anomaly_path_false_reject_rate": ev.get("anomaly_path_false_reject_rate"),
            "fusion": ev.get("fusion"),
            "thresholds": {k: ev["thresholds"][k] for k in ("fail_at", "review_at", "map_at")},
        }
        print(f"LOCO {held}: {rows[held]}", flush=True)
        if on_row is not None:
            on_row(rows)
    return rows


def compare(data: Path, out: Path, test: list[Sample], image: np.ndarray, *, runs: int) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for name, overrides in APPROACHES.items():
        if not overrides:
            continue  # the default config: already measured as models.good_only
        bundle, fit_s = train(data, out / f"approach-{name}", good_only=True, name="approach", overrides=overrides)
        ev = evaluate(bundle, test)
        rows[name] = {
            "overrides": overrides,
            "fit_s": fit_s,
            **{
                k: ev[k]
                for k in (
                    "auroc",
                    "frr_at_zero_escape",
                    "best_f1",
                    "false_reject_rate",
                    "escape_rate",
                    "detection_at_fail_at",
                )
            },
            "latency": {f"{t}_threads": latency(bundle, image, threads=t, runs=runs) for t in (1, 2)},
        }
        print(f"approach {name}: {rows[name]}", flush=True)
    return rows


def remeasure_latency(out: Path, *, runs: int) -> None:
    path = RESULTS / "magnetic_tile.json"
    result = json.loads(path.read_text())
    image = to_hwc(
        read_image(
            next(s.path for s in open_dataset(Path(result.get("data", DEFAULT_DATA))).test_samples() if s.is_good)
        ),
        channels=1,
    )
    rows = {**result["models"], **{f"approach-{k}": v for k, v in result.get("approaches_good_only", {}).items()}}
    for name, row in rows.items():
        row["latency_remeasured"] = {f"{t}_threads": latency(out / name, image, threads=t, runs=runs) for t in (1, 2)}
        print(name, row["latency_remeasured"], flush=True)
    result["latency_remeasured_command"] = "python " + " ".join(sys.argv)
    result["latency_remeasured_load_average"] = os.getloadavg()
    path.write_text(json.dumps(result, indent=2) + "\n")


def loco_only(args: argparse.Namespace, labels: list[str], test: list[Sample]) -> None:
    """The labelled model on every class, then each class held out of the labels, at the default config."""
    started = time.perf_counter()
    result: dict[str, Any] = {
        "command": "python " + " ".join(sys.argv),
        "nproc": os.cpu_count(),
        "data": str(args.data),
        "config": TrainConfig().model_dump(mode="json"),
        "load_average_at_start": os.getloadavg(),
    }
    if not args.skip_with_labels:
        bundle, fit_s = train(args.data, args.out / "with_labels", good_only=False, name="with-labels")
        row = evaluate(bundle, test)
        row["fit_s"] = fit_s
        result["with_labels"] = row
        print(
            "with_labels",
            json.dumps({k: v for k, v in row.items() if k not in ("val_metrics", "thresholds")}),
            flush=True,
        )
    held = [c for c in labels if not args.classes or c in args.classes.split(",")]
    path = RESULTS / (args.results or "magnetic_tile_loco.json")

    def write(rows: dict[str, Any]) -> None:  # after every class: a long run that is stopped keeps its rows
        result["leave_one_class_out"] = rows
        result["complete"] = len(rows) == len(held)
        result["wall_s"] = round(time.perf_counter() - started, 1)
        result["load_average_at_end"] = os.getloadavg()
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {path} ({len(rows)} of {len(held)} held-out classes)", flush=True)

    if "with_labels" in result:
        write({})
    write(run_loco(args.data, args.out, test, held, on_row=write))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=Path("/tmp/vinspect-bench"))
    parser.add_argument("--no-loco", action="store_true")
    parser.add_argument("--compare", action="store_true", help="also train the other good-only approaches")
    parser.add_argument("--runs", type=int, default=300, help="latency repetitions")
    parser.add_argument(
        "--loco-only",
        action="store_true",
        help="train only the labelled model and the leave-one-class-out models (no latency)",
    )
    parser.add_argument("--results", default=None, help="results file name under bench/results/")
    parser.add_argument("--classes", default="", help="--loco-only: comma-separated classes to hold out (default all)")
    parser.add_argument("--skip-with-labels", action="store_true", help="--loco-only: no model on every label")
    parser.add_argument(
        "--latency-only",
        action="store_true",
        help="re-measure latency of the bundles already under --out and update the JSON",
    )
    args = parser.parse_args()
    if args.latency_only:
        remeasure_latency(args.out, runs=args.runs)
        return
    index = open_dataset(args.data)
    test = index.test_samples()
    if args.loco_only:
        loco_only(args, index.defect_labels, test)
        return
    result: dict[str, Any] = {
        "command": "python " + " ".join(sys.argv),
        "nproc": os.cpu_count(),
        "data": str(args.data),
        "config": TrainConfig().model_dump(mode="json"),
        "models": {},
    }
    image = to_hwc(read_image(next(s.path for s in test if s.is_good)), channels=1)
    result["latency_input_hwc"] = list(image.shape)
    for kind, good_only in (("good_only", True), ("with_labels", False)):
        bundle, fit_s = train(args.data, args.out / kind, good_only=good_only, name=kind.replace("_", "-"))
        row = evaluate(bundle, test)
        row["fit_s"] = fit_s
        row["latency"] = {f"{t}_threads": latency(bundle, image, threads=t, runs=args.runs) for t in (1, 2)}
        result["models"][kind] = row
        print(kind, json.dumps({k: v for k, v in row.items() if k not in ("val_metrics", "thresholds")}), flush=True)
    if args.compare:
        result["approaches_good_only"] = compare(args.data, args.out, test, image, runs=args.runs)
    if not args.no_loco:
        result["leave_one_class_out"] = run_loco(args.data, args.out, test, index.defect_labels)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["load_average_at_end"] = os.getloadavg()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "magnetic_tile.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS / 'magnetic_tile.json'}")


if __name__ == "__main__":
    main()
