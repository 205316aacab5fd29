"""Issue 18: OPC 40100-1 recipe selection (recipe = model version) over OPC UA, with a real asyncua client.

A real pipeline (tiny ONNX models from a real registry, scripted parts, the registry's hot-swap
watch) behind a real server on loopback, with the recipe book of a SQLite store: versions 1 and 2
were distributed to this station, version 3 was distributed and refused. The MES lists the
recipes (1 and 2 only), is refused version 3 with the reason, prepares version 2, and sees
``InternalRecipeId`` change once the station switched after its golden self-test; each selection
is an audit row naming the OPC UA user.
"""

from __future__ import annotations

import asyncio
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from asyncua import Client, ua
from sqlalchemy import select

from testkit.bundles import write_golden_samples, write_tiny_bundle
from vinspect.camera.scripted import ScriptedSource, make_frame
from vinspect.models.archive import archive_sha256, pack_bundle
from vinspect.models.manifest import read_manifest
from vinspect.models.registry import ModelRegistry
from vinspect.opcua.server import NAMESPACE, OpcUaSettings, VisionServer
from vinspect.pipeline.gating import gate_bundle, policy_for
from vinspect.pipeline.judge import Judge
from vinspect.pipeline.record import ListSink
from vinspect.pipeline.runner import InspectionPipeline, PipelineConfig
from vinspect.pipeline.signals import RecordingSignaller
from vinspect.pipeline.swap import RegistryWatch
from vinspect.store import make_engine, session_scope, upgrade
from vinspect.store.distribution import distribute, report_outcome
from vinspect.store.station_recipes import StationRecipes
from vinspect.store.tables import AuditRecord

GOLDEN = [
    ("good", np.full((20, 20), 50, np.uint8), "PASS", 50 / 255),
    ("bad", np.full((20, 20), 200, np.uint8), "FAIL", 200 / 255),
]
PASSWORD = "line-7 mes secret"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_mes_selects_only_recipes_approved_for_the_station(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(engine)
    for version in ("1", "2", "3"):
        bundle = write_tiny_bundle(tmp_path / f"b{version}", version=version, doc=f"v{version}")
        write_golden_samples(bundle, GOLDEN)
        registry.install(bundle, activate=version == "1")
        m, data = read_manifest(bundle), pack_bundle(bundle)
        with session_scope(engine) as s:
            [a] = distribute(
                session=s,
                name="tiny",
                version=version,
                sha256=m.sha256,
                archive=data,
                archive_sha256=archive_sha256(data),
                station_ids=["opc3"],
                approval="test",
                actor="test",
            )
        refused = version == "3"
        report_outcome(
            engine,
            assignment_id=a.id,
            station_id="opc3",
            outcome="REFUSED" if refused else "SWITCHED",
            reason="wrong input size" if refused else None,
            at=datetime.now(UTC),
            running_sha256=None,
        )
    v2_sha = registry.list()[1].sha256
    gated = gate_bundle(registry.resolve("tiny")).bundle
    assert gated is not None
    frames = [make_frame(60, frame_id=k) for k in range(3000)]
    records = ListSink()
    box: dict[str, InspectionPipeline] = {}

    def snapshot() -> dict[str, Any]:
        return box["pipe"].status().to_dict() if "pipe" in box else {"state": "PREOPERATIONAL"}

    book = StationRecipes(engine, station_id="opc3", registry=registry, name="tiny")
    settings = OpcUaSettings(port=_port(), username="mes", password=PASSWORD)
    with VisionServer(settings, station_id="opc3", snapshot=snapshot, recipes=book) as server:
        pipe = InspectionPipeline(
            ScriptedSource(frames, period_s=0.01),
            judge=Judge(bundle=gated, policy=policy_for(gated)),
            signaller=RecordingSignaller(),
            sinks=[records],
            config=PipelineConfig(station_id="opc3", deadline_ms=None, swap_poll_s=0.1),
            watch=RegistryWatch(registry, "tiny", current="1"),
        )
        box["pipe"] = pipe
        pipe.start()
        outcome: dict[str, Any] = {}

        async def mes() -> None:
            client = Client(server.endpoint)
            client.set_user("mes")
            client.set_password(PASSWORD)
            async with client:
                idx = await client.get_namespace_index(NAMESPACE)
                recipes = await client.nodes.objects.get_child([f"{idx}:VisionSystem", f"{idx}:RecipeManagement"])
                current = await recipes.get_child([f"{idx}:InternalRecipeId"])
                outcome["listed"] = await recipes.call_method(f"{idx}:GetRecipeListFiltered")
                outcome["refused"] = await recipes.call_method(
                    f"{idx}:PrepareRecipe", ua.Variant("tiny:3", ua.VariantType.String)
                )
                outcome["prepared"] = await recipes.call_method(
                    f"{idx}:PrepareRecipe", ua.Variant("tiny:2", ua.VariantType.String)
                )
                deadline = time.monotonic() + 30
                while await current.read_value() != "tiny:2":
                    assert time.monotonic() < deadline, "InternalRecipeId never showed the prepared recipe"
                    await asyncio.sleep(0.1)
                outcome["shown"] = await current.read_value()

        asyncio.run(mes())
        pipe.stop()
    assert outcome["listed"] == ["tiny:1", "tiny:2"]
    internal, completed, error, message = outcome["refused"]
    assert (internal, completed, error) == ("", False, 1)
    assert "recipe 'tiny:3' is not approved for station opc3" in message
    internal, completed, error, message = outcome["prepared"]
    assert (internal, completed, error) == ("tiny:2", False, 0) and "golden self-test" in message
    assert outcome["shown"] == "tiny:2" and registry.active_version("tiny") == "2"
    assert records.items[-1].model is not None and records.items[-1].model.sha256 == v2_sha
    with session_scope(engine, readonly=True) as s:
        rows = {r.action: r.actor for r in s.scalars(select(AuditRecord).where(AuditRecord.field == "recipe"))}
    assert rows == {"model.recipe_refused": "opcua:mes@opc3", "model.recipe_prepared": "opcua:mes@opc3"}
    engine.dispose()
