"""``vinspect config approve|show|history``: the station file as a signed controlled document.

``show`` prints the effective configuration's hash, whether it is approved, and what changed
against the station's last approved version; ``approve`` signs it (a quality engineer or admin,
password re-entry, one signature: see :mod:`vinspect.store.station_configs` for why one);
``history`` lists every approved version of a station. A store-backed ``vinspect run`` starts
only with an approved configuration (:mod:`vinspect.cli.config_control`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from vinspect.cli.promotion import verify_signer
from vinspect.cli.store_access import store_engine
from vinspect.errors import ConfigError, StateError
from vinspect.station_file import StationConfig, load_station
from vinspect.store import session_scope
from vinspect.store import station_configs as configs

__all__ = ["register"]

_DATA_HELP = "default: VINSPECT_DATA_DIR or ./vinspect-data"


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``config``."""
    group = sub.add_parser("config", help="station configuration versions: show, approve (signed), history")
    verbs = group.add_subparsers(dest="verb", required=True, metavar="VERB")
    show = verbs.add_parser("show", help="the station file's configuration hash, its approval and what changed")
    show.add_argument("--station", type=Path, required=True, help="station YAML")
    show.add_argument("--data-dir", type=Path, default=None, help=_DATA_HELP)
    show.set_defaults(handler=_show)
    approve = verbs.add_parser(
        "approve", help="sign the station file's configuration (quality engineer or admin; password asked)"
    )
    approve.add_argument("--station", type=Path, required=True, help="station YAML")
    approve.add_argument("--data-dir", type=Path, default=None, help=_DATA_HELP)
    approve.add_argument("--user", required=True, help="the signer (quality engineer or admin)")
    approve.add_argument("--reason", required=True, help="why this change (audited)")
    approve.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    approve.set_defaults(handler=_approve)
    history = verbs.add_parser("history", help="every approved configuration version of a station, as JSON")
    history.add_argument("station_id", help="station id")
    history.add_argument("--data-dir", type=Path, default=None, help=_DATA_HELP)
    history.set_defaults(handler=_history)


def _previous(session: Any, station: StationConfig) -> configs.ConfigApproval | None:
    history = configs.station_history(session=session, station_id=station.station_id)
    return history[-1] if history else None


def _show(args: argparse.Namespace) -> int:
    station = load_station(args.station)
    digest = station.config_sha256()
    with store_engine(args) as engine, session_scope(engine, readonly=True) as session:
        done = configs.approved(session=session, station_id=station.station_id, config_sha256=digest)
        last = _previous(session, station)
    sys.stdout.write(f"station {station.station_id}: {args.station} configuration {digest}\n")
    if done is not None:
        sys.stdout.write(f"approved by {done.approved_by} at {done.approved_at:%Y-%m-%d %H:%M:%S} UTC: {done.reason}\n")
        return 0
    sys.stdout.write("NOT approved: a store-backed station refuses to start with it\n")
    if last is None:
        sys.stdout.write("no earlier version of this station is approved\n")
    else:
        sys.stdout.write(f"changes against the last approved version {last.short} ({last.approved_by}):\n")
        diff = configs.config_diff(last.config_text, station.config_text())
        sys.stdout.write("".join(f"  {line}\n" for line in diff))
    return 1


def _approve(args: argparse.Namespace) -> int:
    station = load_station(args.station)
    text, digest = station.config_text(), station.config_sha256()
    with store_engine(args) as engine:
        user_id = verify_signer(args, engine, f"station config {station.station_id}@{digest[:12]}")
        try:
            with session_scope(engine) as session:
                last = _previous(session, station)
                approval = configs.approve_config(
                    session=session,
                    station_id=station.station_id,
                    config_text=text,
                    source_path=str(args.station.resolve()),
                    signer_user_id=user_id,
                    reason=args.reason,
                )
        except StateError as exc:
            raise ConfigError(str(exc)) from exc
    sys.stdout.write(
        f"approved configuration {approval.short} of station {station.station_id} ({args.station}); "
        f"signed by {approval.approved_by} (signature {approval.signature_id})\n"
    )
    if last is not None:
        sys.stdout.write(f"replaces {last.short}; changes:\n")
        sys.stdout.write("".join(f"  {line}\n" for line in configs.config_diff(last.config_text, text)))
    sys.stdout.write("a running station keeps its version until it is restarted\n")
    return 0


def _history(args: argparse.Namespace) -> int:
    with store_engine(args) as engine, session_scope(engine, readonly=True) as session:
        rows = configs.station_history(session=session, station_id=args.station_id)
    doc = [
        {
            "config_sha256": r.config_sha256,
            "previous_sha256": r.previous_sha256,
            "approved_by": r.approved_by,
            "approved_at": r.approved_at.isoformat(),
            "reason": r.reason,
            "source_path": r.source_path,
            "signature_id": r.signature_id,
            "config": json.loads(r.config_text),
        }
        for r in rows
    ]
    sys.stdout.write(json.dumps({"station_id": args.station_id, "versions": doc}, indent=2) + "\n")
    return 0
