"""Retraining from reviews: what a candidate gains when reviewers' labels come back (issue 20).

    python bench/retrain_bench.py [--data ../shared/datasets/magnetic-tile] [--out /tmp/vinspect-retrain-bench]

1. The magnetic-tile development data, split by its card: the champion trains on every good
   train image and **half** of each defect class's train images (even positions by name).
2. The other half enter a real store as rejected parts (one NCR each, the tile as its evidence
   image) and a reviewer confirms each with its defect code (claim + signed review), as the
   reviewer app would.
3. ``vinspect dataset from-reviews --merge <champion's dataset> --exclude <frozen set>`` builds
   the merged dataset (deduplicated by pixels, every image with its provenance).
4. The challenger trains on it with ``--parent`` naming the champion.
5. The test split is frozen (``vinspect dataset freeze``) and ``vinspect compare`` judges both on
   it. Writes bench/results/retrain.json (the command, both summaries, the deltas, timings).

Every step runs the product's own CLI (``vinspect ...`` in-process through ``vinspect.cli.main``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vinspect.cli import main as vinspect
from vinspect.dataset import open_dataset
from vinspect.dataset.images import read_image
from vinspect.store import repository as repo
from vinspect.store.db import make_engine, session_scope
from vinspect.store.evidence import EvidenceStore
from vinspect.store.migrations import upgrade
from vinspect.store.ncr import NcrDefaults, ReviewDecision, ReviewInput, Role
from vinspect.store.sink import StoreSink
from vinspect.types import Decision, Frame, Inspection, ModelRef, Prediction, StageTimings, Verdict

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULTS = NcrDefaults(
    part_number="TILE-100",
    part_revision="A",
    part_name="Magnetic tile",
    requirement_ref="surface free of defects",
    site_id="bench",
    line_id="line-1",
)


def _run(*argv: str) -> None:
    code = vinspect(list(argv))
    if code != 0:
        raise SystemExit(f"vinspect {' '.join(argv)} exited {code}")


def _split(data: Path, out: Path) -> tuple[Path, list[tuple[Path, str]]]:
    """The champion's dataset (class folders of symlinks) and the held-back half of the defects."""
    index = open_dataset(data)
    base = out / "base"
    rest: list[tuple[Path, str]] = []
    by_label: dict[str, list[Path]] = {}
    for s in index.train_samples():
        by_label.setdefault("good" if s.is_good else s.label, []).append(s.path)
    for label, paths in sorted(by_label.items()):
        (base / label).mkdir(parents=True, exist_ok=True)
        for i, p in enumerate(sorted(paths, key=lambda q: q.name)):
            if label == "good" or i % 2 == 0:
                (base / label / p.name).symlink_to(p)
            else:
                rest.append((p, label))
    return base, rest


def _rest(data: Path) -> list[tuple[Path, str]]:
    """The held-back half of the defects, as :func:`_split` chose it."""
    by_label: dict[str, list[Path]] = {}
    for s in open_dataset(data).train_samples():
        if not s.is_good:
            by_label.setdefault(s.label, []).append(s.path)
    return [
        (p, label)
        for label, paths in sorted(by_label.items())
        for i, p in enumerate(sorted(paths, key=lambda q: q.name))
        if i % 2 == 1
    ]


