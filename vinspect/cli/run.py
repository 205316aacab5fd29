"""``vinspect run``: the station runtime (camera → verdict → signal → record).

The composition root for the line: it loads the station file, gates the model, builds the
source, the signaller and the sinks, runs the pipeline until SIGTERM/SIGINT, ``--duration-s``,
``--max-parts`` or the end of a finite source, then prints the closing books (readable on a
terminal, one JSON line when piped or with ``--json``). Signal handlers are installed here and
only here (library code never installs them).

Books and part numbers carry over a restart, read from the store when the station has one (the
store is the truth: its committed rows are recounted, the next part sequence is one past the
highest committed one, so no part number is reused); the JSONL file is then a convenience copy
whose torn last line is truncated and whose missing committed records are re-derived from the
store. Without a store, the JSONL file is recounted. Part numbers handed out but never recorded
(a kill, a power cut) get explicit ``crash`` FAULT records, and numbers that may have been
handed out after a power cut are skipped on the record (:mod:`vinspect.cli.restart`,
:mod:`vinspect.pipeline.part_numbers`). The data directory is checked first
(:func:`vinspect.datadir.prepare_data_dir`: created if only it is missing; a missing parent,
an unwritable folder or a full disk are refused by name).

Exit codes: 0 books closed; 1 books did not close; 3 the model never passed the gate (the
station stayed PREOPERATIONAL and rejected every part).
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import Any

from vinspect.camera.base import FrameSource
from vinspect.cli.config_control import ConfigWatch, require_approval
from vinspect.cli.restart import recover
from vinspect.cli.run_summary import closing_json, closing_text
from vinspect.datadir import prepare_data_dir
from vinspect.errors import ConfigError, ModelError
from vinspect.fileperms import private_dir, restrict_umask
from vinspect.models.registry import ModelRegistry
from vinspect.pipeline.books import BookKeeper
from vinspect.pipeline.gating import gate_bundle, policy_for
from vinspect.pipeline.judge import Judge, unavailable_judge
from vinspect.pipeline.part_numbers import PartNumbers, mark_path
from vinspect.pipeline.record import InspectionSink, JsonlSink
from vinspect.pipeline.runner import InspectionPipeline
from vinspect.pipeline.shadow import ShadowSink
from vinspect.pipeline.signals import LogSignaller, NullSignaller, Signaller
from vinspect.pipeline.status import StatusWriter, status_path
from vinspect.pipeline.swap import ModelWatch, RegistryWatch
from vinspect.settings import Settings, load_settings
from vinspect.station_file import (
    JsonlSinkConfig,
    LogSignalConfig,
    ModbusSignalConfig,
    ModelByName,
    ModelByPath,
    MqttSignalConfig,
    NullSignalConfig,
    ShadowSinkConfig,
    StationConfig,
    StoreSinkConfig,
    load_station,
)

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``run``."""
    run = sub.add_parser("run", help="run the inspection station described by a station file")
    run.add_argument("--station", type=Path, required=True, help="station YAML (see deploy/config)")
    run.add_argument("--data-dir", type=Path, default=None, help="default: VINSPECT_DATA_DIR or ./vinspect-data")
    run.add_argument("--duration-s", type=float, default=None, help="stop after this many seconds")
    run.add_argument("--max-parts", type=int, default=None, help="stop after this many parts")
    run.add_argument(
        "--output",
        choices=["auto", "text", "json"],
        default="auto",
        help="closing report: text (readable), json (one line), auto: text on a terminal, else json",
    )
    run.add_argument("--json", dest="output", action="store_const", const="json", help="same as --output json")
    run.set_defaults(handler=_run)


def _judge(station: StationConfig, data_dir: Path) -> tuple[Judge, ModelWatch | None]:
    spec, p = station.model, station.policy
    watch: ModelWatch | None = None
    if isinstance(spec, ModelByName):
        registry = ModelRegistry(data_dir / "models")
        version = spec.version
        gate = gate_bundle(
            lambda: registry.resolve(spec.name, version),
            require_golden=p.require_golden,
            threads=station.ort_threads,
            part_number=spec.part_number,
            allow_spinning=station.ort_allow_spinning,
        )
        if version == "active":
            watch = RegistryWatch(registry, spec.name, current=registry.active_version(spec.name))
    else:
        gate = gate_bundle(
            spec.path,
            require_golden=p.require_golden,
            threads=station.ort_threads,
            part_number=spec.part_number,
            allow_spinning=station.ort_allow_spinning,
        )
    if gate.bundle is None:
        return unavailable_judge(gate.reason), watch
    overrides = station.pipeline_config().overrides
    try:
        policy = policy_for(gate.bundle, overrides)
    except ModelError as exc:
        return unavailable_judge(f"{gate.bundle.manifest.name} {gate.bundle.manifest.version}: {exc}"), watch
    return Judge(bundle=gate.bundle, policy=policy, unavailable_reason=gate.reason), watch


