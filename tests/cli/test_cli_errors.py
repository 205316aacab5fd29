"""CLI errors a new user met (issue 13): each names the option or file, exits 2, no traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from testkit.bundles import state_operating_point
from vinspect.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        return int(exc.code or 0)


def test_ncr_list_with_a_bad_time_names_the_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_code(["ncr", "list", "--since", "yesterday", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "argument --since: 'yesterday' is not an ISO 8601 time" in err and "Traceback" not in err


def test_inspect_missing_file_is_a_usage_error(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.png"
    assert main(["inspect", "--model", str(tiny_bundle), str(missing)]) == 2
    captured = capsys.readouterr()
    assert f"no such file or folder: {missing}" in captured.err and "PASS" not in captured.out


def test_serve_port_out_of_range_blames_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_code(["serve", "--port", "80000"]) == 2
    err = capsys.readouterr().err
    assert "argument --port: '80000' is not a port number (1-65535)" in err and "VINSPECT_" not in err


def test_serve_on_a_busy_port_says_so_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--port", str(port), "--data-dir", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "--port" in err
    assert "/setup" not in err and "bootstrap-secret" not in err  # no other server's setup instructions


def test_models_take_data_dir_after_the_verb(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    # rates stated on well-separated validation scores, so activation needs no risk acceptance
    state_operating_point(tiny_bundle, good=[0.1 + 0.001 * i for i in range(100)], defect=[0.9] * 20)
    assert main(["models", "install", str(tiny_bundle), "--activate", "--data-dir", str(data)]) == 0
    assert main(["models", "list", "--data-dir", str(data)]) == 0
    assert main(["models", "--data-dir", str(data), "list"]) == 0  # the old position still works
    listed = capsys.readouterr().out.splitlines()
    assert sum(1 for line in listed if line.startswith("* ")) == 2


def test_train_on_a_folder_that_is_not_a_dataset_fails_before_torch(tmp_path: Path) -> None:
    code = (
        "import sys; from vinspect.cli import main; rc = main(['train', '--data', sys.argv[1], '--out', "
        "sys.argv[2]]); print('torch imported' if 'torch' in sys.modules else 'torch not imported'); "
        "sys.exit(rc)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path), str(tmp_path / "b")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2 and "not a dataset" in done.stderr
    assert done.stdout.strip() == "torch not imported"


def test_every_option_has_help() -> None:
    from vinspect.cli import build_parser

    missing = []
    stack = [("vinspect", build_parser())]
    while stack:
        name, parser = stack.pop()
        for action in parser._actions:
            if action.choices and isinstance(action.choices, dict):
                stack += [(f"{name} {k}", v) for k, v in action.choices.items()]
            elif action.help is None and action.option_strings and action.dest != "help":
                missing.append(f"{name} {action.option_strings[0]}")
    assert not missing, missing
