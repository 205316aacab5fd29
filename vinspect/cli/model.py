"""``vinspect train|eval|inspect|models``: build, measure, run and manage model bundles."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from vinspect.cli.distribution import register_verbs as register_distribution
from vinspect.cli.promotion import register_verbs as register_promotion
from vinspect.cli.promotion import verify_signer
from vinspect.cli.store_access import missing_sqlite_store, store_engine
from vinspect.dataset.images import IMAGE_SUFFIXES, read_image
from vinspect.dataset.labels_manifest import read_labels_manifest
from vinspect.dataset.layouts import DatasetIndex, open_dataset
from vinspect.errors import ConfigError, DatasetError, ImageDecodeError, ModelError
from vinspect.imaging import encode_png
from vinspect.models.calibration import describe_fusion, describe_operating_point
from vinspect.models.manifest import ModelManifest, OperatingPoint, read_manifest
from vinspect.models.reference_spec import REFERENCE_NAME, ReferenceSpec
from vinspect.models.registry import ModelRegistry
from vinspect.models.risk import activation_warnings, stated_lines, stated_rates
from vinspect.models.runtime import load_bundle
from vinspect.pipeline.gating import policy_for
from vinspect.pipeline.judge import Judgement, judge_image
from vinspect.report.evaluate import score_samples, summarize
from vinspect.report.html import write_report
from vinspect.report.overlay import render_overlay
from vinspect.report.pairs_eval import evaluate_pairs, sample_cases
from vinspect.settings import load_settings

__all__ = ["record_accepted_risk", "register"]


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``train``, ``eval``, ``inspect`` and ``models``."""
    train = sub.add_parser("train", help="train a model bundle from a dataset folder")
    train.add_argument("--data", type=Path, required=True, help="MVTec AD, magnetic-tile or class folders")
    train.add_argument("--out", type=Path, required=True, help="bundle directory to create")
    train.add_argument("--name", default="model", help="model name in the registry (default: model)")
    train.add_argument("--version", default=None, help="default: a UTC timestamp")
    train.add_argument(
        "--good-only",
        action="store_true",
        help="ignore defect labels (anomaly model only; by default its input is histogram-equalised, with an "
        "exposure guard: photometric auto in the training config)",
    )
    train.add_argument(
        "--allow-unsettled",
        action="store_true",
        help="train from a labelling export whose labels.json lists unsettled blind disagreements "
        "(those images are left out)",
    )
    train.add_argument("--config", type=Path, default=None, help="YAML training config (see training/configs)")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.add_argument(
        "--quantize",
        choices=["auto", "none", "int8"],
        default=None,
        help="auto: labelled bundles ship ONNX Runtime's static int8 graph when it passes its gate "
        "against the float one, else the float graph (the summary says why); good-only bundles stay "
        "float. int8: int8 or no bundle. none: float (default: the config's `quantize`, auto)",
    )
    train.add_argument(
        "--parent",
        default=None,
        metavar="VERSION",
        help="the version this candidate is retrained from (recorded in its manifest)",
    )
    train.add_argument(
        "--trained-by", default=None, help="who trains it (default: your login); that person may not sign its promotion"
    )
    train.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="where features and the classifier train: auto (a CUDA GPU when PyTorch sees one, "
        "else the CPU), cpu, or cuda (refused without one); export and parity run on the CPU",
    )
    train.add_argument(
        "--task",
        choices=["anomaly", "reference"],
        default="anomaly",
        help="reference: golden-reference inspection from template/test pairs",
    )
    train.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="PART=IMAGE",
        help="(reference task) golden image of a part number; repeatable",
    )
    train.add_argument(
        "--ignore-mask",
        action="append",
        default=[],
        metavar="PART=MASK",
        help="(reference task) regions to ignore (non-zero pixels)",
    )
    train.add_argument(
        "--tight-mask",
        action="append",
        default=[],
        metavar="PART=MASK",
        help="(reference task) regions with tighter limits (non-zero pixels)",
    )
    train.add_argument(
        "--with-anomaly",
        type=Path,
        default=None,
        metavar="BUNDLE",
        help="(reference task) also carry this anomaly bundle: a part fails on either signal",
    )
    train.add_argument(
        "--part-number", default="part", help="(reference task) part number when every pair shares one template"
    )
    train.set_defaults(handler=_train)

    ev = sub.add_parser("eval", help="measure a bundle on a dataset (AUROC, F1, false rejects, latency)")
    ev.add_argument("--model", type=Path, required=True, help="bundle directory")
    ev.add_argument("--data", type=Path, required=True, help="dataset folder with held-out test images")
    ev.add_argument("--json", type=Path, default=None, help="write the metrics as JSON")
    ev.add_argument("--report", type=Path, default=None, help="write an HTML report into this folder")
    ev.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads (default 1)")
    ev.add_argument("--no-progress", action="store_true", help="no progress bar")
    ev.add_argument("--part-number", default=None, help="reference bundles: the golden reference to load")
    ev.set_defaults(handler=_eval)

    ins = sub.add_parser("inspect", help="judge image files or folders: verdict, score, defect, latency")
    ins.add_argument("--model", type=Path, required=True, help="bundle directory")
    ins.add_argument("paths", type=Path, nargs="+", metavar="PATH", help="image files or folders of images")
    ins.add_argument("--heatmaps", type=Path, default=None, help="write heatmap overlays into this folder")
    ins.add_argument("--json", type=Path, default=None, help="write per-image results as JSON")
    ins.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads (default 1)")
    ins.add_argument(
        "--part-number", default=None, help="reference bundles: which golden reference (default: the bundle's only one)"
    )
    ins.set_defaults(handler=_inspect)

    models = sub.add_parser("models", help="list, install and activate registered model versions")
    data_help = "default: VINSPECT_DATA_DIR or ./vinspect-data"
    models.add_argument("--data-dir", type=Path, default=None, help=data_help)
    verbs = models.add_subparsers(dest="verb", required=True)
    # --data-dir also after the verb, as every other command takes it (SUPPRESS: an absent
    # option does not overwrite one given before the verb).
    listing = verbs.add_parser("list", help="installed versions (* marks the active one)")
    install = verbs.add_parser("install", help="copy a verified bundle into the registry")
    install.add_argument("bundle", type=Path, help="bundle directory written by `vinspect train`")
    install.add_argument("--activate", action="store_true", help="make it the active version")
    _acceptance_options(install)
    activate = verbs.add_parser("activate", help="make an installed version the one the station runs")
    activate.add_argument("name", help="model name")
    activate.add_argument("version", help="installed version")
    _acceptance_options(activate)
    for verb, handler in ((listing, _models_list), (install, _models_install), (activate, _models_activate)):
        verb.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS, help=data_help)
        verb.set_defaults(handler=handler)
    register_promotion(verbs)
    register_distribution(verbs)


