"""Good-only directions not covered by ``bench/anomaly_selection.py`` / ``anomaly_aggregation.py``:
flip test-time augmentation and a flip-augmented memory bank, an earlier finer trunk tap
(MobileNetV2 block 6, 28x28 at 224 px), and aspect-kept ("native") input. Same protocol: 3-fold
cross-validation on the magnetic-tile TRAIN split only (``anomaly_selection.Fold``: fit goods,
20 % reference goods, held-out fold; never the test split), on features cached by
``bench/anomaly_features.py`` (``--extra views`` and ``--extra native``).

    python bench/anomaly_features.py --cache C                  # feats_224.npz (baseline)
    python bench/anomaly_features.py --cache C --extra views    # feats_224_views.npz, feats_224_fine.npz
    python bench/anomaly_features.py --cache C --extra native   # feats_native_224.npz
    python bench/anomaly_directions.py --cache C --variants baseline,tta4_mean,... --out OUT.json

Every variant is the shipped rule with one thing changed: kNN distance to a greedy coreset of
8,192 good patches (64-d projection for the search), the map divided per cell by the mean
distance of *unseen* goods (2-fold cross-fit over the fold's fit goods, as
``training.anomaly.position_scale``), blurred by a 1-cell Gaussian, image score = map maximum,
divided by the 99th percentile of the reference goods' scores. Flip views are flipped back to
the image's orientation before they are combined (mean or max per cell). Native-aspect maps
have 14 rows and as many columns as the tile's aspect gives; their position normalisation is
either ``resampled`` (the per-cell mean is learnt on maps resized to 14x14 and resized back to
each map) or ``edge`` (one mean per row and per column class: the 3 columns nearest the left
edge, the 3 nearest the right edge, the interior).

Localisation on the same folds: every defective train-split tile is scored once, by the fold
that holds it out (the anomaly path never sees defects), with the held-out fold's goods as
all-background images; the map is squashed ``r / (1 + r)`` as the graph does and scored by
``bench/localisation_bench.score_variant`` (pixel AUROC, hottest point inside the mask dilated
by 15 px), pooled over the three folds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.anomaly_aggregation import blur
from bench.anomaly_selection import REF_Q, Fold
from bench.localisation_bench import score_variant
from training.anomaly import KnnScorer, fit_knn
from vinspect.dataset import open_dataset, read_image
from vinspect.models.calibration import auroc, false_reject_rate_at_zero_escape

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_DATA = Path("/work/shared/datasets/magnetic-tile")
BANK = 8192
EDGE_COLS = 3
Idx = npt.NDArray[np.int64]


Reduce = Callable[[torch.Tensor], torch.Tensor]  # [V, h, w] flipped-back view maps -> one map


@dataclass
class Variant:
    """How one feature set builds its memory bank and its raw maps, and which score rules to read
    off the same kNN maps (one row per reduction x blur x position normalisation)."""

    description: str
    bank: Callable[[Idx], torch.Tensor]  # image indices -> good patches [n, D]
    maps: Callable[[KnnScorer, Idx], list[torch.Tensor]]  # image indices -> raw maps [V, h, w]
    reductions: dict[str, Reduce] = field(default_factory=lambda: {"identity": lambda m: m[0]})
    blurs: tuple[float, ...] = (1.0,)
    norms: tuple[str, ...] = ("cell",)  # cell | resampled | edge | none


def _flip_back(m: torch.Tensor, view: int) -> torch.Tensor:
    """Undo ``training.features.VIEWS[view]`` (identity, hflip, vflip, hvflip) on a map [h, w]."""
    dims = {0: [], 1: [1], 2: [0], 3: [0, 1]}[view]
    return m.flip(dims) if dims else m


def _patches(e: torch.Tensor) -> torch.Tensor:
    return e.permute(0, 2, 3, 1).reshape(-1, e.shape[1])


class Cache:
    """The cached feature files, loaded (and converted to float32) on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._loaded: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        if name not in self._loaded:
            data = np.load(self.root / name)
            if name.startswith("feats_native"):
                shape = data["shape"]
                flat = torch.from_numpy(data["patches"].astype(np.float32))
                ends = np.cumsum(shape[:, 0] * shape[:, 1])
                starts = np.concatenate([[0], ends[:-1]])
                self._loaded[name] = [
                    flat[s:e].t().reshape(1, -1, int(h), int(w))
                    for s, e, (h, w) in zip(starts, ends, shape, strict=True)
                ]
            else:
                self._loaded[name] = torch.from_numpy(data["emb"].astype(np.float32))
            self._loaded[name + ":stem"] = data["stem"]
            self._loaded[name + ":label"] = data["label"]
        return self._loaded[name]


