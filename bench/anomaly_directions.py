"""Good-only directions not covered by ``bench/anomaly_selection.py`` / ``anomaly_aggregation.py``:
flip test-time augmentation and a flip-augmented memory bank, an earlier finer trunk tap
(MobileNetV2 block 6, 28x28 at 224 px), aspect-kept ("native") input (issue 12d); photometric
normalisation of the input (``photo_*``), per-image ("instance") normalisation of the patch
features (``inorm_*``), intra-image self-similarity fused with the bank kNN (``selfsim*``) and
image-level signals on pooled features (``global``) (issue 12f); a kNN on raw and one on
histogram-equalised features fused (``fused_raw_equalize``) and a position-conditioned kNN
(``poscond_r<r>``, ``poscond_equalize_r<r>``) (issue 12i); the per-cell coreset (``cellcs_*``,
issue 12k); the kNN searched in the bank's top principal directions alone (``pca_*``) or plus the
query's residual outside them (``pcares_*``, ``knn_search_dim``) (issue 12m). Same protocol: 3-fold
cross-validation on the magnetic-tile TRAIN split only (``anomaly_selection.Fold``: fit goods,
20 % reference goods, held-out fold; never the test split), on features cached by
``bench/anomaly_features.py`` (``--extra views`` and ``--extra native``).

    python bench/anomaly_features.py --cache C                  # feats_224.npz (baseline)
    python bench/anomaly_features.py --cache C --extra views    # feats_224_views.npz, feats_224_fine.npz
    python bench/anomaly_features.py --cache C --extra native   # feats_native_224.npz
    python bench/anomaly_features.py --cache C --photometric meanstd   # feats_224_pm_meanstd.npz (clahe, equalize)
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

Multi-signal variants (``selfsim*``, ``global``, ``inorm_mean_fused``) compute several raw maps per
image from the same fold: each signal is position-normalised by its own per-cell mean of unseen
fit goods (self-similarity needs no bank, so its fit goods are unseen anyway; image-level signals
are constant maps and are not position-normalised), blurred, and divided by its own reference
level (99th percentile of the reference goods' map maxima). Rules: each signal alone; per pair
the cell-wise max, geometric mean, mean, fixed weights, and ``w_goods``: the weight (0, 0.1, ..,
1) that makes the unseen fit goods' fused image scores tightest (smallest coefficient of
variation), chosen per fold on goods only, never on defects. The fused map's image score (its
maximum) is divided by the reference goods' 99th percentile again.

Position-conditioned kNN (``poscond*``, issue 12i): no global bank and no coreset; the patch of a
query at cell (i, j) is compared with every fit good's patches at the cells within +-r rows and
columns of (i, j) (clipped at the border), full 160-d distances, then the same per-cell position
normalisation (``cell``) or none (``none``), blur and reference division. Each row reports its
kNN work per scored image (distances computed: the window sizes summed over the 196 cells times
the fit goods) beside today's 196 x 8,192.

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
from training.anomaly import KnnScorer, fit_knn, pca_basis
from vinspect.dataset import open_dataset, read_image
from vinspect.models.calibration import auroc, false_reject_rate_at_zero_escape

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_DATA = Path("/work/shared/datasets/magnetic-tile")
BANK = 8192
EDGE_COLS = 3
Idx = npt.NDArray[np.int64]


Reduce = Callable[[torch.Tensor], torch.Tensor]  # [V, h, w] flipped-back view maps -> one map
FusionRule = tuple[tuple[int, ...], str]  # (signal indices, how: alone | max | geomean | mean | w=<x> | w_goods)
FUSE_KINDS = ("max", "geomean", "mean", "w_goods")
WEIGHTS = tuple(i / 10 for i in range(11))
_NEAR: dict[tuple[int, int], torch.Tensor] = {}


def self_similarity(e: torch.Tensor, ks: tuple[int, ...]) -> torch.Tensor:
    """``[1, D, h, w]`` -> ``[len(ks), h, w]``: every patch's distance to its k-th nearest patch of the
    same image outside its own 3x3 neighbourhood (a defect is unlike the rest of its tile)."""
    h, w = int(e.shape[-2]), int(e.shape[-1])
    if (h, w) not in _NEAR:
        r, c = torch.arange(h).repeat_interleave(w), torch.arange(w).repeat(h)
        _NEAR[h, w] = ((r[:, None] - r[None, :]).abs() <= 1) & ((c[:, None] - c[None, :]).abs() <= 1)
    x = e[0].flatten(1).t()
    sq = (x * x).sum(1)
    d2 = (sq[:, None] - 2.0 * (x @ x.t()) + sq[None, :]).clamp_min(0.0).masked_fill(_NEAR[h, w], float("inf"))
    near = d2.topk(max(ks), dim=1, largest=False).values.sqrt()
    return torch.stack([near[:, k - 1].reshape(h, w) for k in ks])


def instance_norm(e: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-image normalisation of patch features ``[N, D, h, w]``: ``mean`` subtracts each image's
    mean patch feature, ``std`` also divides every channel by the image's standard deviation."""
    centred = e - e.mean((2, 3), keepdim=True)
    if kind == "mean":
        return centred
    return centred / e.std((2, 3), keepdim=True).clamp_min(1e-6)


