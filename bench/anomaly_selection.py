"""Good-only directions and open-set fusion, selected by 3-fold cross-validation on the
magnetic-tile TRAIN split only (never its test split), on features cached by
``bench/anomaly_features.py``.

    python bench/anomaly_features.py --cache /tmp/vinspect-cache
    python bench/anomaly_selection.py --cache /tmp/vinspect-cache [--out bench/results/anomaly_selection_v2.json]
    # issue 12i: the anomaly path and the defect signal on different inputs
    python bench/anomaly_selection.py --cache C --loco-inputs feats_224_pm_equalize.npz+feats_224.npz --out OUT.json

Protocol. Goods and defects are split into 3 folds by ``sha256("fold:" + stem) % 3``. In each
fold the other two folds' goods are the training goods; as in training (``val_percent=20``),
20 % of them (by hash) are held out as *reference goods* and never fitted, and every score is
divided by the 99th percentile of the reference goods' scores (the graph's reference level).
Good-only rows score the fold's goods against **all** train-split defects (none was fitted);
AUROC and the false-reject rate at zero escapes are means (and standard deviations) over folds.

Leave-one-class-out rows: a defect signal (logistic regression on the mean- and max-pooled patch
features, standing in for the fine-tuned defect head, which is too slow to refit 15 times on 2
shared cores) learns good-vs-defect from the training goods and the other folds' defects of
four classes; the fifth class is never seen. Rules, each at an operating point where at most
5 % of the fold's good parts are rejected:

* ``anomaly only``: one threshold on the anomaly score, set on the fold's own goods (an oracle
  5 %);
* ``max, shared budget``: one threshold on ``max(anomaly, defect)``, both in reference units,
  set the same way (labels compete with the anomaly path for the 5 % budget);
* ``anomaly only, reference-calibrated`` and ``max, reference-calibrated``: the same, with the
  threshold set on the reference goods (what a trainer can do), so they compare with:
* ``open set``: the anomaly threshold is calibrated on the reference goods alone for the 5 %
  ceiling and never moved by labels; the defect signal adds a FAIL above its own threshold for
  1 % of the reference goods (so labels can only add detections).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.anomaly import MapHead, fit_cell_knn, fit_knn, position_scale
from vinspect.models.calibration import auroc, false_reject_rate_at_zero_escape

RESULTS = Path(__file__).resolve().parent / "results"
Arr = npt.NDArray[np.float64]
REF_Q = 0.99


def _bucket(tag: str, stem: str, n: int) -> int:
    return int(hashlib.sha256(f"{tag}:{stem}".encode()).hexdigest(), 16) % n


class Fold:
    """Indices of one cross-validation fold."""

    def __init__(self, k: int, labels: npt.NDArray[np.str_], stems: npt.NDArray[np.str_]) -> None:
        fold = np.array([_bucket("fold", s, 3) for s in stems])
        ref = np.array([_bucket("ref", s, 100) < 20 for s in stems])
        good = labels == "good"
        self.k = k
        self.fit_goods = np.flatnonzero(good & (fold != k) & ~ref)
        self.ref_goods = np.flatnonzero(good & (fold != k) & ref)
        self.test_goods = np.flatnonzero(good & (fold == k))
        self.train_defects = np.flatnonzero(~good & (fold != k))
        self.test_defects = np.flatnonzero(~good & (fold == k))
        self.all_defects = np.flatnonzero(~good)


Scorer = Callable[[torch.Tensor], Arr]  # [n, D, h, w] -> per-image scores


def knn_method(
    emb: torch.Tensor,
    fold: Fold,
    *,
    bank: int,
    position_norm: bool,
    cell_bank: int | None = None,
    search_dim: int | None = None,
) -> Scorer:
    """Today's kNN rule; with ``cell_bank`` the training's ``anomaly_method: knn_cell`` with
    ``cell_bank_size: cell_bank`` instead (issue 12l); with ``search_dim`` the training's
    ``knn_search_dim`` (issue 12m)."""
    goods = emb[fold.fit_goods]

    def fit(e: torch.Tensor) -> nn.Module:
        if cell_bank is not None:
            return fit_cell_knn(e, bank_size=cell_bank, projection_dim=64, seed=0)
        return fit_knn(e, coreset_size=bank, projection_dim=64, seed=0, search_dim=search_dim)

    head = MapHead(blur_sigma_px=1.0, grid=(emb.shape[-2], emb.shape[-1]))
    if position_norm:
        head.set_position_scale(position_scale(goods, fit))
    scorer = fit(goods)

    @torch.no_grad()
    def score(x: torch.Tensor) -> Arr:
        return np.array([float(head.raw(scorer(x[i : i + 1])).max()) for i in range(x.shape[0])])

    return score


KnnPart = tuple[MapHead, nn.Module, float]  # position-scaled blur head, bank scorer, reference level


def knn_part(emb: torch.Tensor, fold: Fold, *, bank: int = 8192) -> KnnPart:
    """Today's kNN on one input's features: head (position scale from a 2-fold cross-fit, 1-cell
    blur), bank scorer and the reference level (``REF_Q`` of the reference goods' map maxima)."""
    goods = emb[fold.fit_goods]

    def fit(e: torch.Tensor) -> nn.Module:
        return fit_knn(e, coreset_size=bank, projection_dim=64, seed=0)

    head = MapHead(blur_sigma_px=1.0, grid=(emb.shape[-2], emb.shape[-1]))
    head.set_position_scale(position_scale(goods, fit))
    scorer = fit(goods)
    with torch.no_grad():
        ref = [float(head.raw(scorer(emb[i : i + 1])).max()) for i in fold.ref_goods.tolist()]
    return head, scorer, float(np.quantile(ref, REF_Q))


def fused_knn_method(parts: list[tuple[slice, KnnPart]], rule: str) -> Scorer:
    """Several kNNs on stacked inputs (channel slices of one embedding), each map position-scaled,
    blurred and divided by its own reference level, fused per cell by ``rule`` (max | mean |
    geomean); the image score is the fused map's maximum."""

    @torch.no_grad()
    def score(x: torch.Tensor) -> Arr:
        out = []
        for i in range(x.shape[0]):
            maps = torch.stack([head.raw(s(x[i : i + 1, sl])) / ref for sl, (head, s, ref) in parts])
            if rule == "max":
                fused = maps.amax(0)
            elif rule == "mean":
                fused = maps.mean(0)
            else:
                fused = maps.clamp_min(0.0).log().mean(0).exp()
            out.append(float(fused.max()))
        return np.array(out)

    return score


class Discriminator(nn.Module):
    """Patch features -> anomaly logit (a linear adaptor then a small MLP, SimpleNet-style)."""

    def __init__(self, dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.adaptor = nn.Linear(dim, dim)
        nn.init.eye_(self.adaptor.weight)
        nn.init.zeros_(self.adaptor.bias)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.adaptor(x)).squeeze(-1)


def _patches(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def discriminator_method(
    emb: torch.Tensor,
    fold: Fold,
    *,
    noise: float | None,
    synth: tuple[torch.Tensor, torch.Tensor] | None,
    epochs: int = 4,
    seed: int = 0,
) -> Scorer:
    """Feature-space noise negatives (``noise`` in standardised units) and/or image-space
    synthetic negatives (``synth``: embeddings and patch masks of synthetic images made from the
    fit goods); positives are the fit goods' patches."""
    torch.manual_seed(seed)
    goods = _patches(emb[fold.fit_goods])
    mean, std = goods.mean(0), goods.std(0).clamp_min(1e-6)
    norm = (goods - mean) / std
    neg = torch.empty(0, goods.shape[1])
    if synth is not None:
        s_emb, s_mask = synth
        p, m = (_patches(s_emb) - mean) / std, s_mask.reshape(-1)
        neg = p[m > 0.3]
        norm = torch.cat([norm, p[m < 0.02]])
    model = Discriminator(goods.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5)
    gen = torch.Generator().manual_seed(seed)
    batch = 1024
    for _ in range(epochs):
        order = torch.randperm(norm.shape[0], generator=gen)
        for start in range(0, norm.shape[0], batch):
            x = norm[order[start : start + batch]]
            negs = []
            if noise is not None:
                negs.append(model.adaptor(x) + torch.randn(x.shape, generator=gen) * noise)
            if neg.shape[0]:
                pick = torch.randint(neg.shape[0], (x.shape[0],), generator=gen)
                negs.append(model.adaptor(neg[pick]))
            true = model.mlp(model.adaptor(x)).squeeze(-1)
            fake = model.mlp(torch.cat(negs)).squeeze(-1)
            loss = torch.clamp(0.5 - true, min=0).mean() + torch.clamp(0.5 + fake, min=0).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    head = MapHead(blur_sigma_px=1.0, grid=(emb.shape[-2], emb.shape[-1]))

    @torch.no_grad()
    def score(x: torch.Tensor) -> Arr:
        out = []
        for i in range(x.shape[0]):
            p = (_patches(x[i : i + 1]) - mean) / std
            amap = nn.functional.softplus(-model(p)).reshape(x.shape[-2], x.shape[-1])  # positive, monotone
            out.append(float(head.raw(amap).max()))
        return np.array(out)

    return score


def _ref(scores_ref: Arr) -> float:
    return float(np.quantile(scores_ref, REF_Q))


def good_only_row(
    name: str, build: Callable[[Fold], Scorer], emb: torch.Tensor, folds: list[Fold], cache: dict[str, Any]
) -> dict[str, Any]:
    aucs, frrs, secs = [], [], []
    per_fold = []
    for fold in folds:
        started = time.perf_counter()
        score = build(fold)
        fit_s = time.perf_counter() - started
        ref = _ref(score(emb[fold.ref_goods]))
        g = score(emb[fold.test_goods]) / ref
        d = score(emb[fold.all_defects]) / ref
        per_fold.append({"goods": g, "defects": d})
        aucs.append(auroc(g, d))
        frrs.append(false_reject_rate_at_zero_escape(g, d))
        secs.append(fit_s)
    cache[name] = per_fold
    row = {
        "variant": name,
        "cv_auroc": float(np.mean(aucs)),
        "cv_auroc_std": float(np.std(aucs)),
        "cv_frr_at_zero_escape": float(np.mean(frrs)),
        "cv_frr_at_zero_escape_std": float(np.std(frrs)),
        "fold_auroc": [round(a, 4) for a in aucs],
        "fold_frr_at_zero_escape": [round(z, 4) for z in frrs],
        "fit_s_per_fold_shared": round(float(np.mean(secs)), 1),
    }
    print(json.dumps(row), flush=True)
    return row


def _global(emb: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    z = (emb - mean[None, :, None, None]) / std[None, :, None, None]
    return torch.cat([z.mean(dim=(2, 3)), z.amax(dim=(2, 3))], dim=1)


def defect_signal(
    emb: torch.Tensor, goods: npt.NDArray[np.int64], defects: npt.NDArray[np.int64], *, epochs: int = 300, seed: int = 0
) -> Callable[[npt.NDArray[np.int64]], Arr]:
    """Good-vs-defect logistic regression on pooled patch features; returns a logit scorer."""
    torch.manual_seed(seed)
    patches = _patches(emb[goods])
    mean, std = patches.mean(0), patches.std(0).clamp_min(1e-6)
    x = _global(emb[np.concatenate([goods, defects])], mean, std)
    y = torch.cat([torch.zeros(goods.size), torch.ones(defects.size)])
    lin = nn.Linear(x.shape[1], 1)
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=epochs)
    pos_weight = torch.tensor(goods.size / max(defects.size, 1))

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(lin(x).squeeze(-1), y, pos_weight=pos_weight)
        loss = loss + 1e-3 * (lin.weight**2).sum()
        loss.backward()
        return loss

    opt.step(closure)

    @torch.no_grad()
    def score(idx: npt.NDArray[np.int64]) -> Arr:
        return lin(_global(emb[idx], mean, std)).squeeze(-1).double().numpy()

    return score


def _at_most(goods: Arr, rate: float) -> float:
    """Lowest threshold with at most ``floor(rate * n)`` goods at or above it."""
    ordered = np.sort(goods)[::-1]
    k = int(np.floor(rate * goods.size))
    return float(np.nextafter(ordered[k], np.inf)) if k < goods.size else float(ordered[-1])


def loco_rows(
    emb: torch.Tensor,
    labels: npt.NDArray[np.str_],
    folds: list[Fold],
    anomaly: str,
    cache: dict[str, Any],
    build: Callable[[Fold], Scorer],
    *,
    defect_emb: torch.Tensor | None = None,
    anomaly_frr: float = 0.05,
) -> list[dict[str, Any]]:
    """Leave-one-class-out detection per rule (see the module docstring). ``emb`` feeds the anomaly
    path (``build``); ``defect_emb`` (default: the same features) feeds the defect signal, so the
    two paths can see differently pre-processed inputs; ``anomaly_frr`` is the share of reference
    goods the anomaly thresholds may reject (the oracle and fused rules use it too)."""
    classes = sorted(set(labels) - {"good"})
    demb = emb if defect_emb is None else defect_emb
    rules = (
        "anomaly only",
        "max, shared budget",
        "anomaly only, reference-calibrated",
        "max, reference-calibrated",
        "open set",
    )
    det: dict[tuple[str, str], list[float]] = {}
    frr: dict[tuple[str, str], list[float]] = {}
    for fold in folds:
        score = build(fold)
        ref = _ref(score(emb[fold.ref_goods]))
        a_goods = score(emb[fold.test_goods]) / ref
        a_def = score(emb[fold.test_defects]) / ref
        a_refg = score(emb[fold.ref_goods]) / ref
        for held in classes:
            labelled = fold.train_defects[labels[fold.train_defects] != held]
            signal = defect_signal(demb, fold.fit_goods, labelled)
            c_ref = signal(fold.ref_goods)
            c_unit = float(np.quantile(c_ref, REF_Q) - np.median(c_ref))
            c_goods = 1.0 + (signal(fold.test_goods) - np.quantile(c_ref, REF_Q)) / c_unit
            c_def = 1.0 + (signal(fold.test_defects) - np.quantile(c_ref, REF_Q)) / c_unit
            c_refg = 1.0 + (c_ref - np.quantile(c_ref, REF_Q)) / c_unit
            is_held = labels[fold.test_defects] == held
            t = _at_most(a_goods, anomaly_frr)
            fused_g, fused_d = np.maximum(a_goods, c_goods), np.maximum(a_def, c_def)
            tf = _at_most(fused_g, anomaly_frr)
            ta, tc = _at_most(a_refg, anomaly_frr), _at_most(c_refg, 0.01)
            tfr = _at_most(np.maximum(a_refg, c_refg), anomaly_frr)
            outcomes = {
                "anomaly only": (a_goods >= t, a_def >= t),
                "max, shared budget": (fused_g >= tf, fused_d >= tf),
                "anomaly only, reference-calibrated": (a_goods >= ta, a_def >= ta),
                "max, reference-calibrated": (fused_g >= tfr, fused_d >= tfr),
                "open set": ((a_goods >= ta) | (c_goods >= tc), (a_def >= ta) | (c_def >= tc)),
            }
            for rule, (fail_g, fail_d) in outcomes.items():
                det.setdefault((rule, held), []).append(float(fail_d[is_held].mean()))
                det.setdefault((rule, "labelled classes"), []).append(float(fail_d[~is_held].mean()))
                frr.setdefault((rule, held), []).append(float(fail_g.mean()))
    rows = []
    for rule in rules:
        row: dict[str, Any] = {"rule": rule, "anomaly": anomaly}
        if anomaly_frr != 0.05:
            row["anomaly_frr_on_goods"] = anomaly_frr
        for held in classes:
            row[f"held_out_{held}_detected"] = round(float(np.mean(det[(rule, held)])), 3)
            row[f"held_out_{held}_detected_std"] = round(float(np.std(det[(rule, held)])), 3)
            row[f"held_out_{held}_fold_detected"] = [round(x, 3) for x in det[(rule, held)]]
            row[f"good_rejected_when_{held}_held_out"] = round(float(np.mean(frr[(rule, held)])), 3)
            row[f"good_rejected_when_{held}_held_out_folds"] = [round(x, 3) for x in frr[(rule, held)]]
        row["labelled_classes_detected"] = round(float(np.mean(det[(rule, "labelled classes")])), 3)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def lift(x: Arr, at: float) -> Arr:
    """``training.fusion.lift`` on numpy: piecewise-linear and increasing on [0, 1], ``at -> 0.5``."""
    at = min(max(at, 1e-6), 1.0 - 1e-6)
    return np.where(x < at, x * (0.5 / at), 0.5 + (x - at) * (0.5 / (1.0 - at)))


def labelled_rows(
    emb: torch.Tensor,
    defect_emb: torch.Tensor,
    folds: list[Fold],
    build: Callable[[Fold], Scorer],
    *,
    anomaly_frr: float,
    label_frr: float = 0.01,
) -> list[dict[str, Any]]:
    """Every class labelled: the fold's goods against the fold's defects, the defect signal trained
    on the fit goods and the other folds' defects of all five classes (on ``defect_emb``), the
    anomaly path on ``emb``. The open-set score is what the graph computes (``training.fusion``):
    the anomaly score squashed ``r / (1 + r)`` and P(defect), each lifted so that its own threshold
    (``anomaly_frr`` / ``label_frr`` of the reference goods) lands on 0.5, fused by their max; its
    operating point is 0.5 (goods rejected, defects caught there)."""
    rules = ("anomaly only", "defect signal alone", "open set")
    auc: dict[str, list[float]] = {r: [] for r in rules}
    zero: dict[str, list[float]] = {r: [] for r in rules}
    rejected: list[float] = []
    caught: list[float] = []
    for fold in folds:
        score = build(fold)
        ref = _ref(score(emb[fold.ref_goods]))
        a_ref, a_g, a_d = (score(emb[i]) / ref for i in (fold.ref_goods, fold.test_goods, fold.test_defects))
        signal = defect_signal(defect_emb, fold.fit_goods, fold.train_defects)
        c_ref, c_g, c_d = (
            1.0 / (1.0 + np.exp(-signal(i))) for i in (fold.ref_goods, fold.test_goods, fold.test_defects)
        )
        ta = _at_most(a_ref / (1.0 + a_ref), anomaly_frr)
        tc = _at_most(c_ref, label_frr)
        f_g = np.maximum(lift(a_g / (1.0 + a_g), ta), lift(c_g, tc))
        f_d = np.maximum(lift(a_d / (1.0 + a_d), ta), lift(c_d, tc))
        for rule, (g, d) in zip(rules, ((a_g, a_d), (c_g, c_d), (f_g, f_d)), strict=True):
            auc[rule].append(auroc(g, d))
            zero[rule].append(false_reject_rate_at_zero_escape(g, d))
        rejected.append(float((f_g >= 0.5).mean()))
        caught.append(float((f_d >= 0.5).mean()))
    rows = []
    for rule in rules:
        row: dict[str, Any] = {
            "rule": rule,
            "anomaly_frr_on_reference_goods": anomaly_frr,
            "label_frr_on_reference_goods": label_frr,
            "cv_auroc": round(float(np.mean(auc[rule])), 4),
            "cv_auroc_std": round(float(np.std(auc[rule])), 4),
            "fold_auroc": [round(x, 4) for x in auc[rule]],
            "cv_frr_at_zero_escape": round(float(np.mean(zero[rule])), 4),
            "cv_frr_at_zero_escape_std": round(float(np.std(zero[rule])), 4),
            "fold_frr_at_zero_escape": [round(x, 4) for x in zero[rule]],
        }
        if rule == "open set":
            row["fold_good_rejected_at_operating_point"] = [round(x, 4) for x in rejected]
            row["fold_defects_caught_at_operating_point"] = [round(x, 4) for x in caught]
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def paired_inputs(
    cache_dir: Path,
    pairs: list[tuple[str, str]],
    labels: npt.NDArray[np.str_],
    stems: npt.NDArray[np.str_],
    folds: list[Fold],
    frrs: list[float],
) -> list[dict[str, Any]]:
    """For each (anomaly features, defect-signal features) pair of cached files: the good-only AUROC
    of the anomaly path, the leave-one-class-out rows and the every-class-labelled rows, at each
    anomaly false-reject share in ``frrs``. One kNN per fold and anomaly input, reused."""
    loaded: dict[str, torch.Tensor] = {}
    knns: dict[tuple[str, int], Scorer] = {}

    def features(name: str) -> torch.Tensor:
        if name not in loaded:
            data = np.load(cache_dir / name)
            if not (data["stem"] == stems).all():
                raise SystemExit(f"{name}: cached images are in another order")
            loaded[name] = torch.from_numpy(data["emb"].astype(np.float32))
        return loaded[name]

    fitted: dict[tuple[str, int], KnnPart] = {}
    out = []
    for a_name, d_name in pairs:
        d_emb = features(d_name)
        if a_name.split(":")[0] in ("cell", "pca"):
            # cell:N:FILE -> knn_cell with N patches per cell (issue 12l);
            # pca:N:FILE -> the kNN searched in N principal directions plus the residual (issue 12m)
            kind, n, file = a_name.split(":")
            a_emb = features(file)
            option = {"cell_bank": int(n)} if kind == "cell" else {"search_dim": int(n)}

            def build(
                f: Fold, a_name: str = a_name, a_emb: torch.Tensor = a_emb, option: dict[str, int] = option
            ) -> Scorer:
                if (a_name, f.k) not in knns:
                    knns[a_name, f.k] = knn_method(a_emb, f, bank=8192, position_norm=True, **option)
                return knns[a_name, f.k]

        elif ":" in a_name:  # RULE:FILE:FILE -> the kNNs of both inputs fused by RULE
            rule, *names = a_name.split(":")
            a_emb = torch.cat([features(n) for n in names], dim=1)
            ends = np.cumsum([features(n).shape[1] for n in names])
            slices = [slice(int(e - features(n).shape[1]), int(e)) for n, e in zip(names, ends, strict=True)]

            def build(
                f: Fold, a_name: str = a_name, rule: str = rule, names: list[str] = names, slices: list[slice] = slices
            ) -> Scorer:
                if (a_name, f.k) not in knns:
                    for n in names:
                        if (n, f.k) not in fitted:
                            fitted[n, f.k] = knn_part(features(n), f)
                    parts = [(sl, fitted[n, f.k]) for n, sl in zip(names, slices, strict=True)]
                    knns[a_name, f.k] = fused_knn_method(parts, rule)
                return knns[a_name, f.k]

        else:
            a_emb = features(a_name)

            def build(f: Fold, a_name: str = a_name, a_emb: torch.Tensor = a_emb) -> Scorer:
                if (a_name, f.k) not in knns:
                    knns[a_name, f.k] = knn_method(a_emb, f, bank=8192, position_norm=True)
                return knns[a_name, f.k]

        started = time.perf_counter()
        good_only = good_only_row(f"patch kNN on {a_name} (today's rule)", build, a_emb, folds, {})
        entry: dict[str, Any] = {"anomaly_features": a_name, "defect_signal_features": d_name, "good_only": good_only}
        for frr in frrs:
            what = f"anomaly on {a_name}, defect signal on {d_name}"
            entry[f"leave_one_class_out_anomaly_at_{frr:g}"] = loco_rows(
                a_emb, labels, folds, what, {}, build, defect_emb=d_emb, anomaly_frr=frr
            )
            entry[f"every_class_labelled_anomaly_at_{frr:g}"] = labelled_rows(
                a_emb, d_emb, folds, build, anomaly_frr=frr
            )
        entry["wall_s_shared"] = round(time.perf_counter() - started, 1)
        out.append(entry)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--out", type=Path, default=RESULTS / "anomaly_selection_v2.json")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="", help="comma-separated row-name fragments to run (default: all)")
    ap.add_argument("--no-loco", action="store_true", help="skip leave-one-class-out")
    ap.add_argument(
        "--ensemble",
        default="",
        help="comma-separated extra cached feature files (e.g. "
        "feats_320.npz,feats_224_lite0.npz): a kNN row each, then max with the first row",
    )
    ap.add_argument(
        "--trunk",
        choices=("mobilenet_v2", "lite0"),
        default="mobilenet_v2",
        help="which cached trunk features (the discriminator rows need mobilenet_v2)",
    )
    ap.add_argument(
        "--loco-inputs",
        default="",
        help="comma-separated ANOMALY+DEFECT pairs of cached feature files (e.g. "
        "feats_224_pm_equalize.npz+feats_224.npz): only the leave-one-class-out and every-class-labelled "
        "open-set rows for each pair, the anomaly path on the first file, the defect signal on the second; "
        "ANOMALY may be RULE:FILE:FILE (rule max, mean or geomean): one kNN per file, each map divided by "
        "its own reference level, fused per cell; or cell:N:FILE: the knn_cell scorer with N patches per cell; "
        "or pca:N:FILE: the kNN searched in N principal directions plus the residual (knn_search_dim)",
    )
    ap.add_argument(
        "--anomaly-frr", default="0.05", help="with --loco-inputs: comma-separated anomaly threshold shares"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.loco_inputs:
        base = np.load(args.cache / f"feats_{args.size}.npz")
        labels, stems = base["label"], base["stem"]
        pairs = [tuple(p.strip().split("+")) for p in args.loco_inputs.split(",") if p.strip()]
        if any(len(p) != 2 for p in pairs):
            raise SystemExit(f"--loco-inputs: expected ANOMALY+DEFECT pairs, got {args.loco_inputs!r}")
        started = time.perf_counter()
        results = paired_inputs(
            args.cache,
            [(a, d) for a, d in pairs],
            labels,
            stems,
            [Fold(k, labels, stems) for k in range(3)],
            [float(x) for x in args.anomaly_frr.split(",")],
        )
        doc = {
            "what": "Open-set fusion with the anomaly path and the defect signal on differently pre-processed "
            "inputs (magnetic-tile TRAIN split, 3-fold CV): good-only AUROC of the anomaly path, "
            "leave-one-class-out detection and every-class-labelled AUROC per input pair",
            "command": " ".join(["python bench/anomaly_selection.py", *sys.argv[1:]]),
            "features": "python bench/anomaly_features.py --cache C [--photometric equalize]",
            "protocol": __doc__.split("Protocol.")[1].strip() + "\n\n" + (labelled_rows.__doc__ or ""),
            "n": {"goods": int((labels == "good").sum()), "defects": int((labels != "good").sum())},
            "machine": "2-core VM, shared with other jobs (timings are 'shared')",
            "pairs": results,
            "wall_s_shared": round(time.perf_counter() - started, 1),
        }
        args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
        return
    suffix = "" if args.trunk == "mobilenet_v2" else f"_{args.trunk}"
    data = np.load(args.cache / f"feats_{args.size}{suffix}.npz")
    emb = torch.from_numpy(data["emb"].astype(np.float32))
    labels, stems = data["label"], data["stem"]
    synth = np.load(args.cache / f"synth_{args.size}.npz")  # MobileNetV2 features of the synthetic images
    s_emb = torch.from_numpy(synth["emb"].astype(np.float32))
    s_mask = torch.from_numpy(synth["mask"].astype(np.float32))
    s_row = {str(s): i for i, s in enumerate(synth["stem"])}
    folds = [Fold(k, labels, stems) for k in range(3)]

    def synth_of(fold: Fold) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [s_row[str(stems[i])] for i in fold.fit_goods]
        return s_emb[rows], s_mask[rows]

    knn_cache: dict[int, Scorer] = {}

    def knn(f: Fold) -> Scorer:  # fitted once per fold, shared by the good-only and LOCO rows
        if f.k not in knn_cache:
            knn_cache[f.k] = knn_method(emb, f, bank=8192, position_norm=True)
        return knn_cache[f.k]

    variants: dict[str, Callable[[Fold], Scorer]] = {
        "baseline: patch kNN, coreset 8192, position norm (today's TrainConfig)": knn,
        "feature-space noise discriminator (SimpleNet-style), sigma 0.5": lambda f: discriminator_method(
            emb, f, noise=0.5, synth=None
        ),
        "feature-space noise discriminator (SimpleNet-style), sigma 1.0": lambda f: discriminator_method(
            emb, f, noise=1.0, synth=None
        ),
        "image-space synthetic anomalies (noise-blob texture paste) discriminator": lambda f: discriminator_method(
            emb, f, noise=None, synth=synth_of(f)
        ),
        "image-space synthetic + feature noise 0.5 discriminator": lambda f: discriminator_method(
            emb, f, noise=0.5, synth=synth_of(f)
        ),
    }
    features = {name: emb for name in variants}
    for extra in [e.strip() for e in args.ensemble.split(",") if e.strip()]:
        loaded = np.load(args.cache / extra)
        if not (loaded["stem"] == stems).all():
            raise SystemExit(f"{extra}: cached images are in another order")
        other = torch.from_numpy(loaded["emb"].astype(np.float32))
        name = f"patch kNN on {extra} (coreset 8192, position norm)"
        variants[name] = lambda f, other=other: knn_method(other, f, bank=8192, position_norm=True)
        features[name] = other
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    cache: dict[str, Any] = {}
    rows = []
    started = time.perf_counter()
    for name, build in variants.items():
        if only and not any(o in name for o in only):
            continue
        label = name if name.startswith("patch kNN on ") else f"{args.trunk} {args.size}px: {name}"
        rows.append(good_only_row(label, build, features[name], folds, cache))
    names = list(cache)
    for a in names[1:]:
        base = names[0]
        aucs, frrs = [], []
        for k in range(3):
            g = np.maximum(cache[base][k]["goods"], cache[a][k]["goods"])
            d = np.maximum(cache[base][k]["defects"], cache[a][k]["defects"])
            aucs.append(auroc(g, d))
            frrs.append(false_reject_rate_at_zero_escape(g, d))
        row = {
            "variant": f"max(kNN, {a}) in reference units",
            "cv_auroc": float(np.mean(aucs)),
            "cv_auroc_std": float(np.std(aucs)),
            "cv_frr_at_zero_escape": float(np.mean(frrs)),
            "cv_frr_at_zero_escape_std": float(np.std(frrs)),
            "fold_auroc": [round(x, 4) for x in aucs],
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    loco = [] if args.no_loco else loco_rows(emb, labels, folds, "baseline kNN", cache, knn)
    doc = {
        "what": "Good-only directions and open-set fusion on the magnetic-tile TRAIN split (3-fold CV)",
        "command": f"python bench/anomaly_features.py --cache CACHE --size {args.size} --trunk {args.trunk} && python "
        + " ".join(["bench/anomaly_selection.py", *sys.argv[1:]]),
        "protocol": __doc__.split("Protocol.")[1].strip(),
        "n": {"goods": int((labels == "good").sum()), "defects": int((labels != "good").sum())},
        "machine": "2-core VM, shared with other jobs (timings are 'shared')",
        "good_only": rows,
        "leave_one_class_out": loco,
        "wall_s_shared": round(time.perf_counter() - started, 1),
    }
    args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