def _reviews(store_dir: Path, rest: list[tuple[Path, str]], champion: dict[str, str]) -> None:
    """Each held-back defect as a rejected part with an NCR, confirmed by a reviewer."""
    store_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(f"sqlite:///{store_dir / 'vinspect.db'}")
    upgrade(engine)
    evidence = EvidenceStore(store_dir / "evidence")
    model = ModelRef(name=champion["name"], version=champion["version"], sha256=champion["sha256"])
    refs: list[str] = []
    t0 = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
    with StoreSink(engine, evidence, defaults=DEFAULTS, on_ncr=lambda r: refs.append(r.ncr_uuid)) as sink:
        for seq, (path, label) in enumerate(rest, start=1):
            at = t0 + timedelta(seconds=seq)
            frame = Frame(
                image=read_image(path),
                source_id="cam-1",
                frame_id=seq,
                captured_at=at,
                pixel_format="Mono8",
                origin="replay",
                part_id=path.stem,
            )
            sink.write(
                Inspection(
                    inspection_id=f"bench-{seq:06d}",
                    station_id="bench",
                    part_seq=seq,
                    frame=frame,
                    prediction=Prediction(score=1.0, anomaly_map=None, regions=(), defect_code=label),
                    decision=Decision(
                        verdict=Verdict.FAIL, reasons=("score",), policy_id="bench", fail_at=0.5, review_at=0.4
                    ),
                    timings=StageTimings(),
                    model=model,
                )
            )
    with session_scope(engine) as session:
        rita = repo.create_user(
            "rita",
            session=session,
            display_name="Rita Reviewer",
            role=Role.REVIEWER,
            password_hash="argon2$unused",
            actor="system:bench",
        ).id
    for ref, (_, label) in zip(refs, rest, strict=True):
        with session_scope(engine) as session:
            repo.claim_ncr(ref, session=session, user_id=rita)
            repo.add_review(
                ref,
                session=session,
                review=ReviewInput(
                    user_id=rita,
                    decision=ReviewDecision.CONFIRMED_DEFECT,
                    reason="confirmed at the screen",
                    defect_code=label,
                ),
            )
    evidence.close()
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "datasets" / "magnetic-tile"
    )
    parser.add_argument("--out", type=Path, default=Path("/tmp/vinspect-retrain-bench"))
    parser.add_argument("--config", type=Path, default=None, help="training config for both models")
    parser.add_argument(
        "--reuse-champion",
        action="store_true",
        help="keep --out's base set, frozen set and champion from an earlier run (same code)",
    )
    args = parser.parse_args()
    config = ["--config", str(args.config)] if args.config else []
    timings: dict[str, float] = {}
    t = time.perf_counter()
    frozen = args.out / "frozen"
    if args.reuse_champion and (args.out / "champion" / "manifest.json").is_file():
        base, rest = args.out / "base", _rest(args.data)
        for leftover in ("station", "merged", "challenger"):
            shutil.rmtree(args.out / leftover, ignore_errors=True)
    else:
        shutil.rmtree(args.out, ignore_errors=True)
        args.out.mkdir(parents=True)
        base, rest = _split(args.data, args.out)
        _run(
            "dataset",
            "freeze",
            str(args.data),
            "--out",
            str(frozen),
            "--name",
            "magnetic-tile-test",
            "--version",
            "dev",
        )
        _run(
            "train",
            "--data",
            str(base),
            "--out",
            str(args.out / "champion"),
            "--name",
            "tiles",
            "--version",
            "1",
            "--no-progress",
            "--trained-by",
            "bench",
            *config,
        )
        timings["train_champion_s"] = time.perf_counter() - t
    champion = json.loads((args.out / "champion" / "manifest.json").read_text())
    t = time.perf_counter()
    store_dir = args.out / "station"
    _reviews(store_dir, rest, champion)
    timings["reviews_s"] = time.perf_counter() - t
    t = time.perf_counter()
    sys.stdin = io.StringIO("")
    _run(
        "dataset",
        "from-reviews",
        "--data-dir",
        str(store_dir),
        "--out",
        str(args.out / "merged"),
        "--merge",
        str(base),
        "--exclude",
        str(frozen),
    )
    timings["from_reviews_s"] = time.perf_counter() - t
    t = time.perf_counter()
    _run(
        "train",
        "--data",
        str(args.out / "merged"),
        "--out",
        str(args.out / "challenger"),
        "--name",
        "tiles",
        "--version",
        "2",
        "--parent",
        "1",
        "--no-progress",
        "--trained-by",
        "bench",
        *config,
    )
    timings["train_challenger_s"] = time.perf_counter() - t
    t = time.perf_counter()
    _run(
        "compare",
        "--champion",
        str(args.out / "champion"),
        "--challenger",
        str(args.out / "challenger"),
        "--data",
        str(frozen),
        "--json",
        str(args.out / "compare.json"),
        "--no-progress",
    )
    timings["compare_s"] = time.perf_counter() - t
    cmp = json.loads((args.out / "compare.json").read_text())
    merged = json.loads((args.out / "merged" / "dataset.json").read_text())
    challenger = json.loads((args.out / "challenger" / "manifest.json").read_text())
    result = {
        "command": "python " + " ".join(sys.argv),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_at_end": os.getloadavg(),
        "champion_train_defects": champion["training"]["n_train_defect"],
        "reviewed_defects": len(rest),
        "merged_counts": merged["counts"],
        "challenger_parent": challenger["training"]["parent_version"],
        "challenger_dataset_manifest_sha256": challenger["training"]["dataset_manifest_sha256"],
        "frozen_set": cmp["data"]["frozen"],
        "champion": {
            k: cmp["champion"][k]
            for k in (
                "auroc",
                "false_reject_rate_at_zero_escape",
                "per_class_detection",
                "defect_type_accuracy",
                "latency_ms",
            )
        },
        "challenger": {
            k: cmp["challenger"][k]
            for k in (
                "auroc",
                "false_reject_rate_at_zero_escape",
                "per_class_detection",
                "defect_type_accuracy",
                "latency_ms",
            )
        },
        "champion_operating_point": {
            k: cmp["champion"]["operating_point"][k] for k in ("false_reject_rate", "escape_rate")
        },
        "challenger_operating_point": {
            k: cmp["challenger"]["operating_point"][k] for k in ("false_reject_rate", "escape_rate")
        },
        "delta": cmp["delta"],
        "changed_counts": cmp["changed_counts"],
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "retrain.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
