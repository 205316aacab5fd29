"""``vinspect models distribute|distribution``: put one approved model version on chosen stations.

``distribute`` takes a version installed in this data directory's registry. The approval is the
one the rest of the product uses: a version under promotion control must have been promoted
(two signatures); any other version is a plain activation, and one whose stated rates carry
warnings needs ``--accept-risk`` (a quality engineer's signature, password re-entered), recorded in
the same transaction as the assignment. The bundle is packed into the store with its SHA-256, and
each chosen station pulls, verifies, gates and reports it (see :mod:`vinspect.store.model_pull`).
``distribution`` lists each station's running model, its assignment and the outcome it reported.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vinspect.cli.store_access import store_engine
from vinspect.errors import ConfigError, StateError
from vinspect.models.archive import archive_sha256, pack_bundle
from vinspect.models.manifest import read_manifest
from vinspect.models.registry import ModelRegistry
from vinspect.models.risk import activation_warnings
from vinspect.settings import load_settings

__all__ = ["register_verbs"]

_DATA_HELP = "default: VINSPECT_DATA_DIR or ./vinspect-data"


def register_verbs(verbs: argparse._SubParsersAction[Any]) -> None:
    """Add ``distribute`` and ``distribution`` to the ``models`` command group."""
    from vinspect.cli.model import _acceptance_options

    dist = verbs.add_parser(
        "distribute",
        help="assign an approved model version to chosen stations (they pull it, "
        "verify it, self-test it and report the switch)",
    )
    dist.add_argument("--name", required=True, help="model name")
    dist.add_argument("--version", required=True, help="version installed in this data directory's registry")
    dist.add_argument("--stations", default=None, help="comma-separated station ids (registered stations)")
    dist.add_argument("--line", default=None, help="every registered station of this line")
    dist.add_argument("--data-dir", type=Path, default=None, help=_DATA_HELP)
    _acceptance_options(dist)
    dist.set_defaults(handler=_distribute)
    show = verbs.add_parser("distribution", help="each station's running model, assignment and reported outcome")
    show.add_argument("--name", default=None, help="only stations assigned this model")
    show.add_argument("--data-dir", type=Path, default=None, help=_DATA_HELP)
    show.set_defaults(handler=_distribution)


def _actor() -> str:
    return f"cli:{getpass.getuser()}"[:128]


def _distribute(args: argparse.Namespace) -> int:
    from vinspect.cli.model import _check_acceptance, record_accepted_risk
    from vinspect.store import session_scope
    from vinspect.store.distribution import approval_of, distribute, resolve_stations

    registry = ModelRegistry(load_settings(data_dir=args.data_dir).data_dir / "models")
    folder = registry.resolve(args.name, args.version)
    manifest = read_manifest(folder)
    stations = [s.strip() for s in (args.stations or "").split(",") if s.strip()]
    if not stations and not args.line:
        raise ConfigError("name the stations (--stations a,b) or a line (--line L)")
    archive = pack_bundle(folder)
    digest = archive_sha256(archive)
    try:
        with store_engine(args) as engine:
            with session_scope(engine, readonly=True) as session:
                controlled = approval_of(
                    session=session, name=manifest.name, version=manifest.version, sha256=manifest.sha256
                )
            warnings = activation_warnings(manifest)
            signer = _check_acceptance(args, manifest) if controlled is None and warnings else None

            def call(session: Any) -> Any:
                approval = approval_of(
                    session=session, name=manifest.name, version=manifest.version, sha256=manifest.sha256
                )
                if approval is None and warnings:
                    record = record_accepted_risk(session, manifest, signer=signer, reason=args.reason)
                    approval = (
                        f"activation with the stated risk accepted by {args.user} (signature {record.signature_id})"
                    )
                elif approval is None:
                    approval = "activation (no promotion criteria fixed; the bundle meets its stated targets)"
                chosen = resolve_stations(session=session, station_ids=stations, line_id=args.line)
                return distribute(
                    session=session,
                    name=manifest.name,
                    version=manifest.version,
                    sha256=manifest.sha256,
                    archive=archive,
                    archive_sha256=digest,
                    station_ids=chosen,
                    approval=approval,
                    actor=_actor(),
                    reason=args.reason,
                    at=datetime.now(UTC),
                )

            with session_scope(engine) as session:
                assigned = call(session)
    except StateError as exc:
        raise ConfigError(str(exc)) from exc
    sys.stdout.write(
        f"assigned {manifest.name} {manifest.version} (model sha256 {manifest.sha256[:12]}, archive "
        f"{len(archive):,} bytes, sha256 {digest[:12]}) to {', '.join(a.station_id for a in assigned)}; "
        f"approval: {assigned[0].approval}.\nEach station pulls it, verifies it, runs its golden "
        "self-test and reports the switch or why it refused: vinspect models distribution\n"
    )
    return 0


def _distribution(args: argparse.Namespace) -> int:
    from vinspect.store import session_scope
    from vinspect.store.distribution import current_assignments
    from vinspect.store.stations import list_stations

    with store_engine(args) as engine, session_scope(engine, readonly=True) as session:
        stations = list_stations(session=session)
        assignments = current_assignments(session=session)
    rows = 0
    for st in stations:
        a = assignments.get(st.station_id)
        if args.name and (a is None or a.name != args.name):
            continue
        running = f"{st.model_name} {st.model_version} ({(st.model_sha256 or '')[:12]})" if st.model_name else "none"
        if a is None:
            assigned, outcome = "-", ""
        else:
            assigned = f"{a.name} {a.version} ({a.sha256[:12]})"
            outcome = a.outcome or "PENDING"
            if a.outcome_reason:
                outcome += f": {a.outcome_reason}"
        sys.stdout.write(
            f"{st.station_id}\tline {st.line_id or '-'}\trunning {running}\tassigned {assigned}\t{outcome}\n"
        )
        rows += 1
    if rows == 0:
        sys.stdout.write("no station matches\n")
    return 0
