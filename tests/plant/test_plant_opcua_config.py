"""Issue 18: the station file's ``opcua`` section (paths, refusals) through the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from plant_run import plant_bundle, station_yaml

from testkit.stations import approve_station
from vinspect.station_file import load_station


def test_certificate_paths_resolve_against_the_station_file(tmp_path: Path) -> None:
    bundle = plant_bundle(tmp_path)
    yaml = station_yaml(
        tmp_path / "s.yaml",
        station_id="s1",
        line_id="L1",
        bundle=bundle,
        fps=5,
        extra="opcua: {port: 4850, username: mes, certificate: pki/cert.der, private_key: pki/key.pem}\n",
    )
    config = load_station(yaml)
    assert config.opcua is not None
    assert config.opcua.certificate == tmp_path / "pki" / "cert.der"
    assert config.opcua.private_key == tmp_path / "pki" / "key.pem"
    assert config.opcua.allow_anonymous is False and config.opcua.password_env == "VINSPECT_OPCUA_PASSWORD"


def test_vinspect_run_refuses_an_opcua_user_without_a_password(tmp_path: Path) -> None:
    bundle = plant_bundle(tmp_path)
    yaml = station_yaml(
        tmp_path / "s.yaml",
        station_id="s1",
        line_id="L1",
        bundle=bundle,
        fps=5,
        extra="opcua: {port: 4851, username: mes, password_env: MES_PASSWORD_FOR_TEST}\n",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("VINSPECT_") and k != "MES_PASSWORD_FOR_TEST"}
    approve_station(yaml, tmp_path / "data")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "vinspect",
            "run",
            "--station",
            str(yaml),
            "--data-dir",
            str(tmp_path / "data"),
            "--max-parts",
            "3",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 2, done.stderr
    assert "opcua: user 'mes' needs a password in the environment variable MES_PASSWORD_FOR_TEST" in done.stderr