TTA: dict[str, Reduce] = {
    "identity": lambda m: m[0],
    "flip TTA 2 views (identity, hflip), mean": lambda m: m[:2].mean(0),
    "flip TTA 4 views, mean": lambda m: m.mean(0),
    "flip TTA 4 views, max": lambda m: m.amax(0),
}


def build_variants(cache: Cache) -> dict[str, Callable[[], Variant]]:
    def single(e: torch.Tensor) -> Callable[[KnnScorer, Idx], list[torch.Tensor]]:
        return lambda s, idx: [s(e[i : i + 1])[None] for i in idx.tolist()]

    def views(flip_bank: bool) -> Callable[[], Variant]:
        def make() -> Variant:
            v = cache.get("feats_224_views.npz")  # [N, 4, D, h, w], views as the trunk saw them

            def bank(idx: Idx) -> torch.Tensor:
                return _patches(v[idx].flatten(0, 1) if flip_bank else v[idx, 0])

            def maps(s: KnnScorer, idx: Idx) -> list[torch.Tensor]:
                return [torch.stack([_flip_back(s(v[i, k : k + 1]), k) for k in range(4)]) for i in idx.tolist()]

            txt = (
                "bank from the fit goods and their 3 flips (coreset 8192 of 4x the patches)"
                if flip_bank
                else "today's patch kNN (224 px, taps 10+13, 14x14), identity bank"
            )
            return Variant(txt, bank, maps, reductions=TTA)

        return make

    def fine(channels: slice, desc: str, pool14: bool = False) -> Callable[[], Variant]:
        def make() -> Variant:
            f = cache.get("feats_224_fine.npz")[:, channels]  # [N, 192, 28, 28]: blocks 6 (32), 10 (64), 13 (96)
            e = torch.cat([F.avg_pool2d(f, 2), cache.get("feats_224.npz")], dim=1) if pool14 else f
            return Variant(desc, lambda idx: _patches(e[idx]), single(e), blurs=(1.0,) if pool14 else (1.0, 2.0))

        return make

    def native() -> Variant:
        n = cache.get("feats_native_224.npz")
        return Variant(
            "aspect kept (224 px high, width from the aspect), 14 x W grid",
            lambda idx: torch.cat([_patches(n[i]) for i in idx.tolist()]),
            lambda s, idx: [s(n[i])[None] for i in idx.tolist()],
            norms=("resampled", "edge"),
        )

    def native_resized() -> Variant:
        n = cache.get("feats_native_224.npz")
        e = torch.cat(
            [
                F.adaptive_avg_pool2d(x, (14, 14))
                if x.shape[-1] >= 14
                else F.interpolate(x, size=(14, 14), mode="bilinear", align_corners=False)
                for x in n
            ]
        )
        return Variant(
            "aspect kept through the trunk, features resized to 14x14 (area down / bilinear up)",
            lambda idx: _patches(e[idx]),
            single(e),
        )

    def baseline() -> Variant:
        e = cache.get("feats_224.npz")
        return Variant("today's patch kNN (224 px, taps 10+13, 14x14)", lambda idx: _patches(e[idx]), single(e))

    return {
        "baseline": baseline,
        "views": views(False),
        "flipbank": views(True),
        "fine_6_10_13": fine(slice(0, 192), "taps 6+10+13 on block 6's 28x28 grid"),
        "fine_6": fine(slice(0, 32), "tap 6 alone, 28x28"),
        "fine_6_pooled14": fine(slice(0, 32), "tap 6 pooled to 14x14 + taps 10+13", pool14=True),
        "native": native,
        "native_resized14": native_resized,
    }


def _edge_key(h: int, w: int) -> torch.Tensor:
    """Per-cell class index ``row * (2E+1) + column class`` (E left, E right, interior)."""
    cols = torch.arange(w)
    right = w - 1 - cols
    cls = torch.where(
        cols < EDGE_COLS,
        cols,
        torch.where(right < EDGE_COLS, 2 * EDGE_COLS - 1 - right, torch.full_like(cols, 2 * EDGE_COLS)),
    )
    return torch.arange(h)[:, None] * (2 * EDGE_COLS + 1) + cls[None, :]


