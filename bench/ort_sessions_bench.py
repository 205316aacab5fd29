"""ONNX Runtime latency: the active model beside a second session, and int8 against float (issue 12).

    python bench/ort_sessions_bench.py sessions --bundle LAB [--second OTHER] [--rounds 6] [--runs 50]
    python bench/ort_sessions_bench.py int8 --bundle LAB [--bundle GOOD ...] [--ops MatMul] [--ops MatMul,Conv:pc]
    python bench/ort_sessions_bench.py profile --bundle LAB [--runs 100]
    python bench/ort_sessions_bench.py gate --bundle LAB [--bundle GOOD ...]

``sessions``: p50/p99 of one ``run`` of the active model (batch 1, a real image of its dataset,
decode excluded) built by the station's own builder (``vinspect.models.runtime.create_session``),
over intra-op threads 1 and 2 and ``session.intra_op.allow_spinning`` 0 and 1, in four scenarios:
alone; with a second session loaded and idle (a hot-swap candidate); with the second session run
alternately with it in the same thread (a shadow model); and with the second session running
continuously in another thread (a candidate's golden self-test during inspection). Inter-op
threads stay at 1: the builder runs the graph sequentially, where they are not used.

``int8``: quantises each bundle's ``model.onnx`` with ``training.quantize.quantize_int8``
(calibration: the first 64 good images of the dataset's train split), scores the dataset's test
split through float and int8 (AUROC, false-reject rate at zero escapes, score differences, verdict
changes at the bundle's thresholds), then times float and int8 at 1 and 2 threads.

``gate``: what training's int8 gate says for each bundle on its own validation part (the train
split's hold-out), with the bundle's stated tolerance: scores, verdicts and the anomaly map (per-image
max |diff| quantiles, and how far the hottest map cell moves, with and without a region drawn).

Fairness on a shared machine: every configuration is timed in short blocks, the blocks of all
configurations interleaved in a shuffled order over several rounds in one process, so background
load falls on all of them alike. Writes bench/results/ort_sessions.json or ort_int8.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.data import to_hwc
from vinspect.dataset import Sample, open_dataset, read_image
from vinspect.errors import ModelError
from vinspect.models.calibration import auroc, false_reject_rate_at_zero_escape
from vinspect.models.manifest import MODEL_NAME, read_manifest
from vinspect.models.runtime import SessionSettings, create_session

RESULTS = Path(__file__).resolve().parent / "results"
SCENARIOS = ("alone", "second_idle", "alternating", "second_busy_thread")
WARMUP = 10


def _hwc(image: np.ndarray, channels: int) -> np.ndarray:
    return np.ascontiguousarray(to_hwc(image, channels=channels))


def _stats(times: list[float]) -> dict[str, float]:
    a = np.asarray(times)
    return {
        "n": int(a.size),
        "p50_ms": round(float(np.percentile(a, 50)), 2),
        "p99_ms": round(float(np.percentile(a, 99)), 2),
        "mean_ms": round(float(a.mean()), 2),
    }


def _dataset(bundle: Path, data: Path | None) -> tuple[list[Sample], list[Sample], int]:
    manifest = read_manifest(bundle)
    index = open_dataset(data or Path(manifest.training.dataset_root))
    return index.train_samples(), index.test_samples(), manifest.input.channels


def _block(active: Any, second: Any, scenario: str, image: np.ndarray, runs: int) -> list[float]:
    feed = {"image": image}
    for _ in range(WARMUP):
        active.run(None, feed)
        if second is not None:
            second.run(None, feed)
    stop = threading.Event()
    busy = None
    if scenario == "second_busy_thread":

        def loop() -> None:
            while not stop.is_set():
                second.run(None, feed)

        busy = threading.Thread(target=loop, daemon=True)
        busy.start()
    times = []
    try:
        for _ in range(runs):
            if scenario == "alternating":
                second.run(None, feed)
            t0 = time.perf_counter()
            active.run(None, feed)
            times.append((time.perf_counter() - t0) * 1e3)
    finally:
        stop.set()
        if busy is not None:
            busy.join()
    return times


def sessions(args: argparse.Namespace) -> dict[str, Any]:
    bundle, second_bundle = args.bundle[0], args.second or args.bundle[0]
    _, test, channels = _dataset(bundle, args.data)
    image = _hwc(read_image(next(s.path for s in test if s.is_good)), channels)
    configs = [(t, spin, sc) for t in (1, 2) for spin in (False, True) for sc in SCENARIOS]
    times: dict[tuple[int, bool, str], list[float]] = {c: [] for c in configs}
    rng = np.random.default_rng(0)
    for r in range(args.rounds):
        for i in rng.permutation(len(configs)):
            threads, spin, scenario = configs[int(i)]
            settings = SessionSettings(intra_op_threads=threads, allow_spinning=spin)
            active = create_session(bundle / MODEL_NAME, settings)
            second = None if scenario == "alone" else create_session(second_bundle / MODEL_NAME, settings)
            times[configs[int(i)]] += _block(active, second, scenario, image, args.runs)
            del active, second
        print(f"round {r + 1}/{args.rounds} done, load average {os.getloadavg()}", flush=True)
    rows = [
        {"intra_op_threads": t, "allow_spinning": spin, "scenario": sc, **_stats(times[(t, spin, sc)])}
        for t, spin, sc in configs
    ]
    for row in rows:
        print(row, flush=True)
    return {
        "bundle": str(bundle),
        "second": str(second_bundle),
        "input_hwc": list(image.shape),
        "rounds": args.rounds,
        "runs_per_block": args.runs,
        "rows": rows,
    }


def profile(args: argparse.Namespace) -> dict[str, Any]:
    """Share of kernel time per op type (ONNX Runtime's profiler), 1 intra-op thread.

    A diagnostic: its session is built here because the station's builder has no profiling switch.
    """
    import onnxruntime as ort

    bundle = args.bundle[0]
    _, test, channels = _dataset(bundle, args.data)
    image = _hwc(read_image(next(s.path for s in test if s.is_good)), channels)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    options.enable_profiling, options.profile_file_prefix = True, str(args.work / "ort_profile")
    options.log_severity_level = 3
    args.work.mkdir(parents=True, exist_ok=True)
    session = ort.InferenceSession(str(bundle / MODEL_NAME), options, providers=["CPUExecutionProvider"])
    for _ in range(args.runs):
        session.run(None, {"image": image})
    events = json.loads(Path(session.end_profiling()).read_text())
    per_op: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] = per_op.get(e["args"]["op_name"], 0.0) + e["dur"]
    total = sum(per_op.values())
    shares = {k: round(100 * v / total, 1) for k, v in sorted(per_op.items(), key=lambda kv: -kv[1])}
    print(shares, flush=True)
    return {
        "bundle": str(bundle),
        "runs": args.runs,
        "kernel_ms_per_run": round(total / args.runs / 1e3, 2),
        "percent_of_kernel_time": shares,
    }


def gate(args: argparse.Namespace) -> dict[str, Any]:
    """What training's int8 gate would say for each bundle: its own validation part (the train
    split's hold-out, as ``train_bundle`` makes it), float and int8 each at its own calibration."""
    from training.bundle import ValidationScores, _calibrate
    from training.config import TrainConfig
    from training.data import holdout_split
    from training.quantize import Int8Gate, judge_int8, quantize_int8

    out: dict[str, Any] = {"models": {}}
    args.work.mkdir(parents=True, exist_ok=True)
    for bundle in args.bundle:
        manifest = read_manifest(bundle)
        config = TrainConfig(**{k: v for k, v in manifest.training.config.items() if k in TrainConfig.model_fields})
        train, _, channels = _dataset(bundle, args.data)
        samples = [s for s in train if s.is_good or not manifest.training.config.get("good_only")]
        split = holdout_split(samples, val_percent=config.val_percent)
        goods = [s for s in split.fit if s.is_good][: config.quantize_calibration_images]
        calib = [_hwc(read_image(s.path), channels) for s in goods]
        val = [_hwc(read_image(s.path), channels) for s in split.val]
        int8_path = args.work / f"{bundle.name}-gate.onnx"
        nodes = quantize_int8(
            bundle / MODEL_NAME,
            int8_path,
            images=calib,
            ops=config.quantize_ops,
            per_channel=config.quantize_per_channel,
        )
        scored = []
        for path in (bundle / MODEL_NAME, int8_path):
            scores, maps = _score(path, val)
            vs = ValidationScores(samples=list(split.val), images=val, scores=scores, maps=maps, probs=[])
            scored.append(
                (vs, _calibrate(vs, config, labelled=manifest.task == "anomaly+classifier", fusion=manifest.fusion))
            )
        tolerance = Int8Gate(
            score_atol=config.int8_score_atol,
            max_verdict_flips=config.int8_max_verdict_flips,
            map_atol=config.int8_map_atol,
            map_peak_cells=config.int8_map_peak_cells,
        )
        try:
            report = judge_int8(
                bundle / MODEL_NAME,
                int8_path,
                images=[],
                val_float=(scored[0][0].scores, scored[0][0].maps),
                val_int8=(scored[1][0].scores, scored[1][0].maps),
                thresholds=(scored[0][1], scored[1][1]),
                gate=tolerance,
                nodes=nodes,
                val_names=[s.path.name for s in split.val],
            )
            row: dict[str, Any] = {"passed": True, **report.metrics()}
        except ModelError as exc:
            row = {"passed": False, "refusal": str(exc)}
        row["val_images"] = len(val)
        row["tolerance"] = {
            "score_atol": tolerance.score_atol,
            "max_verdict_flips": tolerance.max_verdict_flips,
            "map_atol": tolerance.map_atol,
            "map_peak_cells": tolerance.map_peak_cells,
        }
        row["map"] = _map_spread(scored[0][0].maps, scored[1][0].maps, map_at=scored[0][1].map_at)
        print(bundle.name, row, flush=True)
        out["models"][str(bundle)] = row
    return out


def _map_spread(f_maps: list[np.ndarray], q_maps: list[np.ndarray], *, map_at: float) -> dict[str, Any]:
    """How far the int8 maps stray from the float maps: per-image max |diff| quantiles, and how far
    the hottest cell moves on maps that reach ``map_at`` (a region drawn) and on those that do not."""
    diff = np.array([float(np.max(np.abs(f - q))) for f, q in zip(f_maps, q_maps, strict=True)])

    def peak(m: np.ndarray) -> tuple[int, ...]:
        return tuple(int(v) for v in np.unravel_index(int(np.argmax(m)), m.shape))

    shift = np.array(
        [max(abs(a - b) for a, b in zip(peak(f), peak(q), strict=True)) for f, q in zip(f_maps, q_maps, strict=True)]
    )
    region = np.array([float(np.max(f)) >= map_at for f in f_maps])
    return {
        "grid": list(f_maps[0].shape),
        "map_at": map_at,
        "max_abs_diff": {
            "max": float(diff.max()),
            "p99": float(np.percentile(diff, 99)),
            "p90": float(np.percentile(diff, 90)),
            "median": float(np.median(diff)),
        },
        "mean_abs_diff": float(np.mean([np.mean(np.abs(f - q)) for f, q in zip(f_maps, q_maps, strict=True)])),
        "peak_shift_cells_histogram_region": np.bincount(shift[region]).tolist() if region.any() else [],
        "peak_shift_cells_histogram_no_region": np.bincount(shift[~region]).tolist() if (~region).any() else [],
    }


def _variant(spec: str) -> tuple[str, tuple[str, ...], bool]:
    ops, _, flag = spec.partition(":")
    return spec, tuple(ops.split(",")), flag == "pc"


def _score(path: Path, images: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    session = create_session(path, SessionSettings())
    outs = [session.run(None, {"image": img}) for img in images]
    return np.array([float(o[0][0]) for o in outs]), [o[1] for o in outs]


def _verdicts(scores: np.ndarray, fail_at: float, review_at: float) -> np.ndarray:
    return np.where(scores >= fail_at, 2, np.where(scores >= review_at, 1, 0))


def int8(args: argparse.Namespace) -> dict[str, Any]:
    from training.quantize import quantize_int8

    out: dict[str, Any] = {"variants": args.ops, "calibration_images": args.calibration, "models": {}}
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    for bundle in args.bundle:
        manifest = read_manifest(bundle)
        train, test, channels = _dataset(bundle, args.data)
        calib = [_hwc(read_image(s.path), channels) for s in train if s.is_good][: args.calibration]
        images = [_hwc(read_image(s.path), channels) for s in test]
        good = np.array([s.is_good for s in test])
        paths = {"float": bundle / MODEL_NAME}
        for spec in args.ops:
            name, ops, per_channel = _variant(spec)
            dst = work / f"{bundle.name}-{name.replace(',', '+').replace(':', '-')}.onnx"
            t0 = time.perf_counter()
            nodes = quantize_int8(bundle / MODEL_NAME, dst, images=calib, ops=ops, per_channel=per_channel)
            print(f"{bundle.name} {name}: {nodes} nodes quantised in {time.perf_counter() - t0:.1f} s", flush=True)
            paths[name] = dst
        t = manifest.thresholds
        f_scores, f_maps = _score(paths["float"], images)
        row: dict[str, Any] = {
            "task": manifest.task,
            "test_good": int(good.sum()),
            "test_defect": int((~good).sum()),
            "accuracy": {},
            "latency": {},
        }
        for name, path in paths.items():
            scores, maps = _score(path, images)
            diff = np.abs(scores - f_scores)
            row["accuracy"][name] = {
                "auroc": round(auroc(scores[good], scores[~good]), 4),
                "frr_at_zero_escape": round(false_reject_rate_at_zero_escape(scores[good], scores[~good]), 4),
                "score_max_abs_diff_vs_float": round(float(diff.max()), 4),
                "score_mean_abs_diff_vs_float": round(float(diff.mean()), 4),
                "map_max_abs_diff_vs_float": round(
                    max(float(np.abs(a - b).max()) for a, b in zip(maps, f_maps, strict=True)), 4
                ),
                "verdicts_changed_at_bundle_thresholds": int(
                    np.sum(_verdicts(scores, t.fail_at, t.review_at) != _verdicts(f_scores, t.fail_at, t.review_at))
                ),
            }
            print(bundle.name, name, row["accuracy"][name], flush=True)
        image = images[int(np.flatnonzero(good)[0])]
        configs = [(name, th) for name in paths for th in (1, 2)]
        times: dict[tuple[str, int], list[float]] = {c: [] for c in configs}
        rng = np.random.default_rng(0)
        for _ in range(args.rounds):
            for i in rng.permutation(len(configs)):
                name, th = configs[int(i)]
                session = create_session(paths[name], SessionSettings(intra_op_threads=th))
                times[(name, th)] += _block(session, None, "alone", image, args.runs)
                del session
        for name, th in configs:
            row["latency"].setdefault(name, {})[f"{th}_threads"] = _stats(times[(name, th)])
        print(bundle.name, row["latency"], flush=True)
        out["models"][str(bundle)] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["sessions", "int8", "profile", "gate"])
    parser.add_argument("--bundle", type=Path, action="append", required=True)
    parser.add_argument("--second", type=Path, default=None, help="sessions: the second bundle (default: --bundle)")
    parser.add_argument("--data", type=Path, default=None, help="dataset (default: the manifest's dataset_root)")
    parser.add_argument(
        "--ops", action="append", default=None, help="int8 variants: op types, ':pc' for per-channel (default: MatMul)"
    )
    parser.add_argument("--calibration", type=int, default=64)
    parser.add_argument("--work", type=Path, default=Path("/tmp/vinspect-int8"), help="int8 graphs go here")
    parser.add_argument("--tag", default=None, help="write bench/results/ort_<what>_<tag>.json")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--runs", type=int, default=50, help="timed runs per block")
    args = parser.parse_args()
    args.ops = args.ops or ["MatMul"]
    load_before = os.getloadavg()
    result = {"sessions": sessions, "int8": int8, "profile": profile, "gate": gate}[args.what](args)
    result.update(
        {
            "command": "python " + " ".join(sys.argv),
            "nproc": os.cpu_count(),
            "shared": True,
            "niceness": os.nice(0),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        }
    )
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / (f"ort_{args.what}_{args.tag}.json" if args.tag else f"ort_{args.what}.json")
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