@torch.no_grad()
def local_knn(query: torch.Tensor, bank: torch.Tensor, radius: int) -> torch.Tensor:
    """Position-conditioned nearest-neighbour distance ``[nq, h, w]``: the patch of ``query [nq, D,
    h, w]`` at cell (i, j) is compared only with the patches of every ``bank [nb, D, h, w]`` image
    at the cells within +-``radius`` rows and columns of (i, j) (clipped at the map's border)."""
    nq, d, h, w = query.shape
    by_cell = bank.permute(2, 3, 0, 1).contiguous()  # [h, w, nb, D]
    sq = (by_cell * by_cell).sum(-1)  # [h, w, nb]
    q_sq = (query * query).sum(1)  # [nq, h, w]
    out = torch.empty(nq, h, w)
    for i in range(h):
        r0, r1 = max(0, i - radius), min(h, i + radius + 1)
        for j in range(w):
            c0, c1 = max(0, j - radius), min(w, j + radius + 1)
            b = by_cell[r0:r1, c0:c1].reshape(-1, d)
            d2 = q_sq[:, i, j, None] - 2.0 * (query[:, :, i, j] @ b.t()) + sq[r0:r1, c0:c1].reshape(1, -1)
            out[:, i, j] = d2.min(1).values.clamp_min(0.0).sqrt()
    return out


def cell_coreset_knn(
    query: torch.Tensor, bank: torch.Tensor, size: int, *, projection_dim: int = 64, seed: int = 0
) -> torch.Tensor:
    """Issue 12j's ``anomaly_method: knn_cell`` with ``cell_bank_size: size``, as training builds it
    (``training.anomaly.fit_cell_knn``: per cell a greedy k-center coreset of the ``bank [nb, D, h, w]``
    images' patches at that cell); distances ``[nq, h, w]``."""
    from training.anomaly import fit_cell_knn

    scorer = fit_cell_knn(bank, bank_size=size, projection_dim=projection_dim, seed=seed)
    with torch.no_grad():
        return torch.stack([scorer(query[n : n + 1]) for n in range(query.shape[0])])


def local_knn_work(h: int, w: int, radius: int, bank_images: int) -> int:
    """Distances :func:`local_knn` computes per scored image (its window sizes summed over the cells)."""
    rows = sum(min(h, i + radius + 1) - max(0, i - radius) for i in range(h))
    cols = sum(min(w, j + radius + 1) - max(0, j - radius) for j in range(w))
    return rows * cols * bank_images


def fusion_rules(
    names: tuple[str, ...], pairs: list[tuple[int, int]], *, fixed: tuple[float, ...] = ()
) -> dict[str, FusionRule]:
    """Every signal alone, and each pair (a, b) by each rule in ``FUSE_KINDS`` and fixed weights on a."""
    rules: dict[str, FusionRule] = {f"{n} alone": ((i,), "alone") for i, n in enumerate(names)}
    for a, b in pairs:
        for kind in FUSE_KINDS:
            rules[f"{kind}({names[a]}, {names[b]})"] = ((a, b), kind)
        for wt in fixed:
            rules[f"{wt:g} x {names[a]} + {1 - wt:g} x {names[b]}"] = ((a, b), f"w={wt:g}")
    return rules


