"""What the exposure guard (``training/exposure.py``) costs and catches, in the good-only 3-fold CV
on the magnetic-tile TRAIN split (never the test split), on the equalised input's cached features.

    python bench/anomaly_features.py --cache C --photometric equalize   # feats_224_pm_equalize.npz
    python bench/exposure_guard_cv.py --cache C --out bench/results/exposure_guard_cv_12g.json

Same protocol and folds as ``bench/anomaly_directions.py`` (``anomaly_selection.Fold``): today's
kNN rule on the equalised input (``photo_equalize``: coreset 8,192, per-cell position mean of
unseen fit goods, 1-cell blur, image score = map maximum divided by the 99th percentile of the
reference goods), squashed ``r / (1 + r)`` as the graph does. The guard is learnt, as training
learns it, from the goods the fold trains on (fit goods + reference goods, the training's
validation goods) with ``training.exposure.fit_exposure_guard`` on the raw images read from
``--data``, and joins by max (1.0 outside its ranges). Each fold is scored with and without it
(the same kNN maps), for every ``--margins`` value: image AUROC and the false-reject rate at zero
escapes over the held-out goods and all defective tiles, and how many held-out goods and defects
the guard fires on.

Stress rows: every held-out good tile re-shot synthetically (gain, offset or contrast change of
the raw pixels, clipped to 0..255), and the share the guard fires on. Histogram equalisation maps
such a frame to (nearly) the original equalised frame, so without the guard the kNN scores it
(nearly) as the good original: these are the parts the guard exists to fail.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.anomaly_directions import Cache, build_variants, fold_raw_maps, score_maps
from bench.anomaly_selection import Fold
from training.exposure import ExposureGuard, fit_exposure_guard, frame_statistics
from vinspect.dataset import open_dataset, read_image
from vinspect.models.calibration import auroc, false_reject_rate_at_zero_escape

DEFAULT_DATA = Path("/work/shared/datasets/magnetic-tile")
Image = npt.NDArray[np.uint8]


def _clip(x: npt.NDArray[np.float64]) -> Image:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


STRESS: dict[str, Callable[[Image], Image]] = {
    "gain 0.5 (half the light)": lambda im: _clip(im * 0.5),
    "gain 0.7": lambda im: _clip(im * 0.7),
    "gain 1.5 (clipped)": lambda im: _clip(im * 1.5),
    "contrast 0.5 about the mean (flatter)": lambda im: _clip(im.mean() + 0.5 * (im - im.mean())),
    "contrast 0.25 about the mean": lambda im: _clip(im.mean() + 0.25 * (im - im.mean())),
    "offset -40 grey levels": lambda im: _clip(im.astype(np.float64) - 40),
}


def _stats(images: list[Image]) -> torch.Tensor:
    return torch.stack([frame_statistics(torch.from_numpy(np.array(im))) for im in images])


def _fires(guard: ExposureGuard, stats: torch.Tensor) -> npt.NDArray[np.bool_]:
    outside = (stats < guard.low) | (stats > guard.high)
    return outside.any(dim=1).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--margins", default="0,0.5,1,2", help="exposure_margin values (TrainConfig default 1)")
    ap.add_argument("--folds", default="0,1,2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    cache = Cache(args.cache)
    variant = build_variants(cache)["photo_equalize"]()
    labels, stems = cache.get("feats_224_pm_equalize.npz:label"), cache.get("feats_224_pm_equalize.npz:stem")
    by_stem = {s.stem: s for s in open_dataset(args.data).train_samples()}
    images = [read_image(by_stem[str(s)].path) for s in stems]
    stats = _stats(images)
    stress = {name: _stats([f(im.astype(np.float64)) for im in images]) for name, f in STRESS.items()}
    margins = [float(m) for m in args.margins.split(",")]
    rows: dict[str, dict[str, list[Any]]] = {}
    per_fold: list[dict[str, Any]] = []
    for k in [int(f) for f in args.folds.split(",")]:
        fold = Fold(k, labels, stems)
        t0 = time.perf_counter()
        unseen, scored = fold_raw_maps(variant, fold)
        maps, ref = score_maps(
            unseen, scored, reduce=lambda m: m[0], blur_cells=1.0, norm="cell", n_ref=fold.ref_goods.size
        )
        raw = np.array([float(m.max()) for m in maps]) / ref
        squashed = raw / (1.0 + raw)
        n_ref, n_good = fold.ref_goods.size, fold.test_goods.size
        held = np.concatenate([fold.test_goods, fold.all_defects])
        score = squashed[n_ref:]
        is_good = np.arange(held.size) < n_good
        entry: dict[str, Any] = {"fold": k, "knn_maps_s_shared": round(time.perf_counter() - t0, 1)}
        cases: dict[str, npt.NDArray[np.float64]] = {"without the guard": score}
        trained_on = np.concatenate([fold.fit_goods, fold.ref_goods])
        for m in margins:
            guard = fit_exposure_guard([images[i] for i in trained_on], margin=m)
            fired = _fires(guard, stats[held])
            cases[f"with the guard, margin {m:g}"] = np.maximum(score, fired.astype(np.float64))
            entry[f"margin {m:g}"] = {
                "ranges": {key: round(v, 4) for key, v in guard.ranges().items()},
                "held_out_goods_fired": int(fired[is_good].sum()),
                "held_out_goods": int(is_good.sum()),
                "defects_fired": int(fired[~is_good].sum()),
                "defects": int((~is_good).sum()),
                "stress_goods_fired": {
                    name: int(_fires(guard, s[fold.test_goods]).sum()) for name, s in stress.items()
                },
            }
        for name, s in cases.items():
            row = rows.setdefault(name, {"auroc": [], "frr0": []})
            row["auroc"].append(auroc(s[is_good], s[~is_good]))
            row["frr0"].append(false_reject_rate_at_zero_escape(s[is_good], s[~is_good]))
            print(f"fold {k} {name}: AUROC {row['auroc'][-1]:.4f} FRR@0 {row['frr0'][-1]:.4f}", flush=True)
        per_fold.append(entry)
        doc = {
            "what": "exposure guard (training/exposure.py) on the equalised good-only kNN, magnetic-tile TRAIN "
            "split, 3-fold CV (folds listed per row)",
            "command": "python " + " ".join(["bench/exposure_guard_cv.py", *sys.argv[1:]]),
            "features": "python bench/anomaly_features.py --cache C --photometric equalize",
            "protocol": __doc__.split("Same protocol")[1].strip(),
            "machine": "2-core VM, shared with other jobs (timings are 'shared')",
            "wall_s_shared": round(time.perf_counter() - started, 1),
            "rows": [
                {
                    "variant": name,
                    "folds": [f["fold"] for f in per_fold],
                    "cv_auroc": round(float(np.mean(r["auroc"])), 4),
                    "cv_auroc_std": round(float(np.std(r["auroc"])), 4),
                    "cv_frr_at_zero_escape": round(float(np.mean(r["frr0"])), 4),
                    "cv_frr_at_zero_escape_std": round(float(np.std(r["frr0"])), 4),
                    "fold_auroc": [round(x, 4) for x in r["auroc"]],
                    "fold_frr_at_zero_escape": [round(x, 4) for x in r["frr0"]],
                }
                for name, r in rows.items()
            ],
            "per_fold": per_fold,
        }
        args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")  # after every fold: nothing lost
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
