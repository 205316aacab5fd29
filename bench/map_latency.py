"""What a finer anomaly map costs at run time: good-only inspection graphs fitted by the training
code (``training.fit.fit_graph``) for today's config and for others (e.g. the 28x28 map of
``training/configs/fine_map.yaml``), exported to ONNX (``training.export.export_onnx``) and timed
with ONNX Runtime in one process, alternating call by call so every graph sees the same load.

    python bench/map_latency.py --configs default,training/configs/fine_map.yaml \\
        [--goods 60] [--runs 300] [--out bench/results/map_latency.json]

The graphs learn from ``--goods`` magnetic-tile train-split good images (enough patches for the
8,192-patch bank, so the search costs what a fully trained bundle's does; the scores are not
used). Timed: one ``session.run`` on a train-split image (in-graph resize, trunk, kNN, map head),
batch 1, 1 intra-op thread, the station's session settings; p50 and p99 in ms. Shared cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.anomaly import bank_metrics
from training.config import TrainConfig, load_config
from training.data import to_hwc
from training.export import export_onnx, ort_session, run_ort
from training.fit import FitImages, fit_graph
from vinspect.dataset import open_dataset, read_image

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_DATA = Path("/work/shared/datasets/magnetic-tile")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--configs", default="default,training/configs/fine_map.yaml")
    ap.add_argument("--goods", type=int, default=60)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2, help="torch threads for fitting (timing is 1 thread)")
    ap.add_argument("--out", type=Path, default=RESULTS / "map_latency.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    goods = [to_hwc(read_image(s.path), channels=1) for s in open_dataset(args.data).train_samples() if s.is_good]
    fit_images = FitImages(channels=1, good=goods[: args.goods], val_good=goods[args.goods : args.goods + 10])
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    sessions, grids, banks, sizes = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(names):
            config = TrainConfig() if name == "default" else load_config(Path(name))
            graph = fit_graph(fit_images, config=config, progress=False)
            path = Path(tmp) / f"g{i}.onnx"
            export_onnx(graph, path, channels=1, opset=config.opset)
            sessions.append(ort_session(path, threads=1))
            grids.append(list(graph.embedder.grid))
            banks.append(bank_metrics(graph.scorer))
            sizes.append(path.stat().st_size)
            print(f"{name}: grid {grids[-1]}, bank {banks[-1]}, model.onnx {sizes[-1]:,} bytes", flush=True)
        image = goods[-1]
        for _ in range(20):
            for s in sessions:
                run_ort(s, image)
        times: list[list[float]] = [[] for _ in sessions]
        for _ in range(args.runs):
            for s, out in zip(sessions, times, strict=True):
                t0 = time.perf_counter()
                run_ort(s, image)
                out.append((time.perf_counter() - t0) * 1e3)
    rows = [
        {
            "config": n,
            "map_grid": g,
            "bank": b,
            "model_onnx_bytes": size,
            "p50_ms": round(float(np.percentile(t, 50)), 2),
            "p99_ms": round(float(np.percentile(t, 99)), 2),
        }
        for n, g, b, size, t in zip(names, grids, banks, sizes, times, strict=True)
    ]
    doc = {
        "what": "ORT latency of good-only graphs by anomaly-map resolution (batch 1, 1 intra-op thread, "
        "alternating in one process)",
        "command": "python " + " ".join(["bench/map_latency.py", *sys.argv[1:]]),
        "image_hw": list(image.shape[:2]),
        "runs": args.runs,
        "machine": "2-core VM, shared with other jobs (timings are 'shared')",
        "rows": rows,
    }
    print(json.dumps(doc, indent=2))
    args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