def _pairs_arg(items: list[str], flag: str) -> dict[str, Path]:
    out = {}
    for item in items:
        part, sep, path = item.partition("=")
        if not sep or not part or not path:
            raise ConfigError(f"{flag} {item!r}: expected PART=PATH")
        out[part] = Path(path)
    return out


def _train_reference(args: argparse.Namespace) -> int:
    from training.reference_bundle import ReferenceBundleOptions, train_reference_bundle

    opts = ReferenceBundleOptions(
        name=args.name,
        version=args.version,
        part_number=args.part_number,
        references=_pairs_arg(args.reference, "--reference"),
        ignore_masks=_pairs_arg(args.ignore_mask, "--ignore-mask"),
        tight_masks=_pairs_arg(args.tight_mask, "--tight-mask"),
        anomaly_bundle=args.with_anomaly,
    )
    m = train_reference_bundle(args.data, args.out, opts=opts)
    t = m.training.metrics
    sys.stdout.write(
        f"wrote {args.out} ({m.name} {m.version}, reference); train pairs after line-like changes: box recall "
        f"{t['train_box_recall']:.1%}, false boxes/image {t['train_false_boxes_per_image']:.3f}, false-reject rate "
        f"{t['train_false_reject_rate']:.1%}; defect codes: {', '.join(m.labels) or 'none'}\n"
    )
    return 0


