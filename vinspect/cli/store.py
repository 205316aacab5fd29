"""``vinspect ncr|audit|backup|restore|evidence|outbox``: the NCR store from the command line.

Every subcommand takes ``--data-dir`` (default ``./vinspect-data``) and ``--database-url``
(default ``sqlite:///<data_dir>/vinspect.db``, see :func:`store_location`). Exit codes: 0 ok,
1 a check found problems (verify, scrub, undelivered NCRs), 2 an error (raised as VinspectError
and reported by the CLI's main).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from vinspect.cli.store_access import store_engine, store_location
from vinspect.errors import ConfigError, StoreError
from vinspect.store import repository
from vinspect.store.audit import AuditEntry, ChainAnchor, append_audit, chain_head, links_after, verify_chain
from vinspect.store.audit_key import ANCHOR_FILE, KEY_FILE, load_keyring, read_anchor, rotate_key
from vinspect.store.backup import backup_store, restore_store
from vinspect.store.canonical import format_utc
from vinspect.store.db import session_scope
from vinspect.store.evidence import EvidenceStore, scrub
from vinspect.store.export import ExportFormat, export_ncrs, export_to_path
from vinspect.store.ncr import NcrFilter, NcrStatus
from vinspect.store.outbox import OutboxRelay, RelayConfig
from vinspect.store.recovery import all_skipped_ranges
from vinspect.store.roles import grant_app_role
from vinspect.store.verify import verify_store

__all__ = ["register", "store_location"]


def _common(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--data-dir", type=Path, default=None, help="default: VINSPECT_DATA_DIR or ./vinspect-data")
    parser.add_argument("--database-url", default=None, help="default sqlite:///<data-dir>/vinspect.db")
    return parser


def _time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        # argparse turns this into "argument --since: ..." and exit 2 (no traceback).
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time (e.g. 2026-01-31 or 2026-01-31T08:00:00Z)"
        ) from exc
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", type=_time, default=None, help="detected at or after (ISO 8601, UTC)")
    parser.add_argument("--until", type=_time, default=None, help="detected before (ISO 8601, UTC)")
    parser.add_argument("--station", default=None, help="only NCRs from this station id")
    parser.add_argument("--status", choices=[s.value for s in NcrStatus], default=None, help="only NCRs in this status")
    parser.add_argument("--defect-code", default=None, help="only NCRs with this machine defect code")


def _filter_of(args: argparse.Namespace) -> NcrFilter:
    return NcrFilter(
        since=args.since,
        until=args.until,
        station_id=args.station,
        status=NcrStatus(args.status) if args.status else None,
        defect_code=args.defect_code,
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``ncr``, ``audit``, ``backup``, ``restore``, ``evidence``, ``outbox`` and ``db``."""
    _register_ncr(sub)
    audit = sub.add_parser("audit", help="audit trail")
    audit_verbs = audit.add_subparsers(dest="verb", required=True)
    verify = _common(audit_verbs.add_parser("verify", help="verify the hash chain and every record"))
    verify.add_argument("--anchor", type=Path, default=None, help="chain head exported earlier (JSON)")
    verify.add_argument("--write-anchor", type=Path, default=None, help="write the current head here")
    verify.set_defaults(handler=_audit_verify)
    rotate = _common(
        audit_verbs.add_parser(
            "rotate-key", help="add a new current HMAC key to <data-dir>/audit-key (older keys kept to verify old rows)"
        )
    )
    rotate.set_defaults(handler=_audit_rotate_key)
    backup = _common(sub.add_parser("backup", help="verified backup (SQLite online backup / pg_dump)"))
    backup.add_argument("--out", type=Path, required=True, help="backup file to write")
    backup.set_defaults(handler=_backup)
    restore = _common(sub.add_parser("restore", help="restore a verified backup into an empty store"))
    restore.add_argument(
        "--from", dest="source", type=Path, required=True, help="a backup written by `vinspect backup`"
    )
    restore.set_defaults(handler=_restore)
    evidence = sub.add_parser("evidence", help="evidence files")
    evidence_verbs = evidence.add_subparsers(dest="verb", required=True)
    _common(evidence_verbs.add_parser("scrub", help="re-hash every referenced file")).set_defaults(handler=_scrub)
    outbox = sub.add_parser("outbox", help="deliver queued NCR revisions to the QMS")
    outbox_verbs = outbox.add_subparsers(dest="verb", required=True)
    drain = _common(outbox_verbs.add_parser("drain", help="POST pending revisions to a webhook"))
    drain.add_argument("--url", required=True, help="the QMS webhook that receives each NCR revision (POST)")
    drain.add_argument("--timeout-s", type=float, default=5.0, help="per-request timeout (default 5)")
    drain.add_argument("--max-seconds", type=float, default=60.0, help="stop draining after this long (default 60)")
    drain.set_defaults(handler=_outbox_drain)
    database = sub.add_parser("db", help="database administration (PostgreSQL)")
    db_verbs = database.add_subparsers(dest="verb", required=True)
    grant = _common(
        db_verbs.add_parser(
            "grant", help="as the schema owner: let an existing role read and append quality records, nothing more"
        )
    )
    grant.add_argument("--role", required=True, help="the role the station and the web app log in as")
    grant.set_defaults(handler=_db_grant)


