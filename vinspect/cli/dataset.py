"""``vinspect dataset synth|validate`` (and the labelling verbs of :mod:`vinspect.cli.labelling`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from vinspect.cli.labelling import register_verbs as register_labelling
from vinspect.dataset.labels_manifest import check_labels_manifest, read_labels_manifest
from vinspect.dataset.layouts import open_dataset
from vinspect.dataset.synth import DEFECT_KINDS, write_dataset
from vinspect.dataset.synth_pcb import SYNTH_KINDS, write_pairs
from vinspect.dataset.validate import Problem, validate_dataset

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the ``dataset`` command group."""
    parser = sub.add_parser("dataset", help="generate or validate datasets")
    verbs = parser.add_subparsers(dest="verb", required=True)
    synth = verbs.add_parser("synth", help="write procedural demo parts with exact defect masks")
    synth.add_argument("--out", type=Path, required=True, help="dataset folder to create")
    synth.add_argument("--good", type=int, default=200, help="good parts")
    synth.add_argument("--defects", type=int, default=20, help="parts per defect kind")
    synth.add_argument("--kinds", default=",".join(DEFECT_KINDS), help="comma-separated defect kinds")
    synth.add_argument("--layout", choices=["classes", "mvtec", "pairs"], default="classes",
                       help="class folders (good/, scratch/, ...), MVTec AD (train/good + test/), or pairs: "
                            "PCB-like template/test pairs of one board for the reference task")
    synth.add_argument("--seed", type=int, default=0, help="random seed (same seed, same images)")
    synth.add_argument("--subtle", type=_share, default=0.0, help="share of defects drawn faint, 0-1 (default 0)")
    synth.add_argument("--dust", type=_share, default=0.0,
                       help="share of good parts with harmless dust specks, 0-1 (default 0)")
    synth.set_defaults(handler=_synth)
    check = verbs.add_parser("validate", help="decode every image and mask; list every bad file")
    check.add_argument("data", type=Path)
    check.set_defaults(handler=_validate)
    register_labelling(verbs)


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share between 0 and 1")
    return value


def _synth(args: argparse.Namespace) -> int:
    if args.layout == "pairs":
        root = write_pairs(args.out, n_good=args.good, n_defect_each=args.defects, seed=args.seed)
        sys.stdout.write(f"wrote {args.good} good and {args.defects * len(SYNTH_KINDS)} defective board pairs "
                         f"({', '.join(SYNTH_KINDS)}) to {root}\n")
        return 0
    kinds = tuple(k for k in args.kinds.split(",") if k)
    root = write_dataset(args.out, n_good=args.good, n_defect_each=args.defects, layout=args.layout,
                         kinds=kinds, seed=args.seed, subtle=args.subtle, dust=args.dust)
    sys.stdout.write(f"wrote {args.good} good and {args.defects * len(kinds)} defective parts to {root}\n")
    return 0


def _validate(args: argparse.Namespace) -> int:
    index = open_dataset(args.data)
    problems = validate_dataset(index)
    problems.extend(Problem(path=path, reason=reason) for path, reason in check_labels_manifest(index.root))
    labels = sorted({s.label for s in index.samples})
    sys.stdout.write(f"{index.root}: {index.layout} layout, {len(index.samples)} images, classes {labels}\n")
    manifest = read_labels_manifest(index.root)
    if manifest is not None:
        sys.stdout.write(f"{manifest.path.name}: {len(manifest.images)} labelled image(s), "
                         f"{len(manifest.unsettled)} unsettled disagreement(s), sha256 {manifest.sha256}\n")
    for p in problems:
        sys.stdout.write(f"BAD {p.path}: {p.reason}\n")
    sys.stdout.write(f"{len(problems)} problem(s)\n")
    return 1 if problems else 0