class PositionScale:
    """Per-position mean of unseen good maps, in one of the normalisation modes."""

    def __init__(self, norm: str, maps: list[torch.Tensor]) -> None:
        self.norm = norm
        if norm == "cell":
            self.scale = torch.stack(maps).mean(0)
        elif norm == "resampled":
            self.scale = torch.stack([_resize(m, (14, 14)) for m in maps]).mean(0)
        elif norm == "edge":
            h = maps[0].shape[0]
            total, count = torch.zeros(h * (2 * EDGE_COLS + 1)), torch.zeros(h * (2 * EDGE_COLS + 1))
            for m in maps:
                key = _edge_key(*m.shape).flatten()
                total.index_add_(0, key, m.flatten())
                count.index_add_(0, key, torch.ones_like(m.flatten()))
            self.scale = total / count.clamp_min(1)
        if norm != "none":
            self.scale = self.scale.clamp_min(float(self.scale.mean()) * 1e-3)

    def __call__(self, m: torch.Tensor) -> torch.Tensor:
        if self.norm == "none":
            return m
        if self.norm == "cell":
            return m / self.scale
        if self.norm == "resampled":
            return m / _resize(self.scale, tuple(m.shape)).clamp_min(float(self.scale.mean()) * 1e-3)
        return m / self.scale[_edge_key(*m.shape)]