def _register_ncr(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ncr = sub.add_parser("ncr", help="list, show and export nonconformance reports")
    verbs = ncr.add_subparsers(dest="verb", required=True)
    listing = _common(verbs.add_parser("list", help="one line per NCR"))
    _filters(listing)
    listing.add_argument("--limit", type=int, default=100, help="most NCRs listed (default 100)")
    listing.set_defaults(handler=_ncr_list)
    show = _common(verbs.add_parser("show", help="one NCR as JSON"))
    show.add_argument("ref", help="NCR uuid or number (NCR-2026-000123)")
    show.set_defaults(handler=_ncr_show)
    export = _common(verbs.add_parser("export", help="JSON, CSV or JSON Lines (schema ncr-v1)"))
    _filters(export)
    export.add_argument(
        "--format", choices=[f.value for f in ExportFormat], default="json", help="file format (default json)"
    )
    export.add_argument("--out", type=Path, default=None, help="file to write (default: stdout)")
    export.set_defaults(handler=_ncr_export)


def _out(text: str) -> None:
    sys.stdout.write(text)


def _ncr_list(args: argparse.Namespace) -> int:
    with store_engine(args, must_exist=True) as engine, session_scope(engine, readonly=True) as session:
        for doc in repository.list_ncrs(_filter_of(args), session=session, limit=args.limit):
            _out(
                f"{doc['ncr_number']}  {doc['ncr_uuid']}  {doc['status']:<13}  {doc['station_id']}  "
                f"{doc['defect_code']}  {doc['detected_at']}\n"
            )
    return 0


def _ncr_show(args: argparse.Namespace) -> int:
    with store_engine(args, must_exist=True) as engine, session_scope(engine, readonly=True) as session:
        uuid = repository.resolve_ncr(args.ref, session=session)
        doc = None if uuid is None else repository.get_ncr(uuid, session=session)
    if doc is None:
        raise StoreError(f"NCR {args.ref} not found")
    _out(json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=True) + "\n")
    return 0


def _ncr_export(args: argparse.Namespace) -> int:
    fmt = ExportFormat(args.format)
    with store_engine(args, must_exist=True) as engine:
        with session_scope(engine, readonly=True) as session:
            if args.out is None:
                summary = export_ncrs(sys.stdout, session=session, fmt=fmt, filters=_filter_of(args))
            else:
                summary = export_to_path(args.out, session=session, fmt=fmt, filters=_filter_of(args))
        with session_scope(engine) as session:
            append_audit(
                AuditEntry(
                    actor="system:cli",
                    action="ncr.export_file",
                    entity="export",
                    entity_id=fmt.value,
                    new_value=str(summary.count),
                    source=str(args.out or "stdout")[:128],
                ),
                session=session,
            )
    if args.out is not None:
        sys.stderr.write(f"exported {summary.count} NCR(s) as {fmt.value} to {args.out}\n")
    return 0


