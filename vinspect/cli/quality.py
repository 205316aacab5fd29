"""``vinspect report`` (HTML quality report with PNG charts) and ``vinspect spc baseline|check``."""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from vinspect.analytics.spc import freeze_baseline
from vinspect.cli.store import _common, _time
from vinspect.cli.store_access import store_engine
from vinspect.errors import StoreError
from vinspect.models.registry import ModelRegistry
from vinspect.quality.alarms import MqttAlarmPublisher, check_alarms
from vinspect.quality.validation import validation_scores
from vinspect.report.quality_report import write_quality_report
from vinspect.settings import load_settings
from vinspect.store.alarms import record_baseline
from vinspect.store.analytics_queries import Window, hourly_rollup, part_subgroups
from vinspect.store.analytics_rollup import roll_up
from vinspect.store.db import session_scope
from vinspect.store.evidence import EvidenceStore
from vinspect.store.review_queries import StoreHandle

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``report`` and ``spc``."""
    report = _common(
        sub.add_parser(
            "report", help="HTML quality report (KPIs, p-charts, Pareto, kappa, drift, alarms, CAPA) with PNG charts"
        )
    )
    report.add_argument("--since", type=_time, required=True, help="window start (ISO 8601, UTC)")
    report.add_argument("--until", type=_time, required=True, help="window end, exclusive (ISO 8601, UTC)")
    report.add_argument("--out", type=Path, required=True, help="folder for index.html and the PNG charts")
    report.add_argument("--station", default=None, help="only this station")
    report.set_defaults(handler=_report)
    spc = sub.add_parser("spc", help="p-chart limits and alarms")
    verbs = spc.add_subparsers(dest="verb", required=True, metavar="VERB")
    base = _common(verbs.add_parser("baseline", help="freeze p-chart limits from an in-control period"))
    base.add_argument("--station", required=True, help="the station whose p-chart limits are frozen")
    base.add_argument("--since", type=_time, required=True, help="baseline start (ISO 8601, UTC)")
    base.add_argument("--until", type=_time, required=True, help="baseline end, exclusive")
    base.add_argument("--reason", required=True, help="why this period is in control (audited)")
    base.add_argument("--min-subgroups", type=int, default=20, help="subgroups needed (default 20)")
    base.add_argument(
        "--subgroup-parts",
        type=int,
        default=None,
        metavar="N",
        help="subgroups of N consecutive parts instead of one hour (keep N x p-bar >= 5 where you can)",
    )
    base.add_argument(
        "--laney",
        action="store_true",
        help="a Laney p'-chart: limits widened by the baseline's z spread (large subgroups whose "
        "rates vary more than the binomial allows)",
    )
    base.set_defaults(handler=_baseline)
    check = _common(
        verbs.add_parser("check", help="evaluate Nelson rules 1-4 and drift; store, log and publish new alarms")
    )
    check.add_argument("--mqtt", default=None, metavar="HOST[:PORT]", help="publish new alarms to this broker")
    check.add_argument("--topic-prefix", default="vinspect/site/line", help="MQTT topic prefix")
    check.set_defaults(handler=_check)
    capa = sub.add_parser("capa", help="corrective actions (8D)")
    capa_verbs = capa.add_subparsers(dest="verb", required=True, metavar="VERB")
    opened = _common(
        capa_verbs.add_parser(
            "open", help="open a CAPA as a quality engineer (every step owned by them until reassigned in the app)"
        )
    )
    opened.add_argument("--as", dest="username", required=True, help="the quality engineer opening it")
    opened.add_argument("--title", required=True, help="one line naming the problem")
    opened.add_argument("--ncr", action="append", default=[], help="NCR number or uuid to link (repeat)")
    opened.add_argument("--code", default=None, help="defect code (opened from a Pareto bar when no --ncr)")
    opened.add_argument("--station", default=None, help="station the effectiveness check measures")
    opened.add_argument("--due-days", type=int, default=14, help="D7 due in this many days (earlier steps sooner)")
    opened.set_defaults(handler=_capa_open)


def _window(since: datetime, until: datetime) -> Window:
    try:
        return Window(since, until)
    except ValueError as exc:
        raise StoreError(str(exc)) from exc


def _registry(args: argparse.Namespace) -> ModelRegistry:
    return ModelRegistry(load_settings(data_dir=args.data_dir).data_dir / "models")


def _report(args: argparse.Namespace) -> int:
    window = _window(args.since, args.until)
    with store_engine(args, must_exist=True) as engine:
        roll_up(engine)  # count new rows into the hourly roll-up first (readers stay correct without it)
        with session_scope(engine, readonly=True) as session:
            index = write_quality_report(
                session, window, args.out, station_id=args.station, validation_scores=validation_scores(_registry(args))
            )
    sys.stdout.write(f"{index}\n")
    return 0


def _baseline(args: argparse.Namespace) -> int:
    window = _window(args.since, args.until)
    with store_engine(args, must_exist=True) as engine:
        if args.subgroup_parts is not None and args.subgroup_parts < 1:
            raise StoreError(f"--subgroup-parts {args.subgroup_parts}: at least 1")
        with session_scope(engine, readonly=True) as session:
            if args.subgroup_parts:
                groups = part_subgroups(window, session=session, station_id=args.station, size=args.subgroup_parts)
                defects, sizes = [g.rejects for g in groups], [g.size for g in groups]
            else:
                per_hour: dict[datetime, list[int]] = {}
                for r in hourly_rollup(window, session=session, station_id=args.station):
                    slot = per_hour.setdefault(r.hour, [0, 0])
                    slot[0] += r.model_rejects
                    slot[1] += r.count
                hours = sorted(per_hour)
                defects, sizes = [per_hour[h][0] for h in hours], [per_hour[h][1] for h in hours]
        try:
            base = freeze_baseline(defects, sizes, min_subgroups=args.min_subgroups, laney=args.laney)
        except ValueError as exc:
            raise StoreError(f"station {args.station}: {exc}") from exc
        with session_scope(engine) as session:
            record_baseline(
                session=session,
                station_id=args.station,
                chart="reject_rate",
                window_from=window.since,
                window_to=window.until,
                subgroup_minutes=60,
                p_bar=base.p_bar,
                subgroups=base.subgroups,
                parts=base.parts,
                defects=base.defects,
                actor=f"cli:{getpass.getuser()}"[:128],
                user_id=None,
                reason=args.reason,
                subgroup_parts=args.subgroup_parts,
                sigma_z=base.sigma_z if args.laney else None,
            )
    grouping = f"subgroups of {args.subgroup_parts} parts" if args.subgroup_parts else "hourly subgroups"
    laney = f", Laney sigma_z {base.sigma_z:.4f}" if args.laney else ""
    sys.stdout.write(
        f"{args.station}: p-bar {base.p_bar:.5f}{laney} frozen from {base.subgroups} {grouping} "
        f"({base.defects} model rejects of {base.parts} parts)\n"
    )
    return 0


def _check(args: argparse.Namespace) -> int:
    publish = None
    if args.mqtt:
        host, _, port = args.mqtt.partition(":")
        publish = MqttAlarmPublisher(host, int(port or 1883), args.topic_prefix)
    data_dir = load_settings(data_dir=args.data_dir).data_dir
    with store_engine(args, must_exist=True) as engine:
        store = StoreHandle(engine=engine, evidence=EvidenceStore(data_dir / "evidence"))
        roll_up(engine)
        now = datetime.now(UTC)
        new = check_alarms(store, now=now, validation_scores=validation_scores(_registry(args)), publish=publish)
    for a in new:
        sys.stdout.write(
            f"alarm {a.id}: {a.kind} {a.chart} rule {a.rule} on {a.station_id} from "
            f"{a.first_at:%Y-%m-%d %H:%M} to {a.last_at:%Y-%m-%d %H:%M} UTC\n"
        )
    sys.stdout.write(f"{len(new)} new alarm(s)\n")
    return 0


def _capa_open(args: argparse.Namespace) -> int:
    from vinspect.quality.effectiveness import freeze_capa_baseline
    from vinspect.store.capa import STEPS, open_capa
    from vinspect.store.repository import resolve_ncr
    from vinspect.store.users import get_user

    with store_engine(args, must_exist=True) as engine, session_scope(engine) as session:
        user = get_user(session=session, username=args.username)
        if user is None:
            raise StoreError(f"no user {args.username!r}")
        uuids = []
        for ref in args.ncr:
            uuid = resolve_ncr(ref, session=session)
            if uuid is None:
                raise StoreError(f"no NCR {ref}")
            uuids.append(uuid)
        now = datetime.now(UTC)
        codes = [args.code] if args.code else []
        baseline = freeze_capa_baseline(session, station_id=args.station, defect_codes=codes, until=now)
        span = max(len(STEPS), args.due_days)
        due = {s: now + timedelta(days=round((i + 1) * span / len(STEPS))) for i, s in enumerate(STEPS)}
        number = open_capa(
            session=session,
            user_id=user.id,
            title=args.title,
            source="ncr" if uuids else "pareto",
            source_ref=uuids[0] if uuids else f"pareto:{args.code or args.station}",
            ncr_uuids=uuids,
            defect_codes=codes,
            station_id=args.station,
            owners=dict.fromkeys(STEPS, user.id),
            due=due,
            baseline=baseline,
            client=f"cli:{getpass.getuser()}"[:128],
            at=now,
        )
    sys.stdout.write(f"{number}\n")
    return 0