def _resize(m: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    return F.interpolate(m[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]


@torch.no_grad()
def fold_raw_maps(v: Variant, fold: Fold) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Raw maps [V, h, w] of the fit goods scored by a 2-fold cross-fit (for the position means),
    and of ref goods + test goods + all defects scored by the bank of all fit goods."""
    order = np.random.default_rng(0).permutation(fold.fit_goods)
    halves = [order[0::2], order[1::2]]
    unseen: list[torch.Tensor] = []
    for k in range(2):
        scorer = fit_knn(v.bank(halves[1 - k])[:, :, None, None], coreset_size=BANK, projection_dim=64, seed=0)
        unseen += v.maps(scorer, halves[k])
    scorer = fit_knn(v.bank(fold.fit_goods)[:, :, None, None], coreset_size=BANK, projection_dim=64, seed=0)
    return unseen, v.maps(scorer, np.concatenate([fold.ref_goods, fold.test_goods, fold.all_defects]))


def score_maps(
    unseen: list[torch.Tensor], scored: list[torch.Tensor], *, reduce: Reduce, blur_cells: float, norm: str, n_ref: int
) -> tuple[list[torch.Tensor], float]:
    """One score rule on raw maps: reduce views, position-normalise, blur; and the reference level."""
    position = PositionScale(norm, [reduce(m) for m in unseen])
    maps = [blur(position(reduce(m))[None], blur_cells)[0] for m in scored]
    return maps, float(np.quantile([float(m.max()) for m in maps[:n_ref]], REF_Q))


def load_masks(data: Path, stems: npt.NDArray[np.str_]) -> list[npt.NDArray[np.uint8]]:
    """Defect mask (or an all-zero one for goods) at image size, in the cached feature order."""
    by_stem = {s.stem: s for s in open_dataset(data).train_samples()}
    masks = []
    for stem in stems:
        s = by_stem[str(stem)]
        if s.is_good or s.mask_path is None:
            h, w = read_image(s.path).shape[:2]
            masks.append(np.zeros((h, w), np.uint8))
        else:
            m = (read_image(s.mask_path) > 127).astype(np.uint8)
            masks.append(m if m.ndim == 2 else m[:, :, 0])
    return masks


Rule = tuple[str, float, str]  # (reduction, blur in cells, position norm)


class Tally:
    """Per-rule results of one variant over the folds evaluated so far."""

    def __init__(self, name: str, v: Variant) -> None:
        self.name, self.v = name, v
        self.rules: list[Rule] = [(r, b, n) for r in v.reductions for b in v.blurs for n in v.norms]
        self.aucs: dict[Rule, list[float]] = {rule: [] for rule in self.rules}
        self.frrs: dict[Rule, list[float]] = {rule: [] for rule in self.rules}
        self.loc: dict[Rule, list[tuple[np.ndarray, np.ndarray, str]]] = {rule: [] for rule in self.rules}
        self.folds: list[int] = []
        self.secs: list[float] = []

    def add_fold(self, fold: Fold, labels: npt.NDArray[np.str_], masks: list[npt.NDArray[np.uint8]] | None) -> None:
        t0 = time.perf_counter()
        unseen, scored = fold_raw_maps(self.v, fold)
        self.secs.append(time.perf_counter() - t0)
        self.folds.append(fold.k)
        n_ref, n_good = fold.ref_goods.size, fold.test_goods.size
        for rule in self.rules:
            reduction, blur_cells, norm = rule
            maps, ref = score_maps(
                unseen, scored, reduce=self.v.reductions[reduction], blur_cells=blur_cells, norm=norm, n_ref=n_ref
            )
            scores = np.array([float(m.max()) for m in maps]) / ref
            g, d = scores[n_ref : n_ref + n_good], scores[n_ref + n_good :]
            self.aucs[rule].append(auroc(g, d))
            self.frrs[rule].append(false_reject_rate_at_zero_escape(g, d))
            if masks is not None:
                held = set(fold.test_defects.tolist())
                for i, m in zip(np.concatenate([fold.test_goods, fold.all_defects]), maps[n_ref:], strict=True):
                    if i in held or labels[i] == "good":
                        r = (m / ref).numpy()
                        self.loc[rule].append((r / (1.0 + r), masks[i], str(labels[i])))
            print(f"  {self.name} {rule} fold {fold.k}: AUROC {self.aucs[rule][-1]:.4f}", flush=True)
        print(f"  {self.name} fold {fold.k}: kNN maps in {self.secs[-1]:.0f} s (shared)", flush=True)

    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for rule in self.rules:
            reduction, blur_cells, norm = rule
            a, z = self.aucs[rule], self.frrs[rule]
            row: dict[str, Any] = {
                "variant": f"{self.name}: {reduction}, blur {blur_cells:g} cells, position norm {norm}",
                "features": self.v.description,
                "folds": self.folds,
                "cv_auroc": round(float(np.mean(a)), 4),
                "cv_auroc_std": round(float(np.std(a)), 4),
                "cv_frr_at_zero_escape": round(float(np.mean(z)), 4),
                "cv_frr_at_zero_escape_std": round(float(np.std(z)), 4),
                "fold_auroc": [round(x, 4) for x in a],
                "fold_frr_at_zero_escape": [round(x, 4) for x in z],
                "knn_maps_s_per_fold_shared": round(float(np.mean(self.secs)), 1),
            }
            if self.loc[rule]:
                shapes = {tuple(m.shape) for m, _, _ in self.loc[rule]}
                row["map_grid"] = list(shapes.pop()) if len(shapes) == 1 else "14 x W (aspect)"
                row["localisation_cv"] = score_variant(self.loc[rule], sigma=0.0, interp="linear")
            rows.append(row)
        return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="for the defect masks (localisation)")
    ap.add_argument("--variants", default="views")
    ap.add_argument("--folds", default="0,1,2", help="folds to run (all variants per fold, fold by fold)")
    ap.add_argument("--no-localisation", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cache = Cache(args.cache)
    builders = build_variants(cache)
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in builders]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; known: {sorted(builders)}")
    base = np.load(args.cache / "feats_224.npz")
    labels, stems = base["label"], base["stem"]
    folds = [Fold(k, labels, stems) for k in range(3)]
    masks = None if args.no_localisation else load_masks(args.data, stems)
    tallies = [Tally(name, builders[name]()) for name in names]
    for key in list(cache._loaded):  # every cached file must hold the images in the baseline's order
        if key.endswith(":stem") and not (cache._loaded[key] == stems).all():
            raise SystemExit(f"{key}: cached images are in another order")
    started = time.perf_counter()
    for k in [int(f) for f in args.folds.split(",")]:
        for tally in tallies:
            tally.add_fold(folds[k], labels, masks)
            rows = [row for t in tallies if t.folds for row in t.rows()]
            doc = {
                "what": "good-only directions (flip TTA / flip bank, finer tap, aspect-kept input), magnetic-tile "
                "TRAIN split, 3-fold CV (a row's 'folds' lists the folds it has run)",
                "command": "python " + " ".join(["bench/anomaly_directions.py", *sys.argv[1:]]),
                "features": "python bench/anomaly_features.py --cache C [--extra views | --extra native]",
                "protocol": __doc__.split("Every variant")[1].strip(),
                "machine": "2-core VM, shared with other jobs (timings are 'shared')",
                "wall_s_shared": round(time.perf_counter() - started, 1),
                "rows": rows,
            }
            args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")  # after every fold: nothing lost
    for row in rows:
        print(json.dumps(row), flush=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