def _source(station: StationConfig) -> FrameSource:
    from vinspect.camera.factory import open_source

    return open_source(station.source, source_id=station.station_id)


def _signaller(station: StationConfig, source: FrameSource, *, stack: ExitStack) -> Signaller:
    cfg = station.signal
    if isinstance(cfg, NullSignalConfig):
        return NullSignaller()
    if isinstance(cfg, LogSignalConfig):
        return LogSignaller()
    if isinstance(cfg, ModbusSignalConfig):
        from vinspect.pipeline.signals.modbus import ModbusSignaller

        return stack.enter_context(
            ModbusSignaller(
                cfg.host,
                port=cfg.port,
                unit_id=cfg.unit_id,
                base=cfg.base,
                timeout_s=cfg.timeout_s,
                defect_codes=cfg.defect_codes,
            )
        )
    if isinstance(cfg, MqttSignalConfig):
        from vinspect.pipeline.signals.mqtt import MqttSignaller

        return stack.enter_context(
            MqttSignaller(
                cfg.host,
                port=cfg.port,
                station_id=station.station_id,
                topic_prefix=cfg.topic_prefix,
                keepalive_s=cfg.keepalive_s,
            )
        )
    from vinspect.pipeline.signals.camera_output import CameraOutputSignaller, HasLineOutputs

    if not isinstance(source, HasLineOutputs):
        raise ConfigError(
            f"signal.kind camera_output: source {station.source.kind!r} exposes no camera outputs. It needs a "
            "camera whose GenICam node map has the SFNC digital outputs (UserOutputSelector/UserOutputValue, "
            "routed to a line with LineSelector/LineMode/LineSource), and no frame source vinspect ships "
            "drives them (genicam's simulator viky.cti has none, so the path could not be tested); "
            "use signal.kind modbus or mqtt"
        )
    return CameraOutputSignaller(
        source.line_outputs(),
        accept_output=cfg.accept_output,
        heartbeat_output=cfg.heartbeat_output,
        pulse_ms=cfg.pulse_ms,
    )


def _store_sink(
    cfg: StoreSinkConfig, settings: Settings, *, stack: ExitStack, station_id: str
) -> tuple[InspectionSink, Any]:
    from vinspect.store import EvidenceStore, NcrDefaults, StoreSink, make_engine, upgrade
    from vinspect.store.audit_key import ANCHOR_FILE, attach, open_keyring
    from vinspect.store.db import is_sqlite, sqlite_path
    from vinspect.store.station_lock import station_lock

    engine = make_engine(settings.resolved_database_url, application_name=f"vinspect run {station_id}")
    stack.callback(engine.dispose)
    if is_sqlite(engine):
        stack.enter_context(station_lock(Path(sqlite_path(engine)), station_id))
    upgrade(engine)
    attach(engine, open_keyring(settings.data_dir), anchor_path=settings.data_dir / ANCHOR_FILE)
    sink = StoreSink(
        engine,
        EvidenceStore(settings.data_dir / "evidence"),
        defaults=NcrDefaults(**cfg.product.model_dump()),
        ncr_on_review=cfg.ncr_on_review,
        pass_sample_rate=cfg.pass_sample_rate,
    )
    return stack.enter_context(sink), engine


def _shadow_sink(cfg: ShadowSinkConfig, station: StationConfig, settings: Settings, engine: Any) -> ShadowSink:
    """The shadow candidate, gated like a hot-swap candidate (verified, golden self-test); with a store
    (``engine``) its statistics and disagreements go there, else under ``<data dir>/shadow/``."""
    spec = cfg.model
    if isinstance(spec, ModelByPath):
        path = spec.path
    else:
        path = ModelRegistry(settings.data_dir / "models").resolve(spec.name, spec.version)
    gate = gate_bundle(path, require_golden=station.policy.require_golden, threads=1, part_number=spec.part_number)
    if gate.bundle is None:
        raise ConfigError(f"sinks: shadow model {path}: {gate.reason}")
    m = gate.bundle.manifest
    active = station.model.name if isinstance(station.model, ModelByName) else str(station.model.path)
    return ShadowSink(
        gate.bundle,
        policy=policy_for(gate.bundle),
        out=settings.data_dir / "shadow" / f"{m.name}@{m.version}",
        deadline_ms=station.deadline_ms,
        queue_size=cfg.queue_size,
        active_model=active,
        recorder=None if engine is None else _shadow_recorder(engine, settings, station.station_id),
    )


