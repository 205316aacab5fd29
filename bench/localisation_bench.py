"""How well the anomaly map that reviewers and NCR evidence show points at the defect, on the
magnetic-tile test split's masks (development split; the held-back tiles are not here).

    python bench/localisation_bench.py --bundle BUNDLE [--data DIR] [--out bench/results/localisation.json]

Metrics: pixel AUROC over every test image (goods count as all-background), with the map
bilinearly upsampled from its grid to the image (every second pixel in each direction, to keep
memory small); and for defective images the share whose hottest map point lies inside the defect
mask dilated by 15 px. Timings are not measured here.
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=RESULTS / "localisation.json")
    args = ap.parse_args()
    manifest = read_manifest(args.bundle)
    session = ort_session(args.bundle / MODEL_NAME, threads=2)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * DILATE_PX + 1, 2 * DILATE_PX + 1))
    pix_scores, pix_truth, hits, grid = [], [], [], None
    per_class: dict[str, list[bool]] = {}
    for s in open_dataset(args.data).test_samples():
        image = to_hwc(read_image(s.path), channels=manifest.input.channels)
        amap = run_ort(session, image)[1]
        grid = list(amap.shape)
        h, w = image.shape[:2]
        up = cv2.resize(amap.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        if s.is_good or s.mask_path is None:
            mask = np.zeros((h, w), np.uint8)
        else:
            mask = (read_image(s.mask_path) > 127).astype(np.uint8)
            mask = mask if mask.ndim == 2 else mask[:, :, 0]
            y, x = np.unravel_index(int(np.argmax(up)), up.shape)
            hit = bool(cv2.dilate(mask, kernel)[y, x])
            hits.append(hit)
            per_class.setdefault(s.label, []).append(hit)
        pix_scores.append(up[::2, ::2].ravel())
        pix_truth.append(mask[::2, ::2].ravel().astype(bool))
    scores, truth = np.concatenate(pix_scores), np.concatenate(pix_truth)
    result = {
        "command": "python " + " ".join(sys.argv),
        "bundle": {"name": manifest.name, "version": manifest.version, "task": manifest.task},
        "data": str(args.data), "split": "test (development split)",
        "map_grid": grid,
        "pixel_auroc": round(auroc(scores[~truth], scores[truth]), 4),
        "hottest_point_in_defect_dilated_15px": round(float(np.mean(hits)), 4),
        "hottest_point_in_defect_by_class": {k: round(float(np.mean(v)), 4) for k, v in sorted(per_class.items())},
        "n_defective_images": len(hits),
        "n_pixels": int(truth.size),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