def _acceptance_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "risk acceptance",
        "a bundle that cannot meet its targets (see its stated rates) is activated only when a "
        "quality engineer accepts the stated rates; the acceptance is signed (password) and audited",
    )
    group.add_argument("--accept-risk", action="store_true", help="accept the bundle's stated rates and warnings")
    group.add_argument("--user", default=None, help="the quality engineer who signs the acceptance")
    group.add_argument("--reason", default=None, help="why the stated rates are acceptable")
    group.add_argument("--password-stdin", action="store_true", help="read the password from stdin")


def _train(args: argparse.Namespace) -> int:
    open_dataset(args.data)  # a folder that is not a dataset fails here, before PyTorch is imported
    labels = read_labels_manifest(args.data)
    if labels is not None and labels.unsettled and not args.allow_unsettled:
        raise DatasetError(
            f"{labels.path}: {len(labels.unsettled)} blind disagreement(s) are not settled; settle "
            "them in the labelling workspace and export again, or pass --allow-unsettled to train "
            "without those images"
        )
    if args.task == "reference":
        if args.device == "cuda":
            raise ConfigError("--device cuda: reference training (--task reference) runs on the CPU (OpenCV)")
        return _train_reference(args)
    try:
        from training.bundle import train_bundle
        from training.config import load_config
    except ImportError as exc:
        if exc.name in {"torch", "torchvision", "onnx"}:
            raise ConfigError("`vinspect train` needs PyTorch: pip install 'vinspect[train]'") from exc
        raise
    config = load_config(args.config) if args.config else None
    if args.quantize is not None:
        from training.config import TrainConfig

        config = (config or TrainConfig()).model_copy(update={"quantize": args.quantize})
    manifest = train_bundle(
        args.data,
        args.out,
        name=args.name,
        version=args.version,
        good_only=args.good_only,
        config=config,
        progress=not args.no_progress,
        parent=args.parent,
        trained_by=args.trained_by or getpass.getuser(),
        device=args.device,
    )
    ev = manifest.thresholds.evidence
    sys.stdout.write(
        f"wrote {args.out} ({manifest.name} {manifest.version}, {manifest.task}); "
        f"fail_at={manifest.thresholds.fail_at:.4g} "
        f"review_at={manifest.thresholds.review_at:.4g}; validation: {ev.n_good} good, {ev.n_defect} defective\n"
        f"threshold rule: {ev.target}\n"
    )
    if manifest.training.config.get("input"):
        sys.stdout.write(f"input: {manifest.training.config['input']}\n")
    if manifest.fusion is not None:
        sys.stdout.write(describe_fusion(manifest.fusion) + "\n")
    if ev.operating_point is not None:
        sys.stdout.write("".join(f"  {line}\n" for line in describe_operating_point(ev.operating_point)))
    search = describe_search(manifest.training.metrics)
    if search is not None:
        sys.stdout.write(search + "\n")
    shipped = _describe_graph(manifest.training.config, manifest.training.metrics)
    if shipped is not None:
        sys.stdout.write(shipped + "\n")
    return 0


def describe_search(metrics: dict[str, float]) -> str | None:
    """One line for the training summary: the anomaly path's patch search (None: no global kNN bank).

    ``metrics`` is the manifest's ``training.metrics``; bundles trained before issue 12m lack the
    search dimensions and get no line.
    """
    bank, search, features = (
        metrics.get(k) for k in ("anomaly_bank_patches", "anomaly_search_dim", "anomaly_feature_dim")
    )
    if bank is None or search is None or features is None:
        return None
    if search < features:
        return (
            f"anomaly search: {int(bank):,} good patches, in {int(search)} of their {int(features)} feature "
            "directions plus each patch's residual outside them (knn_search_dim)"
        )
    return f"anomaly search: {int(bank):,} good patches, all {int(features)} features"


def _describe_graph(config: dict[str, Any], metrics: dict[str, float]) -> str | None:
    """One line for the training summary: which graph the bundle ships and why (None: float asked for).

    ``config`` and ``metrics`` are the manifest's ``training.config`` / ``training.metrics``.
    """
    requested, shipped = config.get("quantize"), config.get("quantize_shipped")
    if requested in (None, "none"):
        return None
    if shipped == "int8" or (shipped is None and requested == "int8"):
        ops = "/".join(config.get("quantize_ops") or ["MatMul"])
        m = metrics
        gate = (
            f"score max |diff| {m['int8_score_max_abs_diff']:.3g}, map max |diff| {m['int8_map_max_abs_diff']:.3g}, "
            f"{m['int8_verdict_flips']:.0f} of {m['int8_verdicts_compared']:.0f} validation verdicts changed"
            if {"int8_score_max_abs_diff", "int8_map_max_abs_diff", "int8_verdict_flips", "int8_verdicts_compared"}
            <= m.keys()
            else "figures not recorded"
        )
        return f"graph: int8 ({ops} quantised; quantize: {requested}); int8 gate passed: {gate}"
    return f"graph: float (quantize: {requested}): {config.get('quantize_note') or 'no int8 graph'}"


