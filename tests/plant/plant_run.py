"""Run several real ``vinspect run`` station processes against one store (the plant test and bench).

Each station gets its own data directory (status file, JSONL, evidence) holding one shared audit
key (every host that writes one PostgreSQL must hold the same key file), a synthetic source at
``fps`` with REJECT overflow, the tiny ONNX bundle the tests build (score = mean pixel / 255;
about 15 % FAIL and 10 % REVIEW, each opening an NCR with evidence), the null signaller, and
both sinks (store + JSONL). ``books()`` parses each station's closing JSON line.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


sys.path.insert(0, str(ROOT))  # testkit: the tests' bundle writers

from testkit.bundles import write_golden_samples, write_tiny_bundle  # noqa: E402
from testkit.stations import approve_station  # noqa: E402
from vinspect.store.audit_key import KEY_FILE, open_keyring  # noqa: E402

GOLDEN = [
    ("good", np.full((20, 20), 50, np.uint8), "PASS", 50 / 255),
    ("bad", np.full((20, 20), 200, np.uint8), "FAIL", 200 / 255),
]


def plant_bundle(work: Path) -> Path:
    bundle = write_tiny_bundle(work / "bundle", fail_at=0.32, review_at=0.313)
    write_golden_samples(bundle, GOLDEN)
    return bundle


def station_yaml(
    path: Path,
    *,
    station_id: str,
    line_id: str,
    bundle: Path,
    fps: float,
    site_id: str = "plant1",
    size_px: int = 96,
    extra: str = "",
    model: str | None = None,
) -> Path:
    product = (
        f"{{part_number: P-{line_id}, part_revision: A, part_name: disc, requirement_ref: DWG-1, "
        f"site_id: {site_id}, line_id: {line_id}}}"
    )
    path.write_text(
        f"station_id: {station_id}\ndeadline_ms: 250\nmodel: {model or f'{{path: {bundle}}}'}\nsignal: {{kind: null}}\n"
        f"source: {{kind: synthetic, fps: {fps}, size_px: {size_px}, defect_rate: 0.2, distinct_parts: 64, "
        "overflow: reject}\n"
        f"sinks: [{{kind: store, product: {product}}}, {{kind: jsonl}}]\n{extra}",
        encoding="utf-8",
    )
    return path


@dataclass
class Station:
    station_id: str
    data: Path
    yaml: Path
    proc: subprocess.Popen[str] | None = None
    out: str = ""
    err: str = ""
    killed: bool = False
    closing: dict[str, Any] = field(default_factory=dict)


class Plant:
    """N station processes on one database URL; start together, stop (SIGTERM) or kill one."""

    def __init__(
        self,
        work: Path,
        url: str,
        n: int,
        *,
        fps: float,
        lines: int = 2,
        extra: str = "",
        extras: dict[int, str] | None = None,
        model: str | None = None,
    ) -> None:
        self.url = url
        bundle = plant_bundle(work)
        key_dir = work / "key"
        key_dir.mkdir(parents=True, exist_ok=True)
        open_keyring(key_dir)  # one audit key for every station of the plant
        self.key_dir = key_dir
        self.stations: list[Station] = []
        for k in range(n):
            sid = f"st{k + 1:02d}"
            data = work / sid
            data.mkdir(parents=True, exist_ok=True)
            data.chmod(0o750)
            shutil.copy2(key_dir / KEY_FILE, data / KEY_FILE)
            (data / KEY_FILE).chmod(0o600)
            yaml = station_yaml(
                work / f"{sid}.yaml",
                station_id=sid,
                line_id=f"L{k % lines + 1}",
                bundle=bundle,
                fps=fps,
                extra=extra + (extras or {}).get(k, ""),
                model=model,
            )
            approve_station(yaml, data, database_url=url)  # a store-backed station runs an approved file only
            self.stations.append(Station(sid, data, yaml))

    def start(self, *, duration_s: float | None = None, env: dict[str, str] | None = None) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith("VINSPECT_")}
        base |= {"VINSPECT_DATABASE_URL": self.url, **(env or {})}
        for st in self.stations:
            cmd = [
                sys.executable,
                "-m",
                "vinspect",
                "run",
                "--station",
                str(st.yaml),
                "--data-dir",
                str(st.data),
                "--json",
            ]
            if duration_s is not None:
                cmd += ["--duration-s", str(duration_s)]
            st.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=base)

    def kill(self, index: int) -> Station:
        st = self.stations[index]
        assert st.proc is not None
        st.proc.send_signal(signal.SIGKILL)
        st.killed = True
        return st

    def wait(self, *, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for st in self.stations:
            assert st.proc is not None
            st.out, st.err = st.proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            if not st.killed and st.proc.returncode == 0 and st.out.strip():
                st.closing = json.loads(st.out.strip().splitlines()[-1])

    def stop(self) -> None:
        for st in self.stations:
            if st.proc is not None and st.proc.poll() is None:
                st.proc.send_signal(signal.SIGTERM)