def _shadow_recorder(engine: Any, settings: Settings, station_id: str) -> Any:
    from vinspect.store import EvidenceStore
    from vinspect.store.shadow_records import StoreShadowRecorder

    return StoreShadowRecorder(engine, EvidenceStore(settings.data_dir / "evidence"), station_id=station_id)


def _sinks(
    station: StationConfig,
    settings: Settings,
    *,
    stack: ExitStack,
) -> tuple[list[InspectionSink], Path | None, Any]:
    sinks: list[InspectionSink] = []
    jsonl: Path | None = None
    engine: Any = None
    built: dict[int, InspectionSink] = {}
    for i, cfg in enumerate(station.sinks):  # the store first: a shadow writes to it when there is one
        if isinstance(cfg, JsonlSinkConfig):
            jsonl = cfg.path if cfg.path.is_absolute() else settings.data_dir / cfg.path
            built[i] = stack.enter_context(JsonlSink(jsonl, fsync=cfg.fsync))
        elif not isinstance(cfg, ShadowSinkConfig):
            built[i], engine = _store_sink(cfg, settings, stack=stack, station_id=station.station_id)
    for i, cfg in enumerate(station.sinks):
        if isinstance(cfg, ShadowSinkConfig):
            built[i] = stack.enter_context(_shadow_sink(cfg, station, settings, engine))
    sinks.extend(built[i] for i in range(len(station.sinks)))
    return sinks, jsonl, engine


