"""A private, throw-away PostgreSQL 15 cluster for tests and benchmarks.

initdb/pg_ctl refuse to run as root, so as root they run as the ``postgres`` user through
``runuser``; the data and socket directories live in a fresh directory under /tmp owned by that
user (pytest's tmp_path parents are root-only). The server listens on 127.0.0.1 and a random high
port, trust authentication, fsync and synchronous_commit on (the store asserts both).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def pg_available() -> str | None:
    """None when a cluster can be started here, else the reason it cannot."""
    for tool in ("initdb", "pg_ctl", "postgres", "pg_dump", "pg_restore"):
        if not (PG_BIN / tool).exists():
            return f"PostgreSQL 15 binaries not found ({PG_BIN / tool} missing)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root but runuser is missing"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgCluster:
    """Start with :meth:`start`, always :meth:`destroy` (also removes the directory)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="vinspect-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sock"
        self.log = self.root / "server.log"
        self.port = _free_port()
        self._as_root = os.geteuid() == 0

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self._as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)

    def start(self) -> str:
        """initdb on first use, then start; returns the server URL (database ``postgres``)."""
        if not self.data.exists():
            self.sockets.mkdir(parents=True)
            if self._as_root:
                shutil.chown(self.root, "postgres", "postgres")
                shutil.chown(self.sockets, "postgres", "postgres")
            self._run(
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            )
        opts = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=on "
            "-c synchronous_commit=on -c full_page_writes=on -c max_connections=60 "
            "-c recovery_init_sync_method=syncfs"
        )
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", opts, "-W", "start")
        self._wait_accepting(timeout_s=60)
        return self.url("postgres")

    def _wait_accepting(self, *, timeout_s: float) -> None:
        """Poll every 20 ms (pg_ctl -w polls far more slowly after a crash)."""
        import psycopg

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with psycopg.connect(
                    f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", connect_timeout=2
                ):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def stop(self, *, mode: str = "fast") -> None:
        """Stop the server; ``mode="immediate"`` is a crash (no checkpoint)."""
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop(mode="immediate")
        shutil.rmtree(self.root, ignore_errors=True)
