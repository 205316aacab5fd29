"""A patch-level "defect here" head trained on the defect MASKS, measured against today's labelled
path by 3-fold cross-validation on the magnetic-tile TRAIN split only (never its test split).

    python bench/anomaly_features.py --cache C          # feats_224.npz (once)
    python bench/mask_head_cv.py --cache C [--out bench/results/mask_head_cv.json]

Protocol: ``bench/anomaly_selection.Fold`` (fit goods, 20 % reference goods, held-out fold) and
today's anomaly rule re-derived exactly as ``bench/anomaly_directions.py``'s ``baseline`` (kNN to
an 8,192-patch coreset of the fit goods, per-cell position mean from a 2-fold cross-fit, 1-cell
blur, divided by the 99th percentile of the reference goods). Its kNN maps are cached per fold
under ``C`` (``mask_head_knn_fold<k>.pt``) so re-runs only refit the heads.

Signals, each with its own threshold learnt on the fold's reference goods alone (the open-set rule
of ``training/fusion.py``; anomaly at 4 % of them, each labelled signal at 1 %), fused by the max
of the signals lifted so that each threshold lands on 0.5:

* ``anomaly``: today's map, squashed ``r / (1 + r)`` as the graph does;
* ``image head``: good-vs-defect logistic regression on the mean- and max-pooled patch features
  (the stand-in for the fine-tuned defect head that ``anomaly_selection.py`` uses: refitting the
  real head 18 times is too slow for 2 shared cores);
* ``mask head``: a per-patch head on the same 160-d patch embedding the anomaly path uses
  (standardised by the fit goods' patch mean and std), trained with a soft binary cross-entropy
  against the fraction of each 14x14 cell that the defect mask covers (the image squashed to the
  grid, as the graph's resize does), positives weighted to balance the background; fit goods are
  all-background. ``linear``: logistic regression (a 1x1 conv); ``mlp``: 160 -> 64 -> 1; a
  ``_plain`` suffix drops the re-weighting of the defect cells. Its map is blurred by the same
  1-cell Gaussian; its image signal is the map's maximum (``training/mask_head.py`` ships the
  ``linear`` and ``mlp`` heads with the same recipe; initial weights are drawn in another order).

Reported per fold: labelled image AUROC and goods rejected at zero escapes (the fold's goods
against the fold's defects, every class labelled); leave-one-class-out detection of the held-out
class (both labelled heads trained on the other four classes) with the goods rejected and the
labelled classes detected at the reference-calibrated thresholds; pixel AUROC and the share of
defective tiles whose hottest point lies in the mask dilated by 15 px
(``bench/localisation_bench.score_variant``), pooled over folds, for the anomaly map, the mask
head's map, their open-set fusion ``max(lift(anomaly), lift(mask))`` and the geometric mean of the
two lifted maps; and the hottest point of the two fused maps of each held-out class's tiles with
the mask head trained on the other four classes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.anomaly_aggregation import blur
from bench.anomaly_directions import Cache, build_variants, fold_raw_maps, load_masks, score_maps
from bench.anomaly_selection import Fold, _at_most, defect_signal
from bench.localisation_bench import score_variant
from vinspect.models.calibration import auroc, false_reject_rate_at_zero_escape

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_DATA = Path("/work/shared/datasets/magnetic-tile")
ANOMALY_FRR, LABEL_FRR = 0.04, 0.01
Idx = npt.NDArray[np.int64]
Arr = npt.NDArray[np.float64]


def lift(x: Arr, at: float) -> Arr:
    """``training.fusion.lift`` on numpy: piecewise-linear, ``at -> 0.5``."""
    at = min(max(at, 1e-6), 1.0 - 1e-6)
    return np.where(x < at, x * (0.5 / at), 0.5 + (x - at) * (0.5 / (1.0 - at)))


def cell_cover(masks: list[npt.NDArray[np.uint8]], grid: tuple[int, int]) -> torch.Tensor:
    """Fraction of each grid cell the mask covers (image squashed to the grid) ``[N, h, w]``."""
    return torch.from_numpy(
        np.stack([cv2.resize(m.astype(np.float32), (grid[1], grid[0]), interpolation=cv2.INTER_AREA) for m in masks])
    )


class MaskHead:
    """Per-patch 'defect here' head on standardised patch features; ``maps(idx)`` -> ``[n, h, w]`` in 0..1."""

    def __init__(
        self, emb: torch.Tensor, cover: torch.Tensor, goods: Idx, defects: Idx, *, kind: str, seed: int = 0
    ) -> None:
        torch.manual_seed(seed)
        self.emb = emb
        gp = emb[goods].permute(0, 2, 3, 1).reshape(-1, emb.shape[1])
        self.mean, self.std = gp.mean(0), gp.std(0).clamp_min(1e-6)
        idx = np.concatenate([goods, defects])
        x = self._x(emb[idx])
        y = torch.cat([torch.zeros(goods.size * emb.shape[2] * emb.shape[3]), cover[defects].reshape(-1)])
        pos = float(y.sum())
        weight = torch.where(y > 0, torch.tensor((y.numel() - pos) / max(pos, 1.0)), torch.tensor(1.0))
        weight = weight / weight.mean()
        if kind.endswith("_plain"):  # no re-weighting of the defect cells
            weight = torch.ones_like(y)
        if kind.startswith("linear"):
            self.net: nn.Module = nn.Linear(x.shape[1], 1)
            opt = torch.optim.LBFGS(self.net.parameters(), max_iter=200, line_search_fn="strong_wolfe")

            def closure() -> torch.Tensor:
                opt.zero_grad()
                loss = nn.functional.binary_cross_entropy_with_logits(self.net(x).squeeze(-1), y, weight=weight)
                loss = loss + 1e-3 * (self.net.weight**2).sum()  # type: ignore[operator]
                loss.backward()
                return loss

            opt.step(closure)
        else:
            self.net = nn.Sequential(nn.Linear(x.shape[1], 64), nn.ReLU(), nn.Linear(64, 1))
            opt2 = torch.optim.AdamW(self.net.parameters(), lr=3e-3, weight_decay=1e-3)
            gen = torch.Generator().manual_seed(seed)
            for _ in range(8):
                order = torch.randperm(y.numel(), generator=gen)
                for s in range(0, y.numel(), 2048):
                    b = order[s : s + 2048]
                    loss = nn.functional.binary_cross_entropy_with_logits(
                        self.net(x[b]).squeeze(-1), y[b], weight=weight[b]
                    )
                    opt2.zero_grad()
                    loss.backward()
                    opt2.step()
        self.net.eval()

    def _x(self, e: torch.Tensor) -> torch.Tensor:
        return ((e.permute(0, 2, 3, 1) - self.mean) / self.std).reshape(-1, e.shape[1])

    @torch.no_grad()
    def maps(self, idx: Idx) -> torch.Tensor:
        e = self.emb[idx]
        p = torch.sigmoid(self.net(self._x(e)).reshape(e.shape[0], e.shape[2], e.shape[3]))
        return blur(p, 1.0)


def image_head(emb: torch.Tensor, goods: Idx, defects: Idx) -> Callable[[Idx], Arr]:
    logit = defect_signal(emb, goods, defects)
    return lambda idx: 1.0 / (1.0 + np.exp(-logit(idx)))


def knn_maps(cache: Cache, root: Path, fold: Fold) -> tuple[list[torch.Tensor], float]:
    """Today's squashed anomaly maps for ref goods + test goods + all defects, and the reference level."""
    path = root / f"mask_head_knn_fold{fold.k}.pt"
    if path.exists():
        saved = torch.load(path, weights_only=True)
    else:
        t0 = time.perf_counter()
        unseen, scored = fold_raw_maps(build_variants(cache)["baseline"](), fold)
        saved = {"unseen": unseen, "scored": scored}
        torch.save(saved, path)
        print(f"  fold {fold.k}: kNN maps in {time.perf_counter() - t0:.0f} s (shared)", flush=True)
    maps, ref = score_maps(
        saved["unseen"], saved["scored"], reduce=lambda m: m[0], blur_cells=1.0, norm="cell", n_ref=fold.ref_goods.size
    )
    return [(m / ref) / (1.0 + m / ref) for m in maps], ref