def _eval(args: argparse.Namespace) -> int:
    index = open_dataset(args.data)
    if index.layout == "pairs":
        return _eval_pairs(args, index)
    bundle = load_bundle(args.model, threads=args.threads)
    policy = policy_for(bundle)
    scored = score_samples(index.test_samples(), bundle=bundle, policy=policy, progress=not args.no_progress)
    summary = summarize(scored, bundle=bundle, policy=policy)
    summary["dataset"] = {"root": str(index.root), "layout": index.layout}
    if bundle.manifest.fusion is not None:
        summary["fusion"] = bundle.manifest.fusion.model_dump(mode="json")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if args.report:
        page = write_report(args.report, summary=summary, scored=scored, level=bundle.manifest.thresholds.map_at)
        sys.stdout.write(f"report: {page}\n")
    _print_summary(summary)
    if bundle.manifest.fusion is not None:
        sys.stdout.write(describe_fusion(bundle.manifest.fusion) + "\n")
    return 0


def _any_part(bundle_dir: Path) -> str | None:
    """A part number of a reference bundle (pairs bring their own templates; the limits are shared)."""
    try:
        spec = ReferenceSpec.model_validate_json((bundle_dir / REFERENCE_NAME).read_bytes())
    except (OSError, ValueError):
        return None  # load_bundle reports what is wrong
    return spec.parts[0].part_number


def _eval_pairs(args: argparse.Namespace, index: DatasetIndex) -> int:
    part = args.part_number or _any_part(args.model)
    bundle = load_bundle(args.model, threads=args.threads, part_number=part)
    if bundle.manifest.task != "reference":
        raise ConfigError(
            f"{args.data}: template/test pairs are evaluated with a reference bundle; "
            f"{args.model} is a {bundle.manifest.task} bundle"
        )
    summary = evaluate_pairs(
        sample_cases(index.test_samples()), bundle=bundle, policy=policy_for(bundle), progress=not args.no_progress
    )
    summary["dataset"] = {"root": str(index.root), "layout": index.layout}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    op, lat = summary["operating_point"], summary["latency_ms"]

    def f(v: Any) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    sys.stdout.write(
        f"{summary['n_good']} good, {summary['n_defect']} defective, {summary['n_boxes']} boxes | AUROC "
        f"{f(summary['auroc'])} | box recall {f(op['box_recall'])} at {f(op['false_boxes_per_image'])} false "
        f"boxes/image | escape rate {f(op['escape_rate'])} | reasons {summary['reasons']}\n"
    )
    for label, rate in summary["recall_per_type"].items():
        sys.stdout.write(f"  {label}: {rate:.1%} of boxes found\n")
    if summary["defect_code_accuracy"] is not None:
        sys.stdout.write(f"defect code right on {summary['defect_code_accuracy']:.1%} of the boxes found\n")
    if lat["n"]:
        sys.stdout.write(
            f"latency ms (registration included, decode excluded): p50 {lat['p50']:.2f}  p99 {lat['p99']:.2f}\n"
        )
    return 0


