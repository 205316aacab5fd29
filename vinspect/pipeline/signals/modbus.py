"""ModbusSignaller: the positive-accept part-sequence handshake of ``line-integration.md`` §7.

The PLC is the Modbus TCP server and rejects every part by default; the station (this client)
writes, for each part, ONE FC16 request to registers ``base+100 .. base+103``: ``result_seq``
(the part's sequence, u16), ``verdict`` (1 accept, 2 defect, 3 fault, 4 review), ``defect_code``
(1-based index into ``defect_codes``, 0 none) and ``result_valid_toggle`` (flipped every result,
written last in the same request). ``heartbeat`` increments ``base+104``; ``publish_state``
writes ``base+105`` (0 PREOPERATIONAL, 1 OPERATIONAL, 2 DEGRADED, 3 ERROR; STOPPED is written as
0). Frames and PLC part sequence numbers are matched in trigger order: the station's
``part_seq`` (plus ``seq_offset``) modulo 65536 is the PLC's ``part_seq``.

pymodbus is imported lazily; its errors are mapped to :class:`PlcUnreachable` (no connection)
and :class:`SignalError` (an exception response).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self

from vinspect.errors import PlcUnreachable, SignalError
from vinspect.pipeline.signals.base import verdict_code
from vinspect.types import Inspection, StationState

__all__ = ["REG_HEARTBEAT", "REG_RESULT", "REG_STATE", "STATE_CODES", "ModbusSignaller"]

REG_RESULT, REG_HEARTBEAT, REG_STATE = 100, 104, 105
STATE_CODES = {
    StationState.PREOPERATIONAL: 0,
    StationState.OPERATIONAL: 1,
    StationState.DEGRADED: 2,
    StationState.ERROR: 3,
    StationState.STOPPED: 0,
}


class ModbusSignaller:
    """Writes results, heartbeat and state to a PLC over Modbus TCP.

    Args:
        host: PLC address.
        port: Modbus TCP port.
        unit_id: Modbus device (unit) id.
        base: register offset added to every address.
        timeout_s: per-request timeout (keep it well below the part deadline).
        defect_codes: the station's defect-code table (index + 1 is written).
        seq_offset: added to ``part_seq`` to match the PLC's counter.
    """

    def __init__(
        self,
        host: str,
        *,
        port: int = 502,
        unit_id: int = 1,
        base: int = 0,
        timeout_s: float = 0.5,
        defect_codes: Sequence[str] = (),
        seq_offset: int = 0,
    ) -> None:
        self._host, self._port, self._unit, self._base = host, port, unit_id, base
        self._timeout_s = timeout_s
        self._codes = {code: i + 1 for i, code in enumerate(defect_codes)}
        self._seq_offset = seq_offset
        self._toggle = 0
        self._heartbeat = 0
        self._client: Any = None

    @contextmanager
    def _plc_errors(self) -> Iterator[None]:
        from pymodbus.exceptions import ConnectionException, ModbusException

        try:
            yield
        except ConnectionException as exc:
            raise PlcUnreachable(f"{self._host}:{self._port}: {exc}") from exc
        except ModbusException as exc:
            raise SignalError(f"{self._host}:{self._port}: {exc}") from exc

    def connect(self) -> None:
        """Open the TCP connection.

        Raises:
            PlcUnreachable: nobody answers at host:port.
        """
        from pymodbus.client import ModbusTcpClient

        self._client = ModbusTcpClient(self._host, port=self._port, timeout=self._timeout_s, retries=0)
        with self._plc_errors():
            if not self._client.connect():
                raise PlcUnreachable(f"{self._host}:{self._port}: cannot connect to the PLC")

    def close(self) -> None:
        """Close the connection (the PLC's default reject takes over)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def _write(self, offset: int, values: list[int]) -> None:
        if self._client is None:
            raise PlcUnreachable(f"{self._host}:{self._port}: not connected")
        with self._plc_errors():
            response = self._client.write_registers(self._base + offset, values, device_id=self._unit)
        if response.isError():
            raise SignalError(f"{self._host}:{self._port}: PLC refused the write at {self._base + offset}: {response}")

    def result_registers(self, inspection: Inspection) -> list[int]:
        """The four values one result writes: result_seq, verdict, defect_code, toggle (next)."""
        pred = inspection.prediction
        code = self._codes.get(pred.defect_code or "", 0) if pred is not None else 0
        seq = (inspection.part_seq + self._seq_offset) & 0xFFFF
        return [seq, verdict_code(inspection), code, self._toggle ^ 1]

    def signal(self, inspection: Inspection) -> None:
        values = self.result_registers(inspection)
        self._write(REG_RESULT, values)
        self._toggle = values[3]

    def heartbeat(self) -> None:
        self._heartbeat = (self._heartbeat + 1) & 0xFFFF
        self._write(REG_HEARTBEAT, [self._heartbeat])

    def publish_state(self, state: StationState) -> None:
        self._write(REG_STATE, [STATE_CODES[state]])

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
