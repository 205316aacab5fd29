"""``vinspect models criteria|evaluate|sign|promote|rollback|record``: a model under signed control.

The flow (see :mod:`vinspect.store.promotion`): install the candidate, fix its acceptance
criteria, evaluate it against the active model on a frozen set, two quality engineers (or
admins) other than its trainer sign, then promote: the registry's ACTIVE switches in the same
transaction as the audited promotion, and a running station hot-swaps to it after its golden
self-test. ``rollback`` puts the version the last promotion replaced back, with one signature (as
the Models page's rollback form does; a rollback is never undone by another rollback).
Every step is an audit row; ``record`` prints the model's controlled-document record.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import Any

from vinspect.cli.store_access import store_engine
from vinspect.errors import ConfigError, ModelError, StateError
from vinspect.models.evaluation_images import evaluation_dir
from vinspect.models.manifest import read_manifest
from vinspect.models.promotion_criteria import Criteria
from vinspect.models.registry import ModelRegistry
from vinspect.pipeline.shadow import read_shadow_stats
from vinspect.report.candidate_evaluation import evaluate_candidate, write_evaluation_images
from vinspect.settings import load_settings
from vinspect.store import promotion as promo
from vinspect.store import session_scope
from vinspect.store.audit import AuditEntry, append_audit
from vinspect.store.users import get_user

__all__ = ["register_verbs", "verify_signer"]

_DATA_HELP = "default: VINSPECT_DATA_DIR or ./vinspect-data"


def register_verbs(verbs: argparse._SubParsersAction[Any]) -> None:
    """Add the promotion verbs to the ``models`` command group."""
    crit = verbs.add_parser("criteria", help="fix a candidate's acceptance criteria (before it is evaluated)")
    _model_args(crit)
    crit.add_argument("--max-false-reject", type=float, default=None, help="share of good parts, e.g. 0.05")
    crit.add_argument("--max-escape", type=float, default=None, help="share of defects, e.g. 0.0")
    crit.add_argument("--min-auroc", type=float, default=None, help="image AUROC floor on the frozen set")
    crit.add_argument("--max-latency-ms", type=float, default=None, help="p99 ceiling, e.g. the station's deadline")
    crit.add_argument("--min-golden-detection", type=float, default=1.0, help="default 1.0 (every golden defect)")
    crit.add_argument("--min-shadow-parts", type=int, default=0, help="parts judged in shadow on the line")
    crit.add_argument(
        "--allow-more-false-rejects",
        action="store_true",
        help="do not require a false-reject rate at or below the champion's",
    )
    crit.add_argument("--trained-by", default=None, help="who trained it (default: the bundle's training record)")
    crit.add_argument("--reason", required=True, help="why these criteria")
    crit.set_defaults(handler=_criteria)
    ev = verbs.add_parser("evaluate", help="compare the candidate with the active model on a frozen set and record it")
    _model_args(ev)
    ev.add_argument("--data", type=Path, required=True, help="frozen evaluation set (vinspect dataset freeze)")
    ev.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (default 1)")
    ev.add_argument("--json", type=Path, default=None, help="also write the comparison as JSON here")
    ev.add_argument("--no-progress", action="store_true", help="no progress bar")
    ev.set_defaults(handler=_evaluate)
    sign = verbs.add_parser("sign", help="sign a candidate's promotion (password asked)")
    _model_args(sign)
    _signer_args(sign)
    sign.set_defaults(handler=_sign)
    prom = verbs.add_parser("promote", help="make a signed candidate that meets its criteria the active version")
    _model_args(prom)
    prom.set_defaults(handler=_promote)
    back = verbs.add_parser("rollback", help="put back the version the last promotion replaced (one signature)")
    back.add_argument("name", help="model name")
    back.add_argument("--data-dir", type=Path, default=None, help=_DATA_HELP)
    _signer_args(back)
    back.set_defaults(handler=_rollback)
    rec = verbs.add_parser("record", help="the model's controlled-document record (every audited step) as JSON")
    rec.add_argument("name", help="model name")
    rec.add_argument("--data-dir", type=Path, default=None, help=_DATA_HELP)
    rec.add_argument("--out", type=Path, default=None, help="file to write (default: stdout)")
    rec.set_defaults(handler=_record)


def _model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="model name")
    parser.add_argument("version", help="installed candidate version")
    parser.add_argument("--data-dir", type=Path, default=None, help=_DATA_HELP)


def _signer_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", required=True, help="the signer (quality engineer or admin)")
    parser.add_argument("--reason", required=True, help="the meaning of the signature in words")
    parser.add_argument("--password-stdin", action="store_true", help="read the password from stdin")


def _registry(args: argparse.Namespace) -> ModelRegistry:
    return ModelRegistry(load_settings(data_dir=args.data_dir).data_dir / "models")


def _actor() -> str:
    return f"cli:{getpass.getuser()}"[:128]


def verify_signer(args: argparse.Namespace, engine: Any, what: str) -> int:
    """The signer's user id after password re-entry (a failure is audited and refused)."""
    from vinspect.api.auth import PasswordService

    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass("password: ")
    with session_scope(engine, readonly=True) as session:
        user = get_user(session=session, username=args.user)
    if user is None or not user.active or not PasswordService().verify(password, user.password_hash):
        with session_scope(engine) as session:
            append_audit(
                AuditEntry(
                    actor=_actor(),
                    action="signature.failure",
                    entity="signing",
                    entity_id=what[:64],
                    source="cli",
                    reason="password re-entry failed",
                ),
                session=session,
            )
        raise ConfigError(f"signature refused: unknown user {args.user!r} or the password does not match")
    return user.id