def _audit_verify(args: argparse.Namespace) -> int:
    data_dir, _ = store_location(args.data_dir, args.database_url)
    ring = load_keyring(data_dir / KEY_FILE)
    anchor = None
    if args.anchor is not None:
        try:
            anchor = ChainAnchor(**json.loads(args.anchor.read_text("utf-8")))
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"anchor file {args.anchor}: {exc}") from exc
    signed = read_anchor(data_dir / ANCHOR_FILE, ring)
    with store_engine(args, must_exist=True) as engine, session_scope(engine, readonly=True) as session:
        signed_anchor = None if signed is None else ChainAnchor(seq=signed.seq, row_hash=signed.row_hash)
        report = verify_store(session=session, anchor=anchor or signed_anchor, keyring=ring)
        tail = None
        if anchor is not None and signed_anchor is not None and report.chain.ok:  # both: check the second too
            tail = verify_chain(session=session, anchor=signed_anchor, keyring=ring)
        head = chain_head(session)
        uncovered = links_after(session, signed.seq) if signed is not None else None
        skips = all_skipped_ranges(session=session)
    chain = report.chain
    ok = report.ok and (tail is None or tail.ok)
    _out(f"integrity: {report.integrity}\naudit rows checked: {chain.rows_checked}\n")
    if chain.unkeyed:
        _out(f"unkeyed rows: {chain.unkeyed} (written before the store had an audit key: plain hashes only)\n")
    if ring is None:
        _out(f"audit key: none at {data_dir / KEY_FILE}; HMACs of {chain.keyed_unchecked} keyed row(s) NOT checked\n")
    else:
        _out(f"audit key: {len(ring.keys)} key(s); HMAC checked on {chain.rows_checked - chain.unkeyed} row(s)\n")
    if signed is None:
        _out(f"signed anchor: none at {data_dir / ANCHOR_FILE}\n")
    else:
        _out(f"signed anchor: seq {signed.seq} ({signed.at})\n")
        if uncovered is not None and uncovered[0]:
            count, first, last = uncovered
            _out(
                f"  {count} newer link(s) (written {format_utc(first) if first else '?'} .. "
                f"{format_utc(last) if last else '?'}) not covered by the signed anchor yet: a running writer "
                "anchors them at most 0.1 s after its commit; a writer killed in that time leaves them uncovered "
                "until its next commit (deleting them would go unnoticed until then)\n"
            )
    if not chain.ok:
        _out(f"FIRST BROKEN LINK: seq {chain.broken_seq}: {chain.problem}\n")
    elif tail is not None and not tail.ok:
        _out(f"FIRST BROKEN LINK: seq {tail.broken_seq}: {tail.problem} (signed anchor {data_dir / ANCHOR_FILE})\n")
    for problem in report.problems:
        _out(f"RECORD: {problem}\n")
    for station_id, ranges in sorted(skips.items()):  # not a problem: each skip is itself an audit link
        shown = ", ".join(f"{first}..{last}" for first, last in ranges)
        _out(f"part numbers skipped after a power cut or system crash: station {station_id}: {shown}\n")
    if args.write_anchor is not None and head is not None and ok:
        args.write_anchor.write_text(json.dumps({"seq": head.seq, "row_hash": head.row_hash}) + "\n", "utf-8")
    _out("OK\n" if ok else "FAILED\n")
    return 0 if ok else 1


def _audit_rotate_key(args: argparse.Namespace) -> int:
    data_dir, _ = store_location(args.data_dir, args.database_url)
    if not data_dir.is_dir():
        raise ConfigError(f"data directory {data_dir} does not exist")
    ring = rotate_key(data_dir)
    _out(
        f"audit key {ring.current} is now current in {data_dir / KEY_FILE} ({len(ring.keys)} key(s) kept); "
        "restart the station and the web app to sign with it\n"
    )
    return 0


def _backup(args: argparse.Namespace) -> int:
    with store_engine(args, must_exist=True) as engine:
        manifest = backup_store(engine, args.out)
    _out(f"backup {args.out}: verified, sha256 {manifest.file_sha256}, counts {manifest.counts}\n")
    return 0


def _restore(args: argparse.Namespace) -> int:
    data_dir, url = store_location(args.data_dir, args.database_url)
    data_dir.mkdir(parents=True, exist_ok=True)
    stale = data_dir / ANCHOR_FILE  # the anchor of the store being replaced; the restore writes a new one
    if stale.exists():
        stale.unlink()
        sys.stderr.write(f"removed {stale}: it anchored the store being replaced\n")
    ring = load_keyring(data_dir / KEY_FILE)
    report = restore_store(args.source, url=url, keyring=ring, anchor_path=data_dir / ANCHOR_FILE if ring else None)
    _out(f"restored {args.source}: verified, counts {report.counts}\n")
    return 0


def _scrub(args: argparse.Namespace) -> int:
    data_dir, _ = store_location(args.data_dir, args.database_url)
    with store_engine(args, must_exist=True) as engine, session_scope(engine, readonly=True) as session:
        report = scrub(EvidenceStore(data_dir / "evidence"), session=session)
    _out(f"evidence files checked: {report.checked}\n")
    for digest in report.missing:
        _out(f"MISSING: {digest}\n")
    for digest in report.altered:
        _out(f"ALTERED: {digest}\n")
    _out("OK\n" if report.ok else "FAILED\n")
    return 0 if report.ok else 1


def _db_grant(args: argparse.Namespace) -> int:
    with store_engine(args, must_exist=True) as engine:
        statements = grant_app_role(engine, args.role)
    _out("".join(f"{statement};\n" for statement in statements))
    return 0


def _outbox_drain(args: argparse.Namespace) -> int:
    with store_engine(args, must_exist=True) as engine:
        relay = OutboxRelay(engine, RelayConfig(url=args.url, timeout_s=args.timeout_s))
        summary = relay.drain(max_seconds=args.max_seconds)
    _out(
        f"delivered {summary.delivered}, retried {summary.retried}, parked {summary.parked}, "
        f"pending {summary.pending}\n"
    )
    return 0 if summary.pending == 0 and summary.parked == 0 else 1