def fuse(maps: torch.Tensor, rule: FusionRule, weight: float | None = None) -> torch.Tensor:
    """Combine per-signal maps ``[S, h, w]`` (each in its own reference units) into one map."""
    idx, kind = rule
    if kind == "alone":
        return maps[idx[0]]
    a, b = maps[idx[0]], maps[idx[1]]
    if kind == "max":
        return torch.maximum(a, b)
    if kind == "geomean":
        return (a * b).clamp_min(0.0).sqrt()
    if kind == "mean":
        return 0.5 * (a + b)
    wt = float(kind[2:]) if kind.startswith("w=") else weight
    assert wt is not None
    return wt * a + (1.0 - wt) * b


def goods_weight(unseen: list[torch.Tensor], rule: FusionRule) -> float:
    """The weight on the first signal (0, 0.1, .., 1) that makes the unseen fit goods' image scores
    tightest (smallest coefficient of variation): chosen on goods only, never on defects."""
    cvs = []
    for wt in WEIGHTS:
        sc = np.array([float(fuse(m, rule, wt).max()) for m in unseen])
        cvs.append(float(sc.std() / max(sc.mean(), 1e-12)))
    return WEIGHTS[int(np.argmin(cvs))]


@dataclass
class Variant:
    """How one feature set builds its memory bank and its raw maps, and which score rules to read
    off the same kNN maps (one row per reduction x blur x position normalisation)."""

    description: str
    bank: Callable[[Idx], torch.Tensor]  # image indices -> good patches [n, D]
    # (scorer of the bank, image indices to score, the bank's image indices) -> raw maps [V, h, w]
    maps: Callable[[Any, Idx, Idx], list[torch.Tensor]]
    reductions: dict[str, Reduce] = field(default_factory=lambda: {"identity": lambda m: m[0]})
    blurs: tuple[float, ...] = (1.0,)
    norms: tuple[str, ...] = ("cell",)  # cell | resampled | edge | none
    # multi-signal variants: the raw maps' V axis holds one signal each (not views); every signal is
    # position-normalised by its own norm, blurred and divided by its own reference level, then
    # the rules in ``fusions`` combine them (``reductions`` and ``norms`` are then unused)
    signal_norms: tuple[str, ...] = ()
    fusions: dict[str, FusionRule] = field(default_factory=dict)
    # False: the variant searches its own banks (``maps`` gets ``None`` for the scorer), no coreset
    knn_bank: bool = True
    # bank images -> distances computed per scored image (a latency proxy); None: not reported
    work: Callable[[int], int] | None = None


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
    def single(e: torch.Tensor) -> Callable[[KnnScorer, Idx, Idx], list[torch.Tensor]]:
        return lambda s, idx, _bank: [s(e[i : i + 1])[None] for i in idx.tolist()]

    def views(flip_bank: bool) -> Callable[[], Variant]:
        def make() -> Variant:
            v = cache.get("feats_224_views.npz")  # [N, 4, D, h, w], views as the trunk saw them

            def bank(idx: Idx) -> torch.Tensor:
                return _patches(v[idx].flatten(0, 1) if flip_bank else v[idx, 0])

            def maps(s: KnnScorer, idx: Idx, _bank: Idx) -> list[torch.Tensor]:
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
            lambda s, idx, _bank: [s(n[i])[None] for i in idx.tolist()],
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

    def photo(mode: str) -> Callable[[], Variant]:
        def make() -> Variant:
            e = cache.get(f"feats_224_pm_{mode}.npz")
            txt = f"input grey levels normalised per image ({mode}) before the trunk, else today's kNN"
            return Variant(txt, lambda idx: _patches(e[idx]), single(e))

        return make

    def inorm(kind: str, source: str = "feats_224.npz") -> Callable[[], Variant]:
        def make() -> Variant:
            e = instance_norm(cache.get(source), kind)
            txt = f"patch features ({source}) normalised per image ({kind}) for bank and query, else today's kNN"
            return Variant(txt, lambda idx: _patches(e[idx]), single(e))

        return make

    def selfsim(source: str, ks: tuple[int, ...]) -> Callable[[], Variant]:
        def make() -> Variant:
            e = cache.get(source)

            def maps(s: KnnScorer, idx: Idx, _bank: Idx) -> list[torch.Tensor]:
                return [torch.cat([s(e[i : i + 1])[None], self_similarity(e[i : i + 1], ks)]) for i in idx.tolist()]

            names = ("kNN", *[f"self-sim k={k}" for k in ks])
            return Variant(
                f"today's kNN ({source}) and intra-image self-similarity (k-th nearest patch of the same "
                "image outside its 3x3 neighbourhood), each position-normalised and divided by its reference",
                lambda idx: _patches(e[idx]),
                maps,
                signal_norms=("cell",) * len(names),
                fusions=fusion_rules(names, [(0, j) for j in range(1, len(names))], fixed=(0.25, 0.75)),
            )

        return make

    def pooled(e: torch.Tensor) -> torch.Tensor:
        return torch.cat([e.mean((2, 3)), e.std((2, 3))], dim=1)  # [N, 2D]: mean and std over patches

    def global_signals() -> Variant:
        e = cache.get("feats_224.npz")
        g = pooled(e)
        fitted: dict[bytes, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = {}

        def fit(bank: Idx) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
            key = bank.tobytes()
            if key not in fitted:
                x = g[bank].double()
                mu, sd = x.mean(0), x.std(0).clamp_min(1e-6)
                z = (x - mu) / sd
                cov = z.t() @ z / max(z.shape[0] - 1, 1)
                cov = 0.5 * cov + 0.5 * torch.eye(cov.shape[0], dtype=cov.dtype)  # shrinkage 0.5 to the identity
                fitted[key] = (mu, sd, z, torch.linalg.inv(cov))
            return fitted[key]

        def maps(s: KnnScorer, idx: Idx, bank: Idx) -> list[torch.Tensor]:
            mu, sd, zb, prec = fit(bank)
            out = []
            for i in idx.tolist():
                z = (g[i].double() - mu) / sd
                knn = torch.cdist(z[None], zb)[0].topk(3, largest=False).values.mean()
                maha = ((z @ prec) * z).sum().clamp_min(0.0).sqrt()
                m = s(e[i : i + 1])
                out.append(torch.stack([m, torch.full_like(m, float(knn)), torch.full_like(m, float(maha))]))
            return out

        names = ("kNN", "global kNN", "global Gaussian")
        return Variant(
            "today's kNN and an image-level signal on the mean- and std-pooled patch features "
            "(standardised by the bank images): mean distance to the 3 nearest bank images, or a "
            "Mahalanobis distance (covariance shrunk 0.5 to the identity)",
            lambda idx: _patches(e[idx]),
            maps,
            signal_norms=("cell", "none", "none"),
            fusions=fusion_rules(names, [(0, 1), (0, 2)]),
        )

    def inorm_fused(kind: str) -> Callable[[], Variant]:
        def make() -> Variant:
            e = cache.get("feats_224.npz")
            n = instance_norm(e, kind)
            fitted: dict[bytes, KnnScorer] = {}

            def maps(s: KnnScorer, idx: Idx, bank: Idx) -> list[torch.Tensor]:
                key = bank.tobytes()
                if key not in fitted:
                    fitted[key] = fit_knn(
                        _patches(n[bank])[:, :, None, None], coreset_size=BANK, projection_dim=64, seed=0
                    )
                t = fitted[key]
                return [torch.stack([s(e[i : i + 1]), t(n[i : i + 1])]) for i in idx.tolist()]

            names = ("kNN", f"kNN on instance-normalised ({kind}) features")
            return Variant(
                f"today's kNN and a second kNN on per-image normalised ({kind}) features, fused",
                lambda idx: _patches(e[idx]),
                maps,
                signal_norms=("cell", "cell"),
                fusions=fusion_rules(names, [(0, 1)]),
            )

        return make

    def two_inputs(a_src: str, b_src: str, names: tuple[str, str]) -> Callable[[], Variant]:
        """Issue 12i: one kNN on each input's features, each on its own coreset bank of the same fit
        goods, each map position-normalised and divided by its own reference level, then fused."""

        def make() -> Variant:
            e, q = cache.get(a_src), cache.get(b_src)
            fitted: dict[bytes, KnnScorer] = {}

            def maps(s: KnnScorer, idx: Idx, bank: Idx) -> list[torch.Tensor]:
                key = bank.tobytes()
                if key not in fitted:
                    fitted[key] = fit_knn(
                        _patches(q[bank])[:, :, None, None], coreset_size=BANK, projection_dim=64, seed=0
                    )
                t = fitted[key]
                return [torch.stack([s(e[i : i + 1]), t(q[i : i + 1])]) for i in idx.tolist()]

            return Variant(
                f"today's kNN on {a_src} and a second kNN on {b_src}, each on its own 8,192-patch bank, fused",
                lambda idx: _patches(e[idx]),
                maps,
                signal_norms=("cell", "cell"),
                fusions=fusion_rules(names, [(0, 1)]),
                work=lambda _n: 2 * 14 * 14 * BANK,
            )

        return make

    def positional(source: str, radius: int) -> Callable[[], Variant]:
        """Issue 12i: position-conditioned kNN, every fit good's every patch kept (no coreset), each
        query cell searching only the bank cells within +-radius of its own position."""

        def make() -> Variant:
            e = cache.get(source)

            def maps(_s: None, idx: Idx, bank: Idx) -> list[torch.Tensor]:
                return list(local_knn(e[idx], e[bank], radius)[:, None])

            h, w = int(e.shape[-2]), int(e.shape[-1])
            return Variant(
                f"position-conditioned kNN on {source}: each query cell against all fit goods' patches "
                f"at cells within +-{radius} of it (no coreset)",
                lambda idx: _patches(e[idx]),
                maps,
                norms=("cell", "none"),
                knn_bank=False,
                work=lambda n: local_knn_work(h, w, radius, n),
            )

        return make

    def cell_coreset(source: str, size: int) -> Callable[[], Variant]:
        """Issue 12j's ``knn_cell`` with ``cell_bank_size``: r = 0, a greedy coreset per cell."""

        def make() -> Variant:
            e = cache.get(source)

            def maps(_s: None, idx: Idx, bank: Idx) -> list[torch.Tensor]:
                return list(cell_coreset_knn(e[idx], e[bank], size)[:, None])

            h, w = int(e.shape[-2]), int(e.shape[-1])
            return Variant(
                f"position-conditioned kNN on {source}: each query cell against a greedy coreset of "
                f"{size} fit-good patches from the same cell (knn_cell, cell_bank_size {size})",
                lambda idx: _patches(e[idx]),
                maps,
                norms=("cell",),
                knn_bank=False,
                work=lambda n: h * w * min(n, size),
            )

        return make

    def pca(source: str, dim: int, residual: bool) -> Callable[[], Variant]:
        """Issue 12m: the same coreset bank, searched in its top ``dim`` principal directions (fitted
        on the fold's bank); query patches projected alike. Fewer dimensions, a cheaper search. With
        ``residual`` the query's squared distance from the bank's principal subspace is added, as
        ``training.anomaly.KnnScorer`` does with a basis."""

        def make() -> Variant:
            e = cache.get(source)
            held: dict[int, tuple[KnnScorer, KnnScorer]] = {}  # keeps ``s`` alive: ids stay unique

            def maps(s: KnnScorer, idx: Idx, _bank: Idx) -> list[torch.Tensor]:
                if id(s) not in held:
                    bank = s.bank.contiguous()
                    basis = pca_basis(bank, dim)
                    projected = KnnScorer(bank, basis)
                    if not residual:
                        projected.centre = projected.centre_in = None  # the search alone, no query residual
                    held[id(s)] = (s, projected)
                return [held[id(s)][1](e[i : i + 1])[None] for i in idx.tolist()]

            how = "plus the query's residual outside them" if residual else "alone"
            return Variant(
                f"today's kNN on {source} searched in the bank's top {dim} principal directions ({how})",
                lambda idx: _patches(e[idx]),
                maps,
            )

        return make

    return {
        **{f"pca_r{d}": pca("feats_224.npz", d, False) for d in (32, 48, 64, 96, 128)},
        **{f"pca_equalize_{d}": pca("feats_224_pm_equalize.npz", d, False) for d in (32, 48, 64, 96, 128)},
        **{f"pcares_r{d}": pca("feats_224.npz", d, True) for d in (32, 48, 64, 96, 128)},
        **{f"pcares_equalize_{d}": pca("feats_224_pm_equalize.npz", d, True) for d in (32, 48, 64, 96, 128)},
        "cellcs_r0_16": cell_coreset("feats_224.npz", 16),
        "cellcs_r0_32": cell_coreset("feats_224.npz", 32),
        "cellcs_r0_64": cell_coreset("feats_224.npz", 64),
        "cellcs_r0_128": cell_coreset("feats_224.npz", 128),
        "cellcs_equalize_r0_16": cell_coreset("feats_224_pm_equalize.npz", 16),
        "cellcs_equalize_r0_32": cell_coreset("feats_224_pm_equalize.npz", 32),
        "cellcs_equalize_r0_64": cell_coreset("feats_224_pm_equalize.npz", 64),
        "cellcs_equalize_r0_128": cell_coreset("feats_224_pm_equalize.npz", 128),
        "fused_raw_equalize": two_inputs("feats_224.npz", "feats_224_pm_equalize.npz", ("kNN raw", "kNN equalised")),
        "poscond_r0": positional("feats_224.npz", 0),
        "poscond_r1": positional("feats_224.npz", 1),
        "poscond_r2": positional("feats_224.npz", 2),
        "poscond_r3": positional("feats_224.npz", 3),
        "poscond_equalize_r0": positional("feats_224_pm_equalize.npz", 0),
        "poscond_equalize_r1": positional("feats_224_pm_equalize.npz", 1),
        "poscond_equalize_r2": positional("feats_224_pm_equalize.npz", 2),
        "poscond_equalize_r3": positional("feats_224_pm_equalize.npz", 3),
        "photo_meanstd": photo("meanstd"),
        "photo_clahe": photo("clahe"),
        "photo_equalize": photo("equalize"),
        "inorm_mean": inorm("mean"),
        "inorm_std": inorm("std"),
        "inorm_mean_fused": inorm_fused("mean"),
        "selfsim": selfsim("feats_224.npz", (1, 4, 16)),
        "selfsim_meanstd": selfsim("feats_224_pm_meanstd.npz", (1, 4, 16)),
        "selfsim_equalize": selfsim("feats_224_pm_equalize.npz", (16,)),
        "selfsim16": selfsim("feats_224.npz", (16,)),
        "photo_equalize_inorm_mean": inorm("mean", "feats_224_pm_equalize.npz"),
        "global": global_signals,
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

    def fit(bank: Idx) -> KnnScorer | None:
        if not v.knn_bank:
            return None
        return fit_knn(v.bank(bank)[:, :, None, None], coreset_size=BANK, projection_dim=64, seed=0)

    for k in range(2):
        unseen += v.maps(fit(halves[1 - k]), halves[k], halves[1 - k])
    scorer = fit(fold.fit_goods)
    scored = np.concatenate([fold.ref_goods, fold.test_goods, fold.all_defects])
    return unseen, v.maps(scorer, scored, fold.fit_goods)


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


Rule = tuple[str, float, str]  # (reduction or fusion rule, blur in cells, position norm)


def signal_maps(
    v: Variant, unseen: list[torch.Tensor], scored: list[torch.Tensor], *, blur_cells: float, n_ref: int
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per-signal maps ``[S, h, w]``: each signal position-normalised by its own norm (learnt on the
    unseen fit goods), blurred and divided by its reference level (``REF_Q`` of the reference
    goods' map maxima), for the unseen fit goods and for the scored images."""
    out_unseen: list[list[torch.Tensor]] = [[] for _ in unseen]
    out_scored: list[list[torch.Tensor]] = [[] for _ in scored]
    for k, norm in enumerate(v.signal_norms):
        position = PositionScale(norm, [m[k] for m in unseen])
        sc = [blur(position(m[k])[None], blur_cells)[0] for m in scored]
        un = [blur(position(m[k])[None], blur_cells)[0] for m in unseen]
        ref = float(np.quantile([float(m.max()) for m in sc[:n_ref]], REF_Q))
        for lst, maps in ((out_scored, sc), (out_unseen, un)):
            for row, m in zip(lst, maps, strict=True):
                row.append(m / ref)
    return [torch.stack(r) for r in out_unseen], [torch.stack(r) for r in out_scored]


def score_fused(
    unseen: list[torch.Tensor], scored: list[torch.Tensor], rule: FusionRule, *, n_ref: int
) -> tuple[list[torch.Tensor], float, float | None]:
    """One fusion rule on per-signal maps; the fused map's reference level; the weight chosen on goods."""
    weight = goods_weight(unseen, rule) if rule[1] == "w_goods" else None
    maps = [fuse(m, rule, weight) for m in scored]
    return maps, float(np.quantile([float(m.max()) for m in maps[:n_ref]], REF_Q)), weight


class Tally:
    """Per-rule results of one variant over the folds evaluated so far."""

    def __init__(self, name: str, v: Variant) -> None:
        self.name, self.v = name, v
        if v.fusions:
            self.rules: list[Rule] = [(r, b, "per signal") for r in v.fusions for b in v.blurs]
        else:
            self.rules = [(r, b, n) for r in v.reductions for b in v.blurs for n in v.norms]
        self.weights: dict[Rule, list[float]] = {rule: [] for rule in self.rules}
        self.aucs: dict[Rule, list[float]] = {rule: [] for rule in self.rules}
        self.frrs: dict[Rule, list[float]] = {rule: [] for rule in self.rules}
        self.loc: dict[Rule, list[tuple[np.ndarray, np.ndarray, str]]] = {rule: [] for rule in self.rules}
        self.folds: list[int] = []
        self.secs: list[float] = []
        self.work: list[int] = []

    def add_fold(self, fold: Fold, labels: npt.NDArray[np.str_], masks: list[npt.NDArray[np.uint8]] | None) -> None:
        t0 = time.perf_counter()
        unseen, scored = fold_raw_maps(self.v, fold)
        self.secs.append(time.perf_counter() - t0)
        self.folds.append(fold.k)
        if self.v.work is not None:
            self.work.append(self.v.work(fold.fit_goods.size))
        n_ref, n_good = fold.ref_goods.size, fold.test_goods.size
        signals = {
            b: signal_maps(self.v, unseen, scored, blur_cells=b, n_ref=n_ref) for b in self.v.blurs if self.v.fusions
        }
        for rule in self.rules:
            reduction, blur_cells, norm = rule
            if self.v.fusions:
                maps, ref, weight = score_fused(*signals[blur_cells], self.v.fusions[reduction], n_ref=n_ref)
                if weight is not None:
                    self.weights[rule].append(weight)
            else:
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
            if self.work:
                row["knn_distances_per_image_per_fold"] = self.work
                row["knn_distances_per_image_today"] = 14 * 14 * BANK
            if self.weights[rule]:
                row["fold_weight_on_first_signal_chosen_on_goods"] = self.weights[rule]
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
                "what": "good-only directions (flip TTA / flip bank, finer tap, aspect-kept input, photometric "
                "input normalisation, instance-normalised features, intra-image self-similarity, image-level "
                "signals, raw + equalised kNN fusion, position-conditioned kNN), magnetic-tile TRAIN split, "
                "3-fold CV (a row's 'folds' lists the folds it has run)",
                "command": "python " + " ".join(["bench/anomaly_directions.py", *sys.argv[1:]]),
                "features": "python bench/anomaly_features.py --cache C [--extra views | --extra native | "
                "--photometric meanstd|clahe|equalize]",
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
