"""DeepPCB benchmark: golden-reference inspection vs today's good-only anomaly model, same split.

Protocol: /work/shared/datasets/deeppcb-dev/README.md. Split by ``sha256("split:" + id) % 100 < 50``
(train). The reference task learns its limits on the train pairs only (``vinspect train --task
reference`` code path). Test: each test template after a line-like change (shift <= 10 px,
rotation <= 1 degree, brightness/contrast <= 10 %, sensor noise, JPEG re-encode) compared with
the original template is a good part; each test image after the same kind of change, boxes moved
along, is a defective part. Latency: ``judge_image`` per 640x640 frame (normalisation,
registration, comparison, regions, decision), batch 1, decode excluded.

Good-only anomaly model (today's ``vinspect train --good-only``, default config, 224 px input):
trained on the train templates; test templates are its good parts, test images its defects.

Dataset: Tang, He, Huang, Yang, "Online PCB Defect Detector On A New PCB Defect Dataset" (2019),
tangsanli5201/DeepPCB, MIT licence.

    python bench/deeppcb_bench.py [--data DIR] [--out /tmp/vinspect-deeppcb] [--skip-anomaly]

Writes bench/results/deeppcb.json (with the command). Timings are wall-clock on a shared 2-core
machine: other work perturbs them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.reference_bundle import ReferenceBundleOptions, train_reference_bundle
from vinspect.dataset import Sample, open_dataset, read_image
from vinspect.dataset.linechange import apply_change, move_box, random_change
from vinspect.models.runtime import load_bundle
from vinspect.pipeline.gating import policy_for
from vinspect.report.pairs_eval import PairCase, evaluate_pairs

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_DATA = Path("/work/shared/datasets/deeppcb-dev")
SEED = 2026


def line_cases(test: list[Sample], *, seed: int, change: bool = True) -> Iterator[PairCase]:
    """The protocol's good (changed template) and defective (changed test image) cases."""
    rng = np.random.default_rng(seed)
    for s in test:
        assert s.reference_path is not None
        template, image = read_image(s.reference_path), read_image(s.path)
        good = random_change(rng) if change else None
        yield PairCase(
            case_id=f"{s.stem}/good", template=template, image=apply_change(template, good) if good else template
        )
        bad = random_change(rng) if change else None
        boxes = tuple(move_box(b.box_xyxy, bad, image.shape) if bad else b.box_xyxy for b in s.boxes)
        yield PairCase(
            case_id=f"{s.stem}/test",
            template=template,
            image=apply_change(image, bad) if bad else image,
            boxes=boxes,
            box_labels=tuple(b.label for b in s.boxes),
        )


def reference_task(data: Path, out: Path, test: list[Sample]) -> dict[str, Any]:
    started = time.perf_counter()
    bundle_dir = out / "reference-bundle"
    shutil.rmtree(bundle_dir, ignore_errors=True)
    manifest = train_reference_bundle(data, bundle_dir, opts=ReferenceBundleOptions(name="deeppcb", version="bench"))
    train_s = time.perf_counter() - started
    first = load_bundle(bundle_dir, part_number=next(s.stem for s in open_dataset(data).train_samples()))
    policy = policy_for(first)
    result = evaluate_pairs(line_cases(test, seed=SEED), bundle=first, policy=policy)
    result["train_s"] = round(train_s, 1)
    result["limits"] = json.loads((bundle_dir / "reference.json").read_text())["limits"]
    result["train_metrics"] = manifest.training.metrics
    result["defect_codes"] = list(manifest.labels)
    return result


def anomaly_task(data: Path, out: Path, train: list[Sample], test: list[Sample]) -> dict[str, Any]:
    from training import train_bundle
    from vinspect.report.evaluate import score_samples, summarize

    folder = out / "anomaly-data" / "good"
    shutil.rmtree(folder.parent, ignore_errors=True)
    folder.mkdir(parents=True)
    for s in train:
        assert s.reference_path is not None
        os.symlink(s.reference_path, folder / f"{s.stem}.jpg")
    bundle_dir = out / "anomaly-bundle"
    shutil.rmtree(bundle_dir, ignore_errors=True)
    started = time.perf_counter()
    train_bundle(folder.parent, bundle_dir, name="deeppcb-anomaly", version="bench", good_only=True, progress=False)
    train_s = time.perf_counter() - started
    bundle = load_bundle(bundle_dir, threads=2)
    policy = policy_for(bundle)
    samples = [
        Sample(path=s.reference_path, label="good", is_good=True, stem=f"{s.stem}_temp", split="test")
        for s in test
        if s.reference_path is not None
    ]
    samples += [Sample(path=s.path, label=s.label, is_good=False, stem=s.stem, split="test") for s in test]
    scored = score_samples(samples, bundle=bundle, policy=policy, progress=False)
    summary = summarize(scored, bundle=bundle, policy=policy)
    keep = ("n_good", "n_defect", "auroc", "false_reject_rate_at_zero_escape", "operating_point", "latency_ms")
    return {
        "train_s": round(train_s, 1),
        "input_px": bundle.manifest.input.model_size_px,
        **{k: summary[k] for k in keep},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=Path("/tmp/vinspect-deeppcb"))
    parser.add_argument("--skip-anomaly", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    index = open_dataset(args.data)
    train, test = index.train_samples(), index.test_samples()
    result: dict[str, Any] = {
        "command": "python " + " ".join(sys.argv),
        "nproc": os.cpu_count(),
        "machine": "shared 2-core CPU",
        "dataset": {
            "root": str(args.data),
            "train_pairs": len(train),
            "test_pairs": len(test),
            "attribution": "DeepPCB, Tang et al. 2019, MIT licence",
        },
        "protocol": "test templates after a line-like change = good parts; test images after the same kind of "
        "change (boxes moved) = defective; shift <= 10 px, rotation <= 1 deg, gain/offset <= 10 %, "
        f"noise sigma 2, JPEG q85-95; seed {SEED}",
    }
    result["reference"] = reference_task(args.data, args.out, test)
    if not args.skip_anomaly:
        result["anomaly_good_only"] = anomaly_task(args.data, args.out, train, test)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "deeppcb.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
