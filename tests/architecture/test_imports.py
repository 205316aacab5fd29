"""The runtime imports without torch or fastapi, and the layer contracts hold (R1)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

BLOCKED = """
import sys
for name in ("torch", "torchvision", "fastapi", "starlette", "training"):
    sys.modules[name] = None
import vinspect.cli, vinspect.pipeline.judge, vinspect.models.runtime, vinspect.camera.base
from vinspect.cli import build_parser
build_parser()
print("ok")
"""


def test_runtime_imports_without_torch_and_fastapi() -> None:
    result = subprocess.run([sys.executable, "-c", BLOCKED], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_train_without_torch_says_how_to_install(tmp_path: Path) -> None:
    from vinspect.dataset.synth import write_dataset

    data = write_dataset(tmp_path / "ds", n_good=2, n_defect_each=1, kinds=("spot",))  # a dataset: checked first
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from vinspect.cli import main\n"
        f"raise SystemExit(main(['train', '--data', {str(data)!r}, '--out', {str(tmp_path / 'b')!r}]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2
    assert "needs PyTorch: pip install 'vinspect[train]'" in result.stderr


def test_import_contracts_hold() -> None:
    lint_imports = shutil.which("lint-imports")
    assert lint_imports is not None, "lint-imports not found: install the [dev] extra (import-linter)"
    result = subprocess.run([lint_imports], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_wheel_ships_exactly_vinspect_and_training(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    wheel = next(tmp_path.glob("vinspect-*.whl"))
    tops = {n.split("/")[0] for n in zipfile.ZipFile(wheel).namelist() if not n.startswith("vinspect-")}
    assert tops == {"vinspect", "training"}
