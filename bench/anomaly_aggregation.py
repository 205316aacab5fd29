"""Good-only score variants that reuse one patch kNN per fold: image-score aggregation (max vs
mean of the top-k map cells), map blur, memory-bank size and per-position normalisation, selected
by the same 3-fold cross-validation on the magnetic-tile TRAIN split as
``bench/anomaly_selection.py`` (its ``Fold``: fit goods, 20 % reference goods, held-out fold;
never the test split), on the features cached by ``bench/anomaly_features.py``.

    python bench/anomaly_features.py --cache C
    python bench/anomaly_aggregation.py --cache C [--banks 8192,16384] [--out bench/results/anomaly_aggregation.json]

Per fold and bank size the kNN distance map of every image is computed once; the per-position
statistics come from a 2-fold cross-fit over the fold's fit goods (as ``training.anomaly.position_scale``):
``mean`` divides by the unseen goods' mean distance per cell (today's graph), ``z`` subtracts
that mean and divides by the per-cell standard deviation, ``none`` leaves the map as it is. Every
image score is divided by the 99th percentile of the reference goods' scores, as the graph does.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.anomaly_selection import REF_Q, Fold
from training.anomaly import _gaussian_kernel, fit_knn
from vinspect.models.calibration import auroc, false_reject_rate_at_zero_escape

RESULTS = Path(__file__).resolve().parent / "results"


@torch.no_grad()
def distance_maps(emb: torch.Tensor, bank_of: torch.Tensor, idx: np.ndarray, *, bank: int) -> torch.Tensor:
    """kNN distance maps ``[len(idx), h, w]`` of ``emb[idx]`` against a coreset of ``bank_of``."""
    scorer = fit_knn(bank_of, coreset_size=bank, projection_dim=64, seed=0)
    return torch.stack([scorer(emb[i : i + 1]) for i in idx.tolist()])


@torch.no_grad()
def cross_fit_stats(emb: torch.Tensor, goods: np.ndarray, *, bank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-cell mean and std of unseen goods' distances (2-fold cross-fit over ``goods``)."""
    order = np.random.default_rng(0).permutation(goods)
    parts = [order[0::2], order[1::2]]
    maps = torch.cat([distance_maps(emb, emb[parts[1 - k]], parts[k], bank=bank) for k in range(2)])
    mean = maps.mean(0)
    return mean.clamp_min(float(mean.mean()) * 1e-3), maps.std(0).clamp_min(float(maps.std(0).mean()) * 1e-2)


def blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma <= 0:
        return maps
    kernel = _gaussian_kernel(sigma)
    pad = kernel.shape[-1] // 2
    mass = F.conv2d(torch.ones(1, 1, *maps.shape[-2:]), kernel, padding=pad)
    return (F.conv2d(maps[:, None], kernel, padding=pad) / mass)[:, 0]


def image_score(maps: torch.Tensor, top_k: int) -> np.ndarray:
    flat = maps.flatten(1)
    if top_k <= 1:
        return flat.amax(1).double().numpy()
    return flat.topk(top_k, dim=1).values.mean(1).double().numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--features", default="feats_224.npz")
    ap.add_argument("--banks", default="8192,16384")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS / "anomaly_aggregation.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = np.load(args.cache / args.features)
    emb = torch.from_numpy(data["emb"].astype(np.float32))
    labels, stems = data["label"], data["stem"]
    folds = [Fold(k, labels, stems) for k in range(3)]
    started = time.perf_counter()
    results: dict[str, list[dict[str, float]]] = {}
    for bank in [int(b) for b in args.banks.split(",")]:
        for fold in folds:
            t0 = time.perf_counter()
            mean, std = cross_fit_stats(emb, fold.fit_goods, bank=bank)
            scored = np.concatenate([fold.ref_goods, fold.test_goods, fold.all_defects])
            raw = distance_maps(emb, emb[fold.fit_goods], scored, bank=bank)
            n_ref, n_good = fold.ref_goods.size, fold.test_goods.size
            print(f"bank {bank} fold {fold.k}: {time.perf_counter() - t0:.0f} s (shared)", flush=True)
            for norm, maps in (("none", raw), ("mean", raw / mean), ("z", (raw - mean) / std)):
                for sigma in (0.0, 1.0, 2.0):
                    smooth = blur(maps, sigma)
                    for top_k in (1, 3, 5, 10, 20):
                        s = image_score(smooth, top_k)
                        if norm == "z":  # z-scores can be negative: shift so the reference ratio is defined
                            s = s - min(float(s.min()), 0.0) + 1e-6
                        ref = float(np.quantile(s[:n_ref], REF_Q))
                        g, d = s[n_ref : n_ref + n_good] / ref, s[n_ref + n_good :] / ref
                        key = f"bank {bank}, position norm {norm}, blur {sigma:g}, " + (
                            "max" if top_k == 1 else f"mean of top {top_k}"
                        )
                        results.setdefault(key, []).append(
                            {"auroc": auroc(g, d), "frr_at_zero_escape": false_reject_rate_at_zero_escape(g, d)}
                        )
    rows = []
    for key, folds_out in results.items():
        a = [f["auroc"] for f in folds_out]
        z = [f["frr_at_zero_escape"] for f in folds_out]
        rows.append(
            {
                "variant": key,
                "cv_auroc": round(float(np.mean(a)), 4),
                "cv_auroc_std": round(float(np.std(a)), 4),
                "cv_frr_at_zero_escape": round(float(np.mean(z)), 4),
                "cv_frr_at_zero_escape_std": round(float(np.std(z)), 4),
                "fold_auroc": [round(x, 4) for x in a],
            }
        )
    rows.sort(key=lambda r: -r["cv_auroc"])
    for r in rows[:12]:
        print(json.dumps(r), flush=True)
    doc = {
        "what": "good-only score variants on one kNN per fold, magnetic-tile TRAIN split, 3-fold CV",
        "command": "python " + " ".join(["bench/anomaly_aggregation.py", *sys.argv[1:]]),
        "features": args.features,
        "machine": "2-core VM, shared with other jobs",
        "wall_s_shared": round(time.perf_counter() - started, 1),
        "rows": rows,
    }
    args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