def _run(engine: Any, call: Any) -> Any:
    try:
        with session_scope(engine) as session:
            return call(session)
    except StateError as exc:
        raise ConfigError(str(exc)) from exc


def _criteria(args: argparse.Namespace) -> int:
    manifest = read_manifest(_registry(args).resolve(args.name, args.version))
    criteria = Criteria(
        min_golden_detection=args.min_golden_detection,
        max_false_reject_rate=args.max_false_reject,
        max_escape_rate=args.max_escape,
        min_auroc=args.min_auroc,
        no_worse_false_reject_than_champion=not args.allow_more_false_rejects,
        max_latency_p99_ms=args.max_latency_ms,
        min_shadow_parts=args.min_shadow_parts,
    )
    trained_by = args.trained_by or manifest.training.trained_by
    with store_engine(args) as engine:
        digest = _run(
            engine,
            lambda s: promo.fix_criteria(
                session=s,
                name=manifest.name,
                version=manifest.version,
                sha256=manifest.sha256,
                trained_by=trained_by,
                criteria=criteria,
                actor=_actor(),
                reason=args.reason,
            ),
        )
    sys.stdout.write(
        f"criteria fixed for {manifest.name} {manifest.version} (sha256 {digest[:12]}; trained by "
        f"{trained_by or 'unknown'}): {json.dumps(criteria.model_dump(mode='json'))}\n"
    )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    data_dir = load_settings(data_dir=args.data_dir).data_dir
    shadow = _shadow_stats(args, data_dir)
    ev = evaluate_candidate(
        registry=_registry(args),
        name=args.name,
        version=args.version,
        data=args.data,
        shadow=shadow,
        threads=args.threads,
        progress=not args.no_progress,
    )
    m = read_manifest(_registry(args).resolve(args.name, args.version))
    with store_engine(args) as engine:
        digest = _run(
            engine,
            lambda s: promo.record_evaluation(
                session=s, name=m.name, version=m.version, sha256=m.sha256, evaluation=ev.evaluation, actor=_actor()
            ),
        )
    folder = evaluation_dir(data_dir, m.name, m.version, digest)
    changed = write_evaluation_images(folder, ev)  # for the Models page (named by the evidence's hash)
    if changed is not None:
        sys.stdout.write(f"changed verdicts: {len(changed)} (both heatmaps of each in {folder})\n")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(ev.doc, indent=2) + "\n", encoding="utf-8")
    with store_engine(args) as engine, session_scope(engine, readonly=True) as session:
        state = promo.candidate_state(session=session, name=m.name, version=m.version)
    active, frozen, e = ev.active_version, ev.frozen, ev.evaluation
    against = f"against {args.name} {active}" if active else "(no active version to compare with)"
    sys.stdout.write(
        f"evaluated {m.name} {m.version} {against} on {frozen.name} {frozen.version} "
        f"(evidence {digest[:12]}); golden defects failed {e.golden_defects_failed}/{e.golden_defects}\n"
    )
    if shadow is not None:
        sys.stdout.write(
            f"shadow on the line: {shadow['parts']} parts, agreement "
            f"{'n/a' if shadow.get('agreement') is None else format(shadow['agreement'], '.1%')}, "
            f"disagreements {shadow.get('disagree')}, dropped busy {shadow.get('dropped_busy')}\n"
        )
    sys.stdout.write(
        "criteria met\n" if not state.failures else "criteria NOT met:\n" + "".join(f"  {f}\n" for f in state.failures)
    )
    return 0 if not state.failures else 1


