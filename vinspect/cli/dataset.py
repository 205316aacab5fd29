"""``vinspect dataset synth|validate|from-reviews|freeze`` (labelling verbs: :mod:`vinspect.cli.labelling`)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vinspect.cli.labelling import register_verbs as register_labelling
from vinspect.cli.store_access import store_engine
from vinspect.dataset.from_reviews import ReviewedImage, build_from_reviews
from vinspect.dataset.frozen import freeze
from vinspect.dataset.labels_manifest import check_labels_manifest, read_labels_manifest
from vinspect.dataset.layouts import open_dataset
from vinspect.dataset.synth import DEFECT_KINDS, write_dataset
from vinspect.dataset.synth_pcb import SYNTH_KINDS, write_pairs
from vinspect.dataset.validate import Problem, validate_dataset
from vinspect.settings import load_settings
from vinspect.store.adjudicated import adjudicated_parts, audited_pass_parts
from vinspect.store.db import session_scope
from vinspect.store.evidence import EvidenceStore
from vinspect.store.shadow_judgements import judged_shadow_parts

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
    synth.add_argument(
        "--layout",
        choices=["classes", "mvtec", "pairs"],
        default="classes",
        help="class folders (good/, scratch/, ...), MVTec AD (train/good + test/), or pairs: "
        "PCB-like template/test pairs of one board for the reference task",
    )
    synth.add_argument("--seed", type=int, default=0, help="random seed (same seed, same images)")
    synth.add_argument("--subtle", type=_share, default=0.0, help="share of defects drawn faint, 0-1 (default 0)")
    synth.add_argument(
        "--dust", type=_share, default=0.0, help="share of good parts with harmless dust specks, 0-1 (default 0)"
    )
    synth.set_defaults(handler=_synth)
    check = verbs.add_parser("validate", help="decode every image and mask; list every bad file")
    check.add_argument("data", type=Path)
    check.set_defaults(handler=_validate)
    register_labelling(verbs)
    reviews = verbs.add_parser(
        "from-reviews",
        help="turn adjudicated NCRs, audited PASS samples and judged shadow disagreements into a labelled dataset",
        description="Reads every NCR whose standing review says FALSE_REJECT (-> good/) or CONFIRMED_DEFECT "
        "(-> <defect code>/) and every audited PASS sample with a kept image (CONFORMS -> good/, "
        "ESCAPE -> <defect code>/) and every judged shadow disagreement (good -> good/, defective -> "
        "<defect code>/), writes its image with a provenance file, deduplicated by pixels, "
        "optionally merged over an existing dataset's training images, and refuses any image "
        "that is also a golden sample or a frozen evaluation image (--exclude).",
    )
    reviews.add_argument("--out", type=Path, required=True, help="new dataset folder (must not exist or be empty)")
    reviews.add_argument(
        "--merge",
        type=Path,
        default=None,
        help="existing dataset whose training images are merged in (its test split is not)",
    )
    reviews.add_argument(
        "--exclude",
        type=Path,
        action="append",
        default=[],
        help="a bundle (its golden samples) or a frozen evaluation dataset; repeatable",
    )
    reviews.add_argument(
        "--drop-leaking", action="store_true", help="leave out (and list) images found in --exclude instead of refusing"
    )
    reviews.add_argument("--since", type=_time, default=None, help="reviews at or after (ISO 8601, UTC)")
    reviews.add_argument("--until", type=_time, default=None, help="reviews before (ISO 8601, UTC)")
    reviews.add_argument("--data-dir", type=Path, default=None, help="default: VINSPECT_DATA_DIR or ./vinspect-data")
    reviews.add_argument("--database-url", default=None, help="default sqlite:///<data-dir>/vinspect.db")
    reviews.set_defaults(handler=_from_reviews)
    frz = verbs.add_parser(
        "freeze",
        help="copy a dataset's evaluation images into a versioned set pinned by hash",
        description="Champion and challenger are compared on the same frozen set; vinspect "
        "compare re-hashes every file and refuses a set that changed.",
    )
    frz.add_argument("data", type=Path, help="dataset folder (its test split; every image of class folders)")
    frz.add_argument("--out", type=Path, required=True, help="new folder for the frozen set")
    frz.add_argument("--name", required=True, help="set name, e.g. tiles-eval")
    frz.add_argument("--version", required=True, help="set version, e.g. 2026-12")
    frz.set_defaults(handler=_freeze)


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
        sys.stdout.write(
            f"wrote {args.good} good and {args.defects * len(SYNTH_KINDS)} defective board pairs "
            f"({', '.join(SYNTH_KINDS)}) to {root}\n"
        )
        return 0
    kinds = tuple(k for k in args.kinds.split(",") if k)
    root = write_dataset(
        args.out,
        n_good=args.good,
        n_defect_each=args.defects,
        layout=args.layout,
        kinds=kinds,
        seed=args.seed,
        subtle=args.subtle,
        dust=args.dust,
    )
    sys.stdout.write(f"wrote {args.good} good and {args.defects * len(kinds)} defective parts to {root}\n")
    return 0


def _time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from exc
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _from_reviews(args: argparse.Namespace) -> int:
    data_dir = load_settings(data_dir=args.data_dir, database_url=args.database_url).data_dir
    with store_engine(args, must_exist=True) as engine:
        evidence = EvidenceStore(data_dir / "evidence")
        try:
            with session_scope(engine, readonly=True) as session:
                parts = [
                    ReviewedImage(
                        name=p.ncr_number, label=p.label, image_sha256=p.image_sha256, provenance=p.provenance()
                    )
                    for p in adjudicated_parts(session=session, since=args.since, until=args.until)
                ]
                audits = [
                    ReviewedImage(
                        name=f"pass-{a.inspection_id}",
                        label=a.label,
                        image_sha256=a.image_sha256,
                        provenance=a.provenance(),
                    )
                    for a in audited_pass_parts(session=session, since=args.since, until=args.until)
                ]
                parts += audits
                shadows = [
                    ReviewedImage(
                        name=f"shadow-{j.candidate}-{j.inspection_id}",
                        label=j.label,
                        image_sha256=str(j.image_sha256),
                        provenance=j.provenance(),
                    )
                    for j in judged_shadow_parts(session=session, since=args.since, until=args.until)
                ]
                parts += shadows
            report = build_from_reviews(
                parts,
                read_blob=evidence.read,
                out=args.out,
                merge=args.merge,
                exclude=args.exclude,
                drop_leaking=args.drop_leaking,
            )
        finally:
            evidence.close()
    counts = ", ".join(f"{k} {v}" for k, v in sorted(report.counts.items()))
    sys.stdout.write(
        f"wrote {sum(report.counts.values())} images to {report.out} ({counts}): "
        f"{report.from_reviews} from reviews, {report.from_dataset} from the merged dataset, "
        f"{len(report.duplicates)} duplicate(s) left out; read {len(parts) - len(audits) - len(shadows)} reviewed "
        f"NCR(s), {len(audits)} audited PASS sample(s) and {len(shadows)} judged shadow disagreement(s)\n"
    )
    for dropped, other in report.dropped_leaking:
        sys.stdout.write(f"LEFT OUT {dropped}: same image as {other}\n")
    sys.stdout.write(f"dataset_sha256 {report.dataset_sha256}\n")
    return 0


def _freeze(args: argparse.Namespace) -> int:
    frozen = freeze(args.data, args.out, name=args.name, version=args.version)
    sys.stdout.write(
        f"froze {frozen.n_images} images as {frozen.name} {frozen.version} in {frozen.root}: "
        f"set_sha256 {frozen.set_sha256}\n"
    )
    return 0


def _validate(args: argparse.Namespace) -> int:
    index = open_dataset(args.data)
    problems = validate_dataset(index)
    problems.extend(Problem(path=path, reason=reason) for path, reason in check_labels_manifest(index.root))
    labels = sorted({s.label for s in index.samples})
    sys.stdout.write(f"{index.root}: {index.layout} layout, {len(index.samples)} images, classes {labels}\n")
    manifest = read_labels_manifest(index.root)
    if manifest is not None:
        sys.stdout.write(
            f"{manifest.path.name}: {len(manifest.images)} labelled image(s), "
            f"{len(manifest.unsettled)} unsettled disagreement(s), sha256 {manifest.sha256}\n"
        )
    for p in problems:
        sys.stdout.write(f"BAD {p.path}: {p.reason}\n")
    sys.stdout.write(f"{len(problems)} problem(s)\n")
    return 1 if problems else 0
