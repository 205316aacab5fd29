"""``vinspect train --device auto|cpu|cuda`` (issue 20 item 2): the device resolution, a CPU run on tiny
synthetic data recording its device, and a clear refusal of ``cuda`` where PyTorch sees no GPU."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml

from tests.training.conftest import make_dataset
from training.device import OnDevice, on_device, resolve_device
from vinspect.cli import main
from vinspect.errors import ModelError
from vinspect.models.manifest import read_manifest


@pytest.fixture()
def no_backend_side_effects() -> Iterator[None]:
    """resolve_device switches TF32 off for a GPU: keep the process-wide flags as they were."""
    flags = [
        (torch.backends.cuda.matmul, "allow_tf32"),
        (torch.backends.cudnn, "allow_tf32"),
        (torch.backends.cudnn, "deterministic"),
        (torch.backends.cudnn, "benchmark"),
    ]
    saved = [getattr(obj, name) for obj, name in flags]
    try:
        yield
    finally:
        for (obj, name), value in zip(flags, saved, strict=True):
            setattr(obj, name, value)


@pytest.mark.usefixtures("no_backend_side_effects")
@pytest.mark.parametrize(
    ("requested", "available", "expected"),
    [
        ("auto", False, "cpu"),
        ("auto", True, "cuda"),
        ("cpu", True, "cpu"),
        ("cpu", False, "cpu"),
        ("cuda", True, "cuda"),
    ],
)
def test_device_resolution(monkeypatch: pytest.MonkeyPatch, requested: str, available: bool, expected: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    assert resolve_device(requested).type == expected


@pytest.mark.usefixtures("no_backend_side_effects")
def test_a_gpu_run_switches_tf32_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    torch.backends.cuda.matmul.allow_tf32 = True
    resolve_device("auto")
    assert torch.backends.cuda.matmul.allow_tf32 is False and torch.backends.cudnn.deterministic is True


def test_cuda_without_a_gpu_and_unknown_names_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(
        ModelError,
        match=r"--device cuda: no CUDA device: .*use --device auto \(GPU when present\) "
        "or cpu",
    ):
        resolve_device("cuda")
    with pytest.raises(ModelError, match="--device 'tpu': choose one of auto, cpu, cuda"):
        resolve_device("tpu")


def test_on_device_is_a_no_op_on_the_cpu() -> None:
    layer = torch.nn.Linear(3, 2)
    with on_device(layer, torch.device("cpu")) as moved:
        out = OnDevice(moved, torch.device("cpu"))(torch.ones(1, 3))
    assert isinstance(out, torch.Tensor) and out.device.type == "cpu"
    assert next(layer.parameters()).device.type == "cpu"


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "image_size_px": 64,
                "coreset_size": 256,
                "classifier_epochs": 2,
                "classifier_views": 1,
                "classifier_batch_size": 8,
                "parity_images": 2,
                "golden_per_kind": 1,
                "min_good_images": 10,
            }
        )
    )
    return path


@pytest.mark.train
def test_train_device_cpu_records_its_device(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_dataset(tmp_path / "data", n_good=24, n_defect=4, seed=3)
    out = tmp_path / "bundle"
    assert (
        main(
            [
                "train",
                "--data",
                str(data),
                "--out",
                str(out),
                "--name",
                "dev",
                "--version",
                "1",
                "--config",
                str(_config(tmp_path)),
                "--device",
                "cpu",
                "--no-progress",
            ]
        )
        == 0
    )
    manifest = read_manifest(out)
    assert manifest.training.config["device"] == "cpu"
    assert manifest.task == "anomaly+classifier"
    assert manifest.training.metrics["parity_max_abs_diff_score"] <= 1e-3


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present here")
def test_train_device_cuda_without_a_gpu_fails_before_reading_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_dataset(tmp_path / "data", n_good=12, n_defect=0)
    out = tmp_path / "bundle"
    assert main(["train", "--data", str(data), "--out", str(out), "--device", "cuda", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "vinspect train: error: --device cuda: no CUDA device" in err
    assert not out.exists()
