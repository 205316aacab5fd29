"""``vinspect compare``: a challenger bundle against the champion on the same (frozen) images."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from vinspect.dataset.frozen import is_frozen, verify_frozen
from vinspect.dataset.layouts import open_dataset
from vinspect.errors import ConfigError
from vinspect.models.runtime import load_bundle
from vinspect.pipeline.gating import policy_for
from vinspect.report.compare import compare_bundles
from vinspect.report.compare_html import write_compare_report

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``compare``."""
    cmp = sub.add_parser(
        "compare",
        help="champion vs challenger on the same images: metrics, latency, changed verdicts",
        description="Judges every evaluation image with both bundles (interleaved, each at its own thresholds) "
        "and reports AUROC, good parts rejected at zero escapes, rates at the thresholds, detection "
        "per class, defect-type accuracy, latency on this machine and every changed verdict. A frozen "
        "set (vinspect dataset freeze) is verified file by file first.",
    )
    cmp.add_argument("--champion", type=Path, required=True, help="the running model's bundle directory")
    cmp.add_argument("--challenger", type=Path, required=True, help="the candidate bundle directory")
    cmp.add_argument("--data", type=Path, required=True, help="frozen evaluation set (or any dataset folder)")
    cmp.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads per model (default 1)")
    cmp.add_argument("--json", type=Path, default=None, help="write the comparison as JSON here")
    cmp.add_argument("--report", type=Path, default=None, help="write an HTML page with the changed verdicts here")
    cmp.add_argument("--no-progress", action="store_true", help="no progress bar")
    cmp.set_defaults(handler=_compare)


def _compare(args: argparse.Namespace) -> int:
    frozen = verify_frozen(args.data) if is_frozen(args.data) else None
    index = open_dataset(args.data)
    champion = load_bundle(args.champion, threads=args.threads)
    challenger = load_bundle(args.challenger, threads=args.threads)
    for b in (champion, challenger):
        if b.manifest.task == "reference":
            raise ConfigError(
                f"compare judges anomaly bundles; {b.manifest.name} {b.manifest.version} is a "
                f"{b.manifest.task} bundle (use vinspect eval on its pairs)"
            )
    result = compare_bundles(
        index.test_samples(),
        champion=champion,
        challenger=challenger,
        champion_policy=policy_for(champion),
        challenger_policy=policy_for(challenger),
        progress=not args.no_progress,
    )
    doc = result.to_json()
    doc["data"] = {
        "root": str(index.root),
        "layout": index.layout,
        "frozen": None
        if frozen is None
        else {"name": frozen.name, "version": frozen.version, "set_sha256": frozen.set_sha256},
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    if args.report:
        page = write_compare_report(
            args.report,
            result,
            champion_level=champion.manifest.thresholds.map_at,
            challenger_level=challenger.manifest.thresholds.map_at,
            frozen=None if frozen is None else f"{frozen.name} {frozen.version} ({frozen.set_sha256[:12]})",
        )
        sys.stdout.write(f"report: {page}\n")
    _print(doc)
    return 0


def _print(doc: dict[str, Any]) -> None:
    a, b = doc["champion"], doc["challenger"]

    def f(v: Any, pct: bool = False) -> str:
        return "n/a" if v is None else (f"{v:.1%}" if pct else f"{v:.4f}")

    frozen = doc["data"]["frozen"]
    where = (
        f"frozen set {frozen['name']} {frozen['version']} ({frozen['set_sha256'][:12]})"
        if frozen
        else f"{doc['data']['root']} (not frozen)"
    )
    lines = [
        f"{a['n_good']} good, {a['n_defect']} defective images: {where}",
        f"{'':38} {'champion':>12} {'challenger':>12}",
        f"{'model':38} {a['model']['version']:>12} {b['model']['version']:>12}",
        f"{'AUROC':38} {f(a['auroc']):>12} {f(b['auroc']):>12}",
        f"{'good rejected at zero escapes':38} {f(a['false_reject_rate_at_zero_escape'], True):>12} "
        f"{f(b['false_reject_rate_at_zero_escape'], True):>12}",
        f"{'good rejected at its thresholds':38} {f(a['operating_point']['false_reject_rate'], True):>12} "
        f"{f(b['operating_point']['false_reject_rate'], True):>12}",
        f"{'defects escaping at its thresholds':38} {f(a['operating_point']['escape_rate'], True):>12} "
        f"{f(b['operating_point']['escape_rate'], True):>12}",
        f"{'defect-type accuracy':38} {f(a['defect_type_accuracy'], True):>12} "
        f"{f(b['defect_type_accuracy'], True):>12}",
        f"{'latency p50 / p99 ms (interleaved)':38} "
        f"{f(a['latency_ms']['p50'])[:5] + ' / ' + f(a['latency_ms']['p99'])[:5]:>12} "
        f"{f(b['latency_ms']['p50'])[:5] + ' / ' + f(b['latency_ms']['p99'])[:5]:>12}",
    ]
    for c in sorted(set(a["per_class_detection"]) | set(b["per_class_detection"])):
        lines.append(
            f"{'detected: ' + c:38} {f(a['per_class_detection'].get(c), True):>12} "
            f"{f(b['per_class_detection'].get(c), True):>12}"
        )
    counts = doc["changed_counts"]
    lines.append(
        "changed verdicts: " + (", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(counts.items())) or "none")
    )
    sys.stdout.write("\n".join(lines) + "\n")
