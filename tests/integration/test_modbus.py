"""Modbus TCP positive-accept handshake against a pymodbus server playing the PLC (issue 4, F5).

The simulated PLC on 127.0.0.1 records every result write; it accepts part k only when a write
with ``result_seq == k`` and ``verdict == ACCEPT`` arrives (reject by default), and watches the
heartbeat register.
"""

from __future__ import annotations

import asyncio
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pytest

pytest.importorskip("pymodbus")

from testkit.bundles import write_golden_samples
from vinspect.camera.scripted import ScriptedSource, make_frame
from vinspect.errors import PlcUnreachable
from vinspect.pipeline.gating import gate_bundle, policy_for
from vinspect.pipeline.judge import Judge
from vinspect.pipeline.record import ListSink
from vinspect.pipeline.runner import InspectionPipeline, PipelineConfig
from vinspect.pipeline.signals.modbus import REG_HEARTBEAT, REG_RESULT, REG_STATE, ModbusSignaller
from vinspect.types import FrameFault, Verdict

GOLDEN = [
    ("good", np.full((20, 20), 50, np.uint8), "PASS", 50 / 255),
    ("bad", np.full((20, 20), 200, np.uint8), "FAIL", 200 / 255),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SimulatedPlc:
    """The PLC: a Modbus TCP server whose trace hook logs (t, address, registers) per FC16."""

    port: int = field(default_factory=free_port)
    writes: list[tuple[float, int, list[int]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)
        self._thread.start()
        assert self._ready.wait(5)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)

    async def _serve(self) -> None:
        from pymodbus.server import ModbusTcpServer
        from pymodbus.simulator import DataType, SimData, SimDevice

        device = SimDevice(id=1, simdata=[SimData(address=0, count=300, values=0, datatype=DataType.REGISTERS)])
        self.server = ModbusTcpServer(device, address=("127.0.0.1", self.port), trace_pdu=self._trace)
        self.loop = asyncio.get_running_loop()
        self._ready.set()
        await self.server.serve_forever()

    def _trace(self, sending: bool, pdu):  # type: ignore[no-untyped-def]
        if not sending and pdu.function_code == 16:
            self.writes.append((time.monotonic(), pdu.address, list(pdu.registers)))
        return pdu

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.shutdown(), self.loop).result(5)
        self._thread.join(5)

    def results(self) -> list[list[int]]:
        return [regs for _, addr, regs in self.writes if addr == REG_RESULT]

    def accepted(self) -> set[int]:
        """Parts the PLC lets through: an ACCEPT bound to that part's sequence number."""
        return {regs[0] for regs in self.results() if regs[1] == 1}

    def writes_at(self, address: int) -> list[tuple[float, list[int]]]:
        return [(t, regs) for t, addr, regs in self.writes if addr == address]


@pytest.fixture()
def plc() -> Iterator[SimulatedPlc]:
    server = SimulatedPlc()
    yield server
    server.stop()


def test_modbus_accepts_only_passes_bound_to_their_part(plc: SimulatedPlc, tiny_bundle) -> None:
    write_golden_samples(tiny_bundle, GOLDEN)
    bundle = gate_bundle(tiny_bundle).bundle
    assert bundle is not None
    fault = FrameFault(source_id="s", frame_id=4, reason="incomplete", at=datetime.now(UTC))
    items = [
        make_frame(50, frame_id=0),
        make_frame(200, frame_id=1),
        make_frame(140, frame_id=2),
        make_frame(50, frame_id=3),
        fault,
        make_frame(50, frame_id=5),
    ]
    sink = ListSink()
    with ModbusSignaller("127.0.0.1", port=plc.port, timeout_s=1.0) as sig:
        pipe = InspectionPipeline(
            ScriptedSource(items, period_s=0.03),
            judge=Judge(bundle=bundle, policy=policy_for(bundle)),
            signaller=sig,
            sinks=[sink],
            config=PipelineConfig(station_id="s", heartbeat_ms=20),
        )
        with pipe:
            assert pipe.wait(10)
    passes = {i.part_seq for i in sink.items if i.decision.verdict is Verdict.PASS}
    assert plc.accepted() == passes == {0, 3, 5}
    assert [r[:2] for r in plc.results()] == [[0, 1], [1, 2], [2, 4], [3, 1], [4, 3], [5, 1]]
    assert [r[3] for r in plc.results()] == [1, 0, 1, 0, 1, 0]  # result_valid_toggle flips every result
    beats = [regs[0] for _, regs in plc.writes_at(REG_HEARTBEAT)]
    assert len(beats) >= 3 and beats == sorted(beats)
    assert [regs[0] for _, regs in plc.writes_at(REG_STATE)] == [1, 0]  # OPERATIONAL, then STOPPED


def test_modbus_unreachable_plc_is_reported() -> None:
    with pytest.raises(PlcUnreachable, match=r"127\.0\.0\.1"):
        ModbusSignaller("127.0.0.1", port=free_port(), timeout_s=0.2).connect()


def test_modbus_station_killed_heartbeat_stops_no_accepts_after(plc: SimulatedPlc, tmp_path, tiny_bundle) -> None:
    write_golden_samples(tiny_bundle, GOLDEN)
    station = tmp_path / "st.yaml"
    station.write_text(
        f"station_id: k\nmodel: {{path: {tiny_bundle}}}\nsinks: []\n"
        f"signal: {{kind: modbus, port: {plc.port}, heartbeat_ms: 100}}\n"
        "source: {kind: synthetic, fps: 30, size_px: 32, overflow: reject}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "vinspect", "run", "--station", str(station), "--data-dir", str(tmp_path / "d")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        end = time.monotonic() + 20
        while len(plc.accepted()) < 5 and time.monotonic() < end:
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait(10)
    killed_at = time.monotonic()
    time.sleep(0.4)
    assert len(plc.accepted()) >= 5
    last_beat = max(t for t, _ in plc.writes_at(REG_HEARTBEAT))
    assert last_beat <= killed_at  # heartbeat stopped: the PLC's watchdog (3 x 100 ms + 50) fires
    assert all(t <= killed_at for t, addr, regs in plc.writes if addr == REG_RESULT and regs[1] == 1)
    data = tmp_path / "d"  # the runtime starts with umask 027: nothing it wrote is world-readable
    assert stat.S_IMODE(data.stat().st_mode) == 0o750
    written = [p for p in data.rglob("*") if p.is_file()]
    assert written and all(stat.S_IMODE(p.stat().st_mode) & 0o007 == 0 for p in written), written