def _rate(x: npt.NDArray[np.bool_]) -> float:
    return float(x.mean()) if x.size else float("nan")


def run_fold(
    fold: Fold,
    emb: torch.Tensor,
    labels: npt.NDArray[np.str_],
    cover: torch.Tensor,
    amaps: list[torch.Tensor],
    kinds: list[str],
) -> dict[str, Any]:
    order = np.concatenate([fold.ref_goods, fold.test_goods, fold.all_defects])
    pos = {int(i): j for j, i in enumerate(order)}
    a_img = np.array([float(m.max()) for m in amaps])

    def a_of(idx: Idx) -> Arr:
        return a_img[[pos[int(i)] for i in idx]]

    ta = _at_most(a_of(fold.ref_goods), ANOMALY_FRR)
    out: dict[str, Any] = {"fold": fold.k, "labelled": {}, "loco": {}, "loc": {}}
    g_idx, d_idx = fold.test_goods, fold.test_defects
    a_g, a_d = a_of(g_idx), a_of(d_idx)
    out["labelled"]["anomaly only"] = (a_g, a_d)
    # --- every class labelled ----------------------------------------------------------------------
    img = image_head(emb, fold.fit_goods, fold.train_defects)
    tc = _at_most(img(fold.ref_goods), LABEL_FRR)
    i_g, i_d = lift(img(g_idx), tc), lift(img(d_idx), tc)
    la_g, la_d = lift(a_g, ta), lift(a_d, ta)
    out["labelled"]["open set: anomaly + image head (today's rule, stand-in head)"] = (
        np.maximum(la_g, i_g),
        np.maximum(la_d, i_d),
    )
    for kind in kinds:
        head = MaskHead(emb, cover, fold.fit_goods, fold.train_defects, kind=kind)
        ref_maps = head.maps(fold.ref_goods)
        tm = _at_most(ref_maps.flatten(1).amax(1).double().numpy(), LABEL_FRR)
        m_g = head.maps(g_idx)
        m_d = head.maps(d_idx)
        s_g, s_d = lift(m_g.flatten(1).amax(1).double().numpy(), tm), lift(m_d.flatten(1).amax(1).double().numpy(), tm)
        out["labelled"][f"mask head ({kind}) alone"] = (s_g, s_d)
        out["labelled"][f"open set: anomaly + mask head ({kind})"] = (np.maximum(la_g, s_g), np.maximum(la_d, s_d))
        out["labelled"][f"open set: anomaly + image head + mask head ({kind})"] = (
            np.maximum(np.maximum(la_g, i_g), s_g),
            np.maximum(np.maximum(la_d, i_d), s_d),
        )
        # localisation: the fold's goods (all background) and its held-out defects
        loc_a, loc_m, loc_f, loc_g = [], [], [], []
        for i, mm in zip(np.concatenate([g_idx, d_idx]), torch.cat([m_g, m_d]), strict=True):
            am = amaps[pos[int(i)]].double().numpy()
            sm = mm.double().numpy()
            fused = np.maximum(lift(am, ta), lift(sm, tm))
            loc_a.append(am)
            loc_m.append(sm)
            loc_f.append(fused)
            loc_g.append(np.sqrt(lift(am, ta) * lift(sm, tm)))
        out["loc"][kind] = (loc_a, loc_m, loc_f, loc_g, np.concatenate([g_idx, d_idx]))
    # --- leave one class out -----------------------------------------------------------------------
    for held in sorted(set(labels) - {"good"}):
        seen = fold.train_defects[labels[fold.train_defects] != held]
        is_held = labels[d_idx] == held
        img = image_head(emb, fold.fit_goods, seen)
        tc = _at_most(img(fold.ref_goods), LABEL_FRR)
        i_g, i_d = lift(img(g_idx), tc), lift(img(d_idx), tc)
        rules: dict[str, tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]] = {
            "anomaly only": (la_g >= 0.5, la_d >= 0.5),
            "open set: anomaly + image head (today's rule, stand-in head)": (
                (la_g >= 0.5) | (i_g >= 0.5),
                (la_d >= 0.5) | (i_d >= 0.5),
            ),
        }
        held_maps: dict[str, list[tuple[Any, Any]]] = {}
        for kind in kinds:
            head = MaskHead(emb, cover, fold.fit_goods, seen, kind=kind)
            tm = _at_most(head.maps(fold.ref_goods).flatten(1).amax(1).double().numpy(), LABEL_FRR)
            m_g, m_d = head.maps(g_idx), head.maps(d_idx)
            s_g, s_d = (
                lift(m_g.flatten(1).amax(1).double().numpy(), tm),
                lift(m_d.flatten(1).amax(1).double().numpy(), tm),
            )
            rules[f"open set: anomaly + mask head ({kind})"] = (
                (la_g >= 0.5) | (s_g >= 0.5),
                (la_d >= 0.5) | (s_d >= 0.5),
            )
            rules[f"open set: anomaly + image head + mask head ({kind})"] = (
                (la_g >= 0.5) | (i_g >= 0.5) | (s_g >= 0.5),
                (la_d >= 0.5) | (i_d >= 0.5) | (s_d >= 0.5),
            )
            pairs = [
                (lift(amaps[pos[int(i)]].double().numpy(), ta), lift(m_d[j].double().numpy(), tm), int(i))
                for j, i in enumerate(d_idx)
                if is_held[j]
            ]
            held_maps[kind] = [(np.maximum(a, m), i) for a, m, i in pairs]
            held_maps[kind + ":geo"] = [(np.sqrt(a * m), i) for a, m, i in pairs]
        out["loco"][held] = {
            rule: {
                "held_out_detected": _rate(fd[is_held]),
                "good_rejected": _rate(fg),
                "labelled_classes_detected": _rate(fd[~is_held]),
            }
            for rule, (fg, fd) in rules.items()
        }
        out["loco"][held]["_held_maps"] = held_maps
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument(
        "--kinds", default="linear,mlp", help="mask-head kinds: linear, mlp (+ _plain: no re-weighting of defect cells)"
    )
    ap.add_argument("--folds", default="0,1,2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS / "mask_head_cv.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    cache = Cache(args.cache)
    emb = cache.get("feats_224.npz")
    labels, stems = cache.get("feats_224.npz:label"), cache.get("feats_224.npz:stem")
    masks = load_masks(args.data, stems)
    cover = cell_cover(masks, (emb.shape[2], emb.shape[3]))
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    folds = [Fold(int(k), labels, stems) for k in args.folds.split(",")]
    per_fold = []
    for fold in folds:
        amaps, _ = knn_maps(cache, args.cache, fold)
        t0 = time.perf_counter()
        per_fold.append(run_fold(fold, emb, labels, cover, amaps, kinds))
        print(f"fold {fold.k}: heads in {time.perf_counter() - t0:.0f} s (shared)", flush=True)
    # --- labelled ----------------------------------------------------------------------------------
    labelled = []
    for rule in per_fold[0]["labelled"]:
        aucs = [auroc(*f["labelled"][rule]) for f in per_fold]
        frrs = [false_reject_rate_at_zero_escape(*f["labelled"][rule]) for f in per_fold]
        row = {
            "rule": rule,
            "cv_auroc": round(float(np.mean(aucs)), 4),
            "cv_auroc_std": round(float(np.std(aucs)), 4),
            "fold_auroc": [round(x, 4) for x in aucs],
            "cv_frr_at_zero_escape": round(float(np.mean(frrs)), 4),
            "cv_frr_at_zero_escape_std": round(float(np.std(frrs)), 4),
            "fold_frr_at_zero_escape": [round(x, 4) for x in frrs],
        }
        labelled.append(row)
        print(json.dumps(row), flush=True)
    # --- leave one class out ------------------------------------------------------------------------
    classes = sorted(set(labels) - {"good"})
    loco = []
    for rule in [r for r in per_fold[0]["loco"][classes[0]] if not r.startswith("_")]:
        row: dict[str, Any] = {"rule": rule}
        for held in classes:
            vals = [f["loco"][held][rule] for f in per_fold]
            det = [v["held_out_detected"] for v in vals]
            row[f"held_out_{held}_detected"] = round(float(np.mean(det)), 3)
            row[f"held_out_{held}_detected_std"] = round(float(np.std(det)), 3)
            row[f"held_out_{held}_fold_detected"] = [round(x, 3) for x in det]
            row[f"good_rejected_when_{held}_held_out"] = round(float(np.mean([v["good_rejected"] for v in vals])), 3)
            row[f"labelled_classes_detected_when_{held}_held_out"] = round(
                float(np.mean([v["labelled_classes_detected"] for v in vals])), 3
            )
        loco.append(row)
        print(json.dumps(row), flush=True)
    # --- localisation -------------------------------------------------------------------------------
    localisation = []
    for kind in kinds:
        for j, name in enumerate(
            (
                "anomaly map (today)",
                f"mask head ({kind}) map",
                f"open-set fused map, mask head ({kind})",
                f"geometric mean of the lifted maps, mask head ({kind})",
            )
        ):
            items = []
            for f in per_fold:
                for m, i in zip(f["loc"][kind][j], f["loc"][kind][4], strict=True):
                    items.append((m, masks[int(i)], str(labels[int(i)])))
            per = {}
            for f in per_fold:
                fi = [
                    (m, masks[int(i)], str(labels[int(i)]))
                    for m, i in zip(f["loc"][kind][j], f["loc"][kind][4], strict=True)
                ]
                r = score_variant(fi, sigma=0.0, interp="linear")
                per[f"fold{f['fold']}"] = [r["pixel_auroc"], r["hottest_point_in_defect_dilated_15px"]]
            row = {"map": name, **score_variant(items, sigma=0.0, interp="linear"), "per_fold_pixel_auroc_hottest": per}
            if j == 0 and kind != kinds[0]:
                continue
            localisation.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "hottest_point_in_defect_by_class"}), flush=True)
        # held-out class: hottest point of the fused map with the mask head trained on the other four
        for key, what in ((kind, "open-set fused map"), (kind + ":geo", "geometric mean of the lifted maps")):
            items = []
            for f in per_fold:
                for held in classes:
                    items += [(m, masks[i], held) for m, i in f["loco"][held]["_held_maps"][key]]
            r = score_variant(items, sigma=0.0, interp="linear")
            localisation.append(
                {
                    "map": f"{what}, mask head ({kind}) trained WITHOUT the tile's class (leave one class out)",
                    "hottest_point_in_defect_dilated_15px": r["hottest_point_in_defect_dilated_15px"],
                    "hottest_point_in_defect_by_class": r["hottest_point_in_defect_by_class"],
                    "n_defective_images": r["n_defective_images"],
                }
            )
            print(json.dumps(localisation[-1]), flush=True)
    doc = {
        "what": "Mask-supervised patch head vs today's labelled path, magnetic-tile TRAIN split, 3-fold CV",
        "command": "python bench/anomaly_features.py --cache CACHE --size 224 && python "
        + " ".join(["bench/mask_head_cv.py", *sys.argv[1:]]),
        "protocol": (__doc__ or "").split("Protocol:")[1].strip(),
        "n": {"goods": int((labels == "good").sum()), "defects": int((labels != "good").sum())},
        "thresholds": {
            "anomaly_frr_on_reference_goods": ANOMALY_FRR,
            "labelled_signal_frr_on_reference_goods": LABEL_FRR,
        },
        "machine": "2-core VM, shared with other jobs (timings are 'shared')",
        "labelled": labelled,
        "leave_one_class_out": loco,
        "localisation": localisation,
        "wall_s_shared": round(time.perf_counter() - started, 1),
    }
    args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
