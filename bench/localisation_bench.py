"""How well the anomaly map that reviewers and NCR evidence show points at the defect, on the
magnetic-tile test split's masks (development split; the held-back tiles are not here).

    python bench/localisation_bench.py --bundle BUNDLE [--data DIR] [--out bench/results/localisation.json]
    python bench/localisation_bench.py --bundle BUNDLE --split train --variants \
        --out bench/results/localisation_variants_train.json

Metrics: pixel AUROC over every test image (goods count as all-background), with the map
bilinearly upsampled from its grid to the image (every second pixel in each direction, to keep
memory small); and for defective images the share whose hottest map point lies inside the defect
mask dilated by 15 px. Timings are not measured here.

``--variants`` also scores post-processing of the same maps: an extra Gaussian blur (in map cells)
before upsampling, and bicubic instead of bilinear upsampling. Choose among them on ``--split
train`` (its defects were never fitted by the anomaly path, which learns from goods only), then
report the test split.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.data import to_hwc
from training.export import ort_session, run_ort
from vinspect.dataset import open_dataset, read_image
from vinspect.models.calibration import auroc
from vinspect.models.manifest import MODEL_NAME, read_manifest

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_DATA = Path("/work/shared/datasets/magnetic-tile")
DILATE_PX = 15


VARIANTS = [(0.0, "linear")] + [
    (sigma, interp)
    for sigma in (0.0, 0.5, 1.0, 1.5, 2.0)
    for interp in ("linear", "cubic")
    if (sigma, interp) != (0.0, "linear")
]


def _smooth(amap: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return amap
    return cv2.GaussianBlur(amap, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REPLICATE)


def score_variant(maps: list[tuple[np.ndarray, np.ndarray, str]], *, sigma: float, interp: str) -> dict[str, object]:
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * DILATE_PX + 1, 2 * DILATE_PX + 1))
    flag = cv2.INTER_LINEAR if interp == "linear" else cv2.INTER_CUBIC
    pix_scores, pix_truth, hits = [], [], []
    per_class: dict[str, list[bool]] = {}
    for amap, mask, label in maps:
        h, w = mask.shape
        up = cv2.resize(_smooth(amap.astype(np.float32), sigma), (w, h), interpolation=flag)
        if mask.any():
            y, x = np.unravel_index(int(np.argmax(up)), up.shape)
            hit = bool(cv2.dilate(mask, kernel)[y, x])
            hits.append(hit)
            per_class.setdefault(label, []).append(hit)
        pix_scores.append(up[::2, ::2].ravel())
        pix_truth.append(mask[::2, ::2].ravel().astype(bool))
    scores, truth = np.concatenate(pix_scores), np.concatenate(pix_truth)
    return {
        "pixel_auroc": round(auroc(scores[~truth], scores[truth]), 4),
        "hottest_point_in_defect_dilated_15px": round(float(np.mean(hits)), 4),
        "hottest_point_in_defect_by_class": {k: round(float(np.mean(v)), 4) for k, v in sorted(per_class.items())},
        "n_defective_images": len(hits),
        "n_pixels": int(truth.size),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--split", choices=("test", "train"), default="test")
    ap.add_argument("--variants", action="store_true", help="also score blur / bicubic post-processing")
    ap.add_argument("--out", type=Path, default=RESULTS / "localisation.json")
    args = ap.parse_args()
    manifest = read_manifest(args.bundle)
    session = ort_session(args.bundle / MODEL_NAME, threads=2)
    index = open_dataset(args.data)
    samples = index.test_samples() if args.split == "test" else index.train_samples()
    maps: list[tuple[np.ndarray, np.ndarray, str]] = []
    grid = None
    for s in samples:
        image = to_hwc(read_image(s.path), channels=manifest.input.channels)
        amap = run_ort(session, image)[1]
        grid = list(amap.shape)
        h, w = image.shape[:2]
        if s.is_good or s.mask_path is None:
            mask = np.zeros((h, w), np.uint8)
        else:
            mask = (read_image(s.mask_path) > 127).astype(np.uint8)
            mask = mask if mask.ndim == 2 else mask[:, :, 0]
        maps.append((amap, mask, s.label))
    result: dict[str, object] = {
        "command": "python " + " ".join(sys.argv),
        "bundle": {"name": manifest.name, "version": manifest.version, "task": manifest.task},
        "data": str(args.data),
        "split": f"{args.split} (development split)",
        "map_grid": grid,
        **score_variant(maps, sigma=0.0, interp="linear"),
    }
    if args.variants:
        result["variants"] = [
            {"extra_blur_cells": sigma, "upsampling": interp, **score_variant(maps, sigma=sigma, interp=interp)}
            for sigma, interp in VARIANTS[1:]
        ]
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