def _install_stop_handlers(stop: threading.Event, stack: ExitStack) -> None:
    def handler(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.signal(signum, handler)
        stack.callback(signal.signal, signum, previous)


def _wait(pipeline: InspectionPipeline, stop: threading.Event, *, duration_s: float | None) -> None:
    end = None if duration_s is None else time.monotonic() + duration_s
    while not stop.is_set() and not pipeline.wait(0.1):
        if end is not None and time.monotonic() >= end:
            return


def _run(args: argparse.Namespace) -> int:
    restrict_umask()  # the database, evidence and logs are the service group's only
    station = load_station(args.station)
    settings = load_settings(data_dir=args.data_dir)
    if prepare_data_dir(settings.data_dir):
        sys.stderr.write(f"created data directory {settings.data_dir}\n")
    private_dir(settings.data_dir)
    stop = threading.Event()
    with ExitStack() as stack:
        _install_stop_handlers(stop, stack)
        judge, watch = _judge(station, settings.data_dir)
        if judge.bundle is None:
            sys.stderr.write(f"station {station.station_id} stays PREOPERATIONAL: {judge.unavailable_reason}\n")
        sinks, jsonl, engine = _sinks(station, settings, stack=stack)
        config = _config_control(args, station, engine, stack=stack)
        watch = _follow_assignments(station, settings.data_dir, engine, judge, watch)
        recovered = recover(
            station.station_id, data_dir=settings.data_dir, policy=judge.policy, sinks=sinks, jsonl=jsonl, engine=engine
        )
        numbers = stack.enter_context(
            PartNumbers(mark_path(settings.data_dir, station.station_id), start=recovered.start)
        )
        source = _source(station)
        box: list[InspectionPipeline] = []
        endpoint = _serve_opcua(
            station, box, sinks, stack=stack, recipes=_recipe_book(station, settings.data_dir, engine)
        )
        pipeline = InspectionPipeline(
            source,
            judge=judge,
            signaller=_signaller(station, source, stack=stack),
            sinks=sinks,
            config=station.pipeline_config(max_parts=args.max_parts),
            watch=watch,
            books=BookKeeper(opening=recovered.books),
            on_admit=numbers.admit,
        )
        box.append(pipeline)

        def snapshot() -> Any:
            return dataclasses.replace(pipeline.status(), config=config())

        stack.enter_context(StatusWriter(status_path(settings.data_dir), snapshot=snapshot))
        _report_to_registry(station, pipeline, engine, stack=stack, opcua_endpoint=endpoint)
        _serve_metrics(station, pipeline, stack=stack)
        pipeline.start(first_part_seq=recovered.start)
        stack.callback(pipeline.stop)
        _wait(pipeline, stop, duration_s=args.duration_s)
    status = dataclasses.replace(pipeline.status(), config=config())
    as_text = args.output == "text" or (args.output == "auto" and sys.stdout.isatty())
    report = closing_text if as_text else closing_json
    sys.stdout.write(report(status.to_dict(), reconciled=status.books.discrepancy == 0))
    if judge.bundle is None:
        return 3
    return 0 if status.books.discrepancy == 0 else 1


def _follow_assignments(
    station: StationConfig, data_dir: Path, engine: Any, judge: Judge, watch: ModelWatch | None
) -> ModelWatch | None:
    """With a store, the station also follows its model assignment (``vinspect models distribute``)."""
    if engine is None:
        return watch
    from vinspect.store.model_pull import AssignmentWatch

    spec = station.model
    if isinstance(spec, ModelByName) and spec.version == "active":
        return AssignmentWatch(
            engine,
            station_id=station.station_id,
            registry=ModelRegistry(data_dir / "models"),
            name=spec.name,
            running=judge.ref,
        )
    pinned = (
        f"the station file pins model version {spec.version} of {spec.name}"
        if isinstance(spec, ModelByName)
        else f"the station file pins the bundle folder {spec.path}"
    )
    return AssignmentWatch(
        engine,
        station_id=station.station_id,
        registry=None,
        name=None,
        running=judge.ref,
        pinned=pinned + "; it follows assignments only with model: {name: NAME} (version active)",
    )


def _recipe_book(station: StationConfig, data_dir: Path, engine: Any) -> Any:
    """OPC UA recipe selection needs a store (what is approved for this station) and a registry model."""
    spec = station.model
    if station.opcua is None or engine is None or not isinstance(spec, ModelByName) or spec.version != "active":
        return None
    from vinspect.store.station_recipes import StationRecipes

    return StationRecipes(
        engine, station_id=station.station_id, registry=ModelRegistry(data_dir / "models"), name=spec.name
    )


def _config_control(
    args: argparse.Namespace, station: StationConfig, engine: Any, *, stack: ExitStack
) -> Callable[[], dict[str, Any]]:
    """A store-backed station starts only with an approved configuration and watches its file
    (:mod:`vinspect.cli.config_control`); returns what the status shows about the configuration."""
    if engine is None:  # no store: no approvals to check against; the hash is still recorded
        digest = station.config_sha256()
        return lambda: {"sha256": digest, "approved_by": None, "file_state": "not controlled (no store sink)"}
    approval = require_approval(engine, station, path=args.station, data_dir=args.data_dir)
    watch = stack.enter_context(ConfigWatch(args.station, running=station, approval=approval, engine=engine))
    return watch.status


def _serve_opcua(
    station: StationConfig,
    box: list[InspectionPipeline],
    sinks: list[InspectionSink],
    *,
    stack: ExitStack,
    recipes: Any = None,
) -> str | None:
    """Start the station's OPC UA server (``opcua:`` in the station file) and add its result sink."""
    cfg = station.opcua
    if cfg is None:
        return None
    import os

    try:
        from vinspect.opcua.server import OpcUaSettings, OpcUaSink, VisionServer
    except ImportError as exc:
        raise ConfigError(f"opcua: needs the plant extra (pip install 'vinspect[plant]'): {exc}") from exc
    settings = OpcUaSettings(
        host=cfg.host,
        port=cfg.port,
        username=cfg.username,
        password=os.environ.get(cfg.password_env) or None,
        allow_anonymous=cfg.allow_anonymous,
        certificate=cfg.certificate,
        private_key=cfg.private_key,
        allow_unsecured=cfg.allow_unsecured,
    )
    if cfg.username and not settings.password:
        raise ConfigError(
            f"opcua: user {cfg.username!r} needs a password in the environment variable {cfg.password_env}"
        )

    def snapshot() -> dict[str, Any]:
        return box[0].status().to_dict() if box else {"state": "PREOPERATIONAL", "model": None}

    server = stack.enter_context(
        VisionServer(settings, station_id=station.station_id, snapshot=snapshot, recipes=recipes)
    )
    sinks.append(OpcUaSink(server))
    sys.stderr.write(f"station {station.station_id}: OPC UA server on {server.endpoint}\n")
    return server.endpoint


def _report_to_registry(
    station: StationConfig,
    pipeline: InspectionPipeline,
    engine: Any,
    *,
    stack: ExitStack,
    opcua_endpoint: str | None = None,
) -> None:
    """With a store, the station registers and reports into it (the plant overview reads it)."""
    if engine is None:
        return
    from vinspect.store.stations import StationIdentity, StationReporter

    product = next((cfg.product for cfg in station.sinks if isinstance(cfg, StoreSinkConfig)), None)
    identity = StationIdentity(
        station_id=station.station_id,
        site_id=product.site_id if product else None,
        line_id=product.line_id if product else None,
        opcua_endpoint=opcua_endpoint,
        config_sha256=station.config_sha256(),
    )
    stack.enter_context(StationReporter(engine, identity, snapshot=lambda: pipeline.status().to_dict()))


def _serve_metrics(station: StationConfig, pipeline: InspectionPipeline, *, stack: ExitStack) -> None:
    if station.metrics_port is None:
        return
    from vinspect.pipeline.metrics import make_registry, serve_metrics

    server = serve_metrics(make_registry(pipeline.status), port=station.metrics_port)
    stack.callback(server.shutdown)