def _shadow_stats(args: argparse.Namespace, data_dir: Path) -> dict[str, Any] | None:
    """The candidate's shadow statistics: every store-backed station's (the store) and this data
    directory's (a store-less station), summed."""
    from vinspect.store.shadow_records import shadow_stats_with

    candidate = f"{args.name}@{args.version}"
    local = read_shadow_stats(data_dir / "shadow" / candidate)
    with store_engine(args) as engine, session_scope(engine, readonly=True) as session:
        return shadow_stats_with(session=session, candidate=candidate, local=local)


def _sign(args: argparse.Namespace) -> int:
    registry = _registry(args)
    manifest = read_manifest(registry.resolve(args.name, args.version))
    with store_engine(args) as engine:
        user_id = verify_signer(args, engine, f"model {manifest.name}@{manifest.version}")
        sig = _run(
            engine,
            lambda s: promo.sign_promotion(
                session=s, user_id=user_id, name=manifest.name, version=manifest.version, reason=args.reason
            ),
        )
        with session_scope(engine, readonly=True) as session:
            state = promo.candidate_state(session=session, name=manifest.name, version=manifest.version)
    sys.stdout.write(
        f"signed the promotion of {manifest.name} {manifest.version} (signature {sig}); "
        f"signatures {len(state.signers)}/2: {', '.join(state.signers)}\n"
    )
    if state.blockers:
        sys.stdout.write("still blocking promotion:\n" + "".join(f"  {b}\n" for b in state.blockers))
    return 0


def _promote(args: argparse.Namespace) -> int:
    registry = _registry(args)
    manifest = read_manifest(registry.resolve(args.name, args.version))
    previous = registry.active_version(manifest.name)

    def call(session: Any) -> Any:
        state = promo.promote(
            session=session, name=manifest.name, version=manifest.version, previous=previous, actor=_actor()
        )
        registry.activate(manifest.name, manifest.version)  # inside the transaction: no promotion without it
        return state

    with store_engine(args) as engine:
        state = _run(engine, call)
    sys.stdout.write(
        f"{manifest.name}: active version is now {manifest.version} (was {previous or 'none'}); "
        f"signed by {' and '.join(state.signers)}. A running station switches after its golden "
        "self-test.\n"
    )
    return 0


def _rollback(args: argparse.Namespace) -> int:
    registry = _registry(args)
    current = registry.active_version(args.name)
    if current is None:
        raise ModelError(f"{args.name}: no active version to roll back")
    with store_engine(args) as engine:
        with session_scope(engine, readonly=True) as session:
            target = promo.rollback_target(session=session, name=args.name, current=current)
        if target is None:
            raise ModelError(f"{args.name} {current}: {promo.NO_ROLLBACK_TARGET}")
        manifest = read_manifest(registry.resolve(args.name, target))
        user_id = verify_signer(args, engine, f"model {args.name}@{target}")

        def call(session: Any) -> int:
            sig = promo.record_rollback(
                session=session,
                user_id=user_id,
                name=args.name,
                from_version=current,
                to_version=target,
                sha256=manifest.sha256,
                reason=args.reason,
            )
            registry.activate(args.name, target)
            return int(sig)

        sig = _run(engine, call)
    sys.stdout.write(
        f"{args.name}: rolled back from {current} to {target} (sha256 {manifest.sha256[:12]}, "
        f"signature {sig}). A running station switches after its golden self-test.\n"
    )
    return 0


def _record(args: argparse.Namespace) -> int:
    with store_engine(args) as engine, session_scope(engine, readonly=True) as session:
        history = promo.model_history(session=session, name=args.name)
    registry = _registry(args)
    doc = {
        "model": args.name,
        "active_version": registry.active_version(args.name),
        "installed": [
            {
                "version": e.version,
                "sha256": e.sha256,
                "active": e.active,
                "trained_by": read_manifest(e.path).training.trained_by,
                "parent_version": read_manifest(e.path).training.parent_version,
            }
            for e in registry.list()
            if e.name == args.name
        ],
        "history": history,
    }
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    if args.out:
        args.out.write_text(text, encoding="utf-8")
        sys.stdout.write(f"wrote {len(history)} audited step(s) of {args.name} to {args.out}\n")
    else:
        sys.stdout.write(text)
    return 0
