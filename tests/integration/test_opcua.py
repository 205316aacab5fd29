"""Issue 18: the station's OPC UA server on loopback, seen by a real asyncua client.

A real pipeline (tiny ONNX model, scripted parts held until the client listens, the OPC UA sink)
behind a real server; the client signs in with a username and password, subscribes to
``ResultReadyEventType`` and to ``VisionStateMachine/CurrentState``, sees Preoperational ->
Operational, then one event per part with the OPC 40100-1 fields. Anonymous sessions and a wrong
password are refused.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from asyncua import Client, ua

from testkit.bundles import write_golden_samples
from vinspect.camera.scripted import ScriptedSource, make_frame
from vinspect.errors import ConfigError
from vinspect.opcua.server import NAMESPACE, OpcUaSettings, OpcUaSink, VisionServer
from vinspect.pipeline.gating import gate_bundle, policy_for
from vinspect.pipeline.judge import Judge
from vinspect.pipeline.record import ListSink
from vinspect.pipeline.runner import InspectionPipeline, PipelineConfig
from vinspect.pipeline.signals import RecordingSignaller

GOLDEN = [
    ("good", np.full((20, 20), 50, np.uint8), "PASS", 50 / 255),
    ("bad", np.full((20, 20), 200, np.uint8), "FAIL", 200 / 255),
]
LEVELS = [40, 200, 60, 140, 30, 220]  # tiny model: score = level/255; FAIL >= 0.6, REVIEW >= 0.5
PASSWORD = "line-7 mes secret"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _judge(bundle: Path) -> Judge:
    write_golden_samples(bundle, GOLDEN)
    gated = gate_bundle(bundle).bundle
    assert gated is not None
    return Judge(bundle=gated, policy=policy_for(gated))


class _Collect:
    def __init__(self) -> None:
        self.events: list[Any] = []
        self.states: list[str] = []

    def event_notification(self, event: Any) -> None:
        self.events.append(event)

    def status_change_notification(self, status: Any) -> None:
        pass

    def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
        self.states.append(value.Text)


async def _wait_for(predicate: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def test_client_sees_state_change_and_one_result_event_per_part(tiny_bundle: Path) -> None:
    gate = threading.Event()
    frames = [make_frame(level, frame_id=k) for k, level in enumerate(LEVELS)]
    box: dict[str, InspectionPipeline] = {}
    records = ListSink()
    settings = OpcUaSettings(port=_port(), username="mes", password=PASSWORD)

    def snapshot() -> dict[str, Any]:
        return box["pipe"].status().to_dict() if "pipe" in box else {"state": "PREOPERATIONAL"}

    with VisionServer(settings, station_id="opc1", snapshot=snapshot) as server:
        pipe = InspectionPipeline(
            ScriptedSource(frames, gate=gate),
            judge=_judge(tiny_bundle),
            signaller=RecordingSignaller(),
            sinks=[records, OpcUaSink(server)],
            config=PipelineConfig(station_id="opc1", deadline_ms=None),
        )
        box["pipe"] = pipe
        seen = _Collect()

        async def client_side() -> None:
            client = Client(server.endpoint)
            client.set_user("mes")
            client.set_password(PASSWORD)
            async with client:
                idx = await client.get_namespace_index(NAMESPACE)
                system = await client.nodes.objects.get_child([f"{idx}:VisionSystem"])
                current = await system.get_child([f"{idx}:VisionStateMachine", f"{idx}:CurrentState"])
                results = await system.get_child([f"{idx}:ResultManagement"])
                etype = await client.nodes.base_event_type.get_child([f"{idx}:ResultReadyEventType"])
                assert (await current.read_value()).Text == "Preoperational"
                sub = await client.create_subscription(50, seen)
                await sub.subscribe_data_change(current)
                await sub.subscribe_events(results, etype)
                await asyncio.sleep(0.3)
                pipe.start()
                gate.set()
                await _wait_for(lambda: len(seen.events) >= len(LEVELS))
                await _wait_for(lambda: "Operational" in seen.states)
                await asyncio.sleep(0.5)  # nothing more arrives
                recipe = await system.get_child([f"{idx}:RecipeManagement", f"{idx}:InternalRecipeId"])
                assert await recipe.read_value() == "tiny:1"
                await sub.delete()

        asyncio.run(client_side())
        assert pipe.wait(20)
        pipe.stop()
    assert seen.states[0] == "Preoperational" and "Operational" in seen.states
    by_id = {r.inspection_id: r for r in records.items}
    assert len(seen.events) == len(LEVELS) == len(by_id)
    assert sorted(e.ResultId for e in seen.events) == sorted(by_id)
    codes = {"PASS": 1, "FAIL": 2, "REVIEW": 4}
    for event in seen.events:
        record = by_id[event.ResultId]
        assert event.PartId == f"p{record.frame.part_id[1:]}" == record.frame.part_id
        assert event.ResultState == codes[str(record.decision.verdict)]
        assert event.IsPartial is False and event.InternalRecipeId == "tiny:1"
        assert event.ProcessingDuration > 0 and event.CreationTime is not None and event.StartTime is not None
        assert event.DefectCode == ("" if event.ResultState == 1 else record.prediction.defect_code) != "anomaly"
    assert server.dropped == 0 and server.published == len(LEVELS)


@pytest.mark.parametrize("user, password", [(None, None), ("mes", "wrong password"), ("intruder", PASSWORD)])
def test_anonymous_and_wrong_credentials_are_refused(user: str | None, password: str | None) -> None:
    settings = OpcUaSettings(port=_port(), username="mes", password=PASSWORD)
    snapshot = {"state": "OPERATIONAL", "model": None}
    with VisionServer(settings, station_id="opc2", snapshot=lambda: snapshot) as server:

        async def attempt() -> None:
            client = Client(server.endpoint)
            if user is not None:
                client.set_user(user)
                client.set_password(password or "")
            with pytest.raises(ua.UaError):
                async with client:
                    pass

        asyncio.run(attempt())


def test_anonymous_off_without_credentials_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="anonymous access is off"):
        VisionServer(OpcUaSettings(port=_port()), station_id="x", snapshot=dict)


def _certificate(tmp: Path, name: str, uri: str) -> tuple[Path, Path]:
    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key, cert = tmp / f"{name}-key.pem", tmp / f"{name}-cert.der"
    usage = [ExtendedKeyUsageOID.SERVER_AUTH if name == "server" else ExtendedKeyUsageOID.CLIENT_AUTH]
    asyncio.run(setup_self_signed_certificate(key, cert, uri, "127.0.0.1", usage, {"commonName": name}))
    return cert, key


def test_with_a_certificate_only_encrypted_endpoints_are_offered(tmp_path: Path) -> None:
    from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

    server_cert, server_key = _certificate(tmp_path, "server", "urn:freeopcua:python:server")
    client_cert, client_key = _certificate(tmp_path, "client", "urn:freeopcua:client")
    settings = OpcUaSettings(
        port=_port(), username="mes", password=PASSWORD, certificate=server_cert, private_key=server_key
    )
    snapshot = {"state": "OPERATIONAL", "model": {"name": "disc", "version": "4", "sha256": "cd" * 32}}
    with VisionServer(settings, station_id="opc3", snapshot=lambda: snapshot) as server:

        async def secured() -> tuple[str, list[str]]:
            client = Client(server.endpoint)
            endpoints = await client.connect_and_get_server_endpoints()
            client = Client(server.endpoint)
            client.set_user("mes")
            client.set_password(PASSWORD)
            await client.set_security(
                SecurityPolicyBasic256Sha256,
                str(client_cert),
                str(client_key),
                server_certificate=str(server_cert),
                mode=ua.MessageSecurityMode.SignAndEncrypt,
            )
            async with client:
                idx = await client.get_namespace_index(NAMESPACE)
                system = await client.nodes.objects.get_child([f"{idx}:VisionSystem"])
                await asyncio.sleep(0.6)  # one poll of the snapshot
                recipe = await system.get_child([f"{idx}:RecipeManagement", f"{idx}:InternalRecipeId"])
                return await recipe.read_value(), [e.SecurityPolicyUri.rsplit("#", 1)[-1] for e in endpoints]

        async def unsecured() -> None:
            client = Client(server.endpoint)
            client.set_user("mes")
            client.set_password(PASSWORD)
            with pytest.raises((ua.UaError, ConnectionError, TimeoutError)):
                async with client:
                    pass

        recipe, policies = asyncio.run(secured())
        asyncio.run(unsecured())
    assert recipe == "disc:4"
    assert set(policies) == {"Basic256Sha256"}, policies  # no "None" endpoint


def test_certificate_without_key_is_a_config_error(tmp_path: Path) -> None:
    cert = tmp_path / "c.der"
    cert.write_bytes(b"x")
    with pytest.raises(ConfigError, match="certificate and private_key go together"):
        VisionServer(
            OpcUaSettings(port=_port(), username="m", password="p", certificate=cert), station_id="x", snapshot=dict
        )
