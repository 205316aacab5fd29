"""A trained bundle's exposure guard on a dataset's evaluation images, through ONNX Runtime.

    python bench/exposure_guard_split.py --model BUNDLE --data ../shared/datasets/magnetic-tile \\
        --out bench/results/exposure_guard_test_12g.json

For every evaluation image (the magnetic-tile development TEST split by the dataset card's
protocol) the bundle's graph is run as the station runs it; a score of exactly 1.0 is the guard
firing (the anomaly and fused scores stay below 1). Counted: goods and defects it fires on, as
shot. Then every good evaluation tile is re-shot synthetically (``bench/exposure_guard_cv.STRESS``:
gain, offset or contrast change of the raw pixels, clipped) and the share the bundle FAILs
(score >= fail_at), sends to REVIEW or PASSes, and the share the guard fired on. Shared cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.exposure_guard_cv import STRESS
from training.data import to_hwc
from training.export import ort_session
from vinspect.dataset import open_dataset, read_image
from vinspect.models.manifest import read_manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    started = time.perf_counter()
    manifest = read_manifest(args.model)
    channels = manifest.input.channels
    session = ort_session(args.model / "model.onnx")
    t = manifest.thresholds

    def score(image: np.ndarray) -> float:
        return float(session.run(None, {"image": to_hwc(image, channels=channels)})[0][0])

    samples = open_dataset(args.data).test_samples()
    goods = [read_image(s.path) for s in samples if s.is_good]
    defects = [s for s in samples if not s.is_good]
    as_shot = {"goods": [score(im) for im in goods], "defects": [score(read_image(s.path)) for s in defects]}
    stress: dict[str, Any] = {}
    for name, change in STRESS.items():
        sc = np.array([score(change(im.astype(np.float64))) for im in goods])
        stress[name] = {
            "fail": int((sc >= t.fail_at).sum()),
            "review": int(((sc >= t.review_at) & (sc < t.fail_at)).sum()),
            "pass": int((sc < t.review_at).sum()),
            "guard_fired": int((sc == 1.0).sum()),
            "of": int(sc.size),
        }
        print(name, stress[name], flush=True)
    doc = {
        "what": "the bundle's exposure guard on the evaluation images as shot and on synthetically re-shot good ones",
        "command": "python " + " ".join(["bench/exposure_guard_split.py", *sys.argv[1:]]),
        "model": {"name": manifest.name, "version": manifest.version, "sha256": manifest.sha256},
        "input": manifest.training.config.get("input"),
        "ranges": {k: v for k, v in manifest.training.metrics.items() if k.startswith("exposure_")},
        "thresholds": {"fail_at": t.fail_at, "review_at": t.review_at},
        "as_shot": {
            "goods_fired": sum(s == 1.0 for s in as_shot["goods"]),
            "goods": len(goods),
            "defects_fired": sum(s == 1.0 for s in as_shot["defects"]),
            "defects": len(defects),
            "defects_fired_by_class": {
                label: sum(s == 1.0 for s, d in zip(as_shot["defects"], defects, strict=True) if d.label == label)
                for label in sorted({d.label for d in defects})
            },
        },
        "re_shot_goods": stress,
        "machine": "2-core VM, shared with other jobs",
        "wall_s_shared": round(time.perf_counter() - started, 1),
    }
    args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(doc["as_shot"]))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
