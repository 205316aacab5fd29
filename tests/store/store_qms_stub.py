"""A QMS stand-in on 127.0.0.1 that misbehaves on schedule (HTTP errors, timeouts, resets).

The stub upserts on ``ncr_uuid`` and remembers each ``Idempotency-Key`` it applied, like a real
receiver would: a repeated key is acknowledged again but not applied twice. ``applies`` counts
applications per key (must end at exactly 1 each); ``attempts`` counts every request.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# action per request, in order; "ok" once the schedule is used up
FAULTS = ("500", "503", "429", "timeout", "slow_apply", "reset", "apply_reset")


class QmsStub:
    def __init__(self, schedule: Iterable[str] = (), *, delay_s: float = 0.3) -> None:
        self._schedule = list(schedule)
        self._lock = threading.Lock()
        self.delay_s = delay_s
        self.applies: Counter[str] = Counter()
        self.attempts: Counter[str] = Counter()
        self.latest: dict[str, int] = {}
        self.payload_sha: dict[str, str] = {}
        self.bad_digests = 0
        self.order: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._server.handle_error = lambda *args: None  # type: ignore[method-assign]  # resets are on purpose
        self._thread = threading.Thread(target=self._server.serve_forever, name="qms-stub", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/ncr"

    def __enter__(self) -> QmsStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _next_action(self) -> str:
        with self._lock:
            return self._schedule.pop(0) if self._schedule else "ok"

    def apply(self, key: str, body: bytes, headers: Any) -> None:
        doc = json.loads(body)
        digest = "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"
        with self._lock:
            if headers.get("Content-Digest") != digest:
                self.bad_digests += 1
                return
            if key in self.applies:
                return  # idempotent: seen before, acknowledged again, not applied again
            self.applies[key] += 1
            self.order.append(key)
            self.payload_sha[key] = hashlib.sha256(body).hexdigest()
            self.latest[doc["ncr_uuid"]] = max(self.latest.get(doc["ncr_uuid"], 0), doc["revision"])

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                key = self.headers.get("Idempotency-Key", "")
                with stub._lock:
                    stub.attempts[key] += 1
                action = stub._next_action()
                if action in ("ok", "slow_apply", "apply_reset"):
                    stub.apply(key, body, self.headers)
                if action in ("timeout", "slow_apply"):
                    time.sleep(stub.delay_s)
                if action in ("reset", "apply_reset"):
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return
                status = int(action) if action.isdigit() else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return None

        return Handler