def _print_summary(s: dict[str, Any]) -> None:
    def f(v: Any, pct: bool = False) -> str:
        return "n/a" if v is None else (f"{v:.1%}" if pct else f"{v:.4f}")

    lat = s["latency_ms"]
    sys.stdout.write(
        f"{s['n_good']} good, {s['n_defect']} defective | AUROC {f(s['auroc'])} | F1 {f(s['f1'])} | "
        f"false rejects at zero escapes {f(s['false_reject_rate_at_zero_escape'], True)}\n"
        f"operating point: false-reject rate {f(s['operating_point']['false_reject_rate'], True)}, "
        f"escape rate {f(s['operating_point']['escape_rate'], True)}, defect-type accuracy "
        f"{f(s['defect_type_accuracy'], True)}\n"
    )
    op = s["operating_point"]
    titles = (("stated by the bundle (its validation parts)", "stated"), ("measured on this data", "measured"))
    for title, key in titles:
        if op.get(key) is not None:
            sys.stdout.write(
                f"{title}:\n"
                + "".join(f"  {line}\n" for line in describe_operating_point(OperatingPoint.model_validate(op[key])))
            )
    if op.get("stated") is None:
        sys.stdout.write("stated by the bundle: no rates (bundle trained before rates were recorded)\n")
    for label, rate in s["per_class_detection"].items():
        sys.stdout.write(f"  {label}: {rate:.1%} detected\n")
    if lat["n"]:
        sys.stdout.write(f"latency ms (decode excluded): p50 {lat['p50']:.2f}  p99 {lat['p99']:.2f}\n")
    for bad in s["unreadable"]:
        sys.stdout.write(f"UNREADABLE {bad['error']}\n")


def _image_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files.extend(sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES))
        else:
            files.append(p)
    return files


def _inspect(args: argparse.Namespace) -> int:
    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:  # a usage error (exit 2); an unreadable image that exists is still judged FAIL below
        raise ConfigError(f"no such file or folder: {', '.join(missing)}")
    bundle = load_bundle(args.model, threads=args.threads, part_number=args.part_number)
    policy = policy_for(bundle)
    results, latencies = [], []
    for path in _image_files(args.paths):
        try:
            image = read_image(path)
        except ImageDecodeError as exc:
            results.append({"file": str(path), "verdict": "FAIL", "reasons": ["decode_error"], "error": str(exc)})
            sys.stdout.write(f"FAIL    {'-':>9}  {'decode_error':<16} {'-':>8}  {path}  ({exc})\n")
            continue
        j = judge_image(image, bundle=bundle, policy=policy)
        latencies.append(j.latency_ms)
        results.append(_row(path, j))
        if args.heatmaps and j.prediction is not None:
            level = bundle.manifest.thresholds.map_at
            _write_heatmap(args.heatmaps / f"{path.stem}_heatmap.png", image, j, level=level)
    _print_inspect_summary(results, latencies)
    if args.json:
        args.json.write_text(json.dumps({"results": results}, indent=2) + "\n", encoding="utf-8")
    return 0


def _row(path: Path, j: Judgement) -> dict[str, Any]:
    p = j.prediction
    score = p.score if p is not None else None
    code = (p.defect_code if p is not None else None) or ("-" if j.error is None else j.decision.reasons[0])
    sys.stdout.write(
        f"{j.decision.verdict.value:<7} {score if score is not None else float('nan'):>9.4f}  "
        f"{code:<16} {j.latency_ms:>6.2f}ms  {path}\n"
    )
    return {
        "file": str(path),
        "verdict": j.decision.verdict.value,
        "reasons": list(j.decision.reasons),
        "score": score,
        "defect_code": p.defect_code if p else None,
        "latency_ms": j.latency_ms,
        "error": j.error,
    }


def _write_heatmap(dest: Path, image: np.ndarray, j: Judgement, *, level: float) -> None:
    assert j.prediction is not None
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(encode_png(render_overlay(image, j.prediction, level=level)))


def _print_inspect_summary(results: list[dict[str, Any]], latencies: list[float]) -> None:
    counts = {v: sum(1 for r in results if r["verdict"] == v) for v in ("PASS", "REVIEW", "FAIL")}
    line = f"{len(results)} images: {counts['PASS']} PASS, {counts['REVIEW']} REVIEW, {counts['FAIL']} FAIL"
    if latencies:
        arr = np.array(latencies)
        line += f"; latency p50 {np.percentile(arr, 50):.2f} ms, p99 {np.percentile(arr, 99):.2f} ms"
    sys.stdout.write(line + "\n")


def _registry(args: argparse.Namespace) -> ModelRegistry:
    return ModelRegistry(load_settings(data_dir=args.data_dir).data_dir / "models")


def _models_list(args: argparse.Namespace) -> int:
    for e in _registry(args).list():
        sys.stdout.write(f"{'*' if e.active else ' '} {e.name} {e.version} {e.sha256[:12]} {e.path}\n")
    return 0


