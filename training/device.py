"""Where training computes: ``--device auto|cpu|cuda`` resolved to a torch device.

``auto`` (the default) takes the first CUDA GPU when PyTorch sees one, else the CPU; ``cuda``
without a usable CUDA device is refused with the reason. On a GPU the frozen trunk's feature
extraction (the expensive step: every image and flip view through MobileNetV2) and the defect
classifier's epochs run there; the anomaly memory is fitted on the CPU from the same features,
and the graph is moved back to the CPU before export, so the ONNX export, the parity check and
the validation scores that set the thresholds always run on the CPU with the station's ONNX
Runtime session (the bundle contract does not depend on where it was trained).

TF32 matmuls are switched off and cuDNN is made deterministic on a GPU, so trunk features differ
from the CPU's only by float32 rounding. Design tolerance (not yet measured on a GPU): anomaly
image scores within 1e-3 of a CPU-trained bundle's on the 0..1 score scale; the classifier, whose
dropout and shuffling draw from the GPU's random stream, within 0.02.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
from torch import nn

from vinspect.errors import ModelError

__all__ = ["DEVICES", "OnDevice", "describe", "resolve_device"]

DEVICES = ("auto", "cpu", "cuda")
Requested = Literal["auto", "cpu", "cuda"]


def resolve_device(requested: str = "auto") -> torch.device:
    """The device a training run uses.

    Raises:
        ModelError: an unknown name, or ``cuda`` when PyTorch sees no usable CUDA device.
    """
    if requested not in DEVICES:
        raise ModelError(f"--device {requested!r}: choose one of {', '.join(DEVICES)}")
    available = torch.cuda.is_available()
    if requested == "cuda" and not available:
        built = torch.version.cuda
        why = (
            f"this PyTorch ({torch.__version__}) is built with CUDA {built} but sees no GPU (driver, "
            "CUDA_VISIBLE_DEVICES)"
            if built
            else f"this PyTorch ({torch.__version__}) is built without CUDA"
        )
        raise ModelError(f"--device cuda: no CUDA device: {why}; use --device auto (GPU when present) or cpu")
    if requested == "cpu" or not available:
        return torch.device("cpu")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    return torch.device("cuda", 0)


def describe(device: torch.device) -> str:
    """``cpu``, or ``cuda:0 (<GPU name>)``: recorded in the bundle's training config."""
    if device.type != "cuda":
        return "cpu"
    return f"cuda:{device.index or 0} ({torch.cuda.get_device_name(device)})"


@contextmanager
def on_device(module: nn.Module, device: torch.device) -> Iterator[nn.Module]:
    """``module`` moved to ``device`` for the block, back on the CPU after (also on error)."""
    if device.type == "cpu":
        yield module
        return
    module.to(device)
    try:
        yield module
    finally:
        module.to("cpu")


class OnDevice(nn.Module):
    """Calls ``module`` on ``device``: CPU inputs go there, outputs (a tensor or a list) come back."""

    def __init__(self, module: nn.Module, device: torch.device) -> None:
        super().__init__()
        self.module, self.device = module, device

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        out = self.module(x.to(self.device))
        if isinstance(out, torch.Tensor):
            return out.cpu()
        return [t.cpu() for t in out]
