"""Training-cost benchmark: a good-only model from 200 good images (target: <= 60 s wall on 2 cores).

    python bench/train_bench.py [--data /work/shared/datasets/magnetic-tile] [--out /tmp/vinspect-train-bench]

Uses the first 200 magnetic-tile ``MT_Free`` train-split images (sorted by name) as a class-folder
dataset (``good/`` of symlinks), trains with the default TrainConfig (20 % held out for
calibration), and reports wall time and peak RSS (``resource.getrusage`` maxrss of this process,
which does nothing else). Writes bench/results/train.json. The machine is shared: timings vary.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training import TrainConfig, load_config, train_bundle
from vinspect.dataset import open_dataset

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("/work/shared/datasets/magnetic-tile"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/vinspect-train-bench"))
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--config", type=Path, default=None, help="YAML training config (default: TrainConfig())")
    parser.add_argument("--results", default="train.json", help="results file name under bench/results/")
    args = parser.parse_args()
    goods = sorted((s for s in open_dataset(args.data).train_samples() if s.is_good), key=lambda s: s.path.name)
    shutil.rmtree(args.out, ignore_errors=True)
    data = args.out / "data" / "good"
    data.mkdir(parents=True)
    for s in goods[: args.n]:
        (data / s.path.name).symlink_to(s.path)
    config = TrainConfig() if args.config is None else load_config(args.config)
    t0 = time.perf_counter()
    manifest = train_bundle(data.parent, args.out / "bundle", good_only=True, config=config, progress=False)
    wall_s = time.perf_counter() - t0
    result = {
        "command": "python " + " ".join(sys.argv),
        "n_images": len(list(data.iterdir())),
        "n_train_good": manifest.training.n_train_good,
        "wall_s": round(wall_s, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "nproc": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "target_wall_s": 60,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / args.results).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