def _models_install(args: argparse.Namespace) -> int:
    registry = _registry(args)
    if not args.activate:
        entry = registry.install(args.bundle)
        sys.stdout.write(f"installed {entry.name} {entry.version} at {entry.path}\n")
        return 0
    manifest = read_manifest(args.bundle)
    signer = _check_acceptance(args, manifest)
    entry = registry.install(args.bundle)
    sys.stdout.write(f"installed {entry.name} {entry.version} at {entry.path}\n")
    _activate(args, registry, manifest, signer=signer)
    return 0


def _models_activate(args: argparse.Namespace) -> int:
    registry = _registry(args)
    manifest = read_manifest(registry.resolve(args.name, args.version))
    _refuse_controlled(args, manifest)
    _activate(args, registry, manifest, signer=_check_acceptance(args, manifest))
    return 0


def _refuse_controlled(args: argparse.Namespace, manifest: ModelManifest) -> None:
    """A version whose promotion criteria were fixed goes on the line by promotion only."""
    if missing_sqlite_store(load_settings(data_dir=args.data_dir).resolved_database_url) is not None:
        return  # no store yet: nothing can be under promotion control
    from vinspect.store import session_scope
    from vinspect.store.promotion import under_promotion_control

    with store_engine(args, must_exist=True) as engine, session_scope(engine, readonly=True) as session:
        controlled = under_promotion_control(session=session, name=manifest.name, version=manifest.version)
    if controlled:
        raise ModelError(
            f"{manifest.name} {manifest.version} is under promotion control: promote it "
            f"(vinspect models promote {manifest.name} {manifest.version}) after two signatures"
        )


def _check_acceptance(args: argparse.Namespace, manifest: ModelManifest) -> int | None:
    """Refuse a bundle with warnings unless accepted; returns the signer's user id (password checked)."""
    warnings = activation_warnings(manifest)
    if not warnings:
        return None
    if not args.accept_risk:
        stated = "".join(f"\n  {line}" for line in stated_lines(manifest))
        raise ModelError(
            f"refused to activate {manifest.name} {manifest.version}: it cannot meet its targets. "
            f"Stated rates (validation):{stated}\nTo run it anyway, a quality engineer accepts these rates: "
            "add --accept-risk --user NAME --reason TEXT (the password is asked; the acceptance is signed "
            "and audited)"
        )
    if not args.user or not args.reason or not args.reason.strip():
        raise ConfigError("--accept-risk needs --user (a quality engineer) and --reason")
    with store_engine(args) as engine:
        return verify_signer(args, engine, f"model {manifest.name}@{manifest.version}")


def record_accepted_risk(session: Any, manifest: ModelManifest, *, signer: int | None, reason: str) -> Any:
    """Record the signed acceptance of a bundle's stated rates given at the shell (the activation's
    audit rows, signed by ``signer``, source ``cli:<login>``), in the caller's transaction."""
    from vinspect.store.model_acceptance import record_model_activation

    return record_model_activation(
        session=session,
        user_id=signer,
        actor=f"user:{signer}",
        name=manifest.name,
        version=manifest.version,
        sha256=manifest.sha256,
        warnings=activation_warnings(manifest),
        rates=stated_rates(manifest),
        reason=reason,
        source=f"cli:{getpass.getuser()}"[:128],
        accept_risk=True,
    )


def _activate(
    args: argparse.Namespace, registry: ModelRegistry, manifest: ModelManifest, *, signer: int | None
) -> None:
    """Activate; with a signer, the signed acceptance and the switch share one transaction."""
    if signer is None:
        registry.activate(manifest.name, manifest.version)
        sys.stdout.write(f"{manifest.name}: active version is now {manifest.version}\n")
        return
    from vinspect.errors import StateError
    from vinspect.store import session_scope

    try:
        with store_engine(args) as engine, session_scope(engine) as session:
            record = record_accepted_risk(session, manifest, signer=signer, reason=args.reason)
            registry.activate(manifest.name, manifest.version)
    except StateError as exc:
        raise ConfigError(str(exc)) from exc
    sys.stdout.write(
        f"{manifest.name}: active version is now {manifest.version} (risk accepted by {args.user}, "
        f"signature {record.signature_id})\n"
    )
