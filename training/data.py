"""Dataset samples -> pixels and tensors for training, with the deterministic validation hold-out.

Images stay in their original size as uint8 HWC arrays: the graph's own :class:`Preprocess`
(the exact module exported to ONNX) turns each into the model tensor, so training features and
deployed features are computed by the same operations.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from vinspect.dataset import Sample, read_image
from vinspect.errors import DatasetError
from vinspect.files import sha256_file

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PHOTOMETRIC",
    "EqualizeHist",
    "Preprocess",
    "Split",
    "channels_of",
    "dataset_sha256",
    "holdout_split",
    "load_images",
    "to_hwc",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
Image = npt.NDArray[np.uint8]
PHOTOMETRIC = ("none", "equalize")


class EqualizeHist(nn.Module):
    """Global histogram equalisation of every channel, in the graph (OpenCV's ``equalizeHist``).

    ``[1, C, H, W]`` float holding uint8 values -> the same shape, each value replaced by
    ``round(255 * (cdf(v) - cdf(min)) / (H*W - cdf(min)))`` of its channel. Exported as
    ScatterElements (add) + CumSum + GatherElements, so it runs on any frame size. It takes out
    the lighting of the capture (mean grey level and contrast), which otherwise dominates the
    good-patch bank when parts are shot under several lighting conditions.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        flat = x.reshape(c, -1)
        idx = flat.to(torch.int64)
        hist = torch.zeros(c, 256, dtype=x.dtype, device=x.device).scatter_add(1, idx, torch.ones_like(flat))
        cdf = hist.cumsum(1)
        # pixels at the darkest value present: the smallest non-zero cdf entry (256 bins; a ReduceMin over
        # every pixel's value instead took ~0.3 ms of a 321 x 511 frame, issue 12m)
        low = torch.where(cdf > 0, cdf, torch.full_like(cdf, float("inf"))).amin(1, keepdim=True)
        lut = torch.round((cdf - low).clamp_min(0.0) * 255.0 / (cdf[:, -1:] - low).clamp_min(1.0))
        return lut.gather(1, idx).reshape(x.shape)


class Preprocess(nn.Module):
    """uint8 ``[H, W, C]`` -> float ``[1, 3, S, S]``: cast, optional histogram equalisation
    (``photometric="equalize"``, :class:`EqualizeHist`), resize, grey->3ch, ImageNet norm.

    The resize is anti-aliased by supersampling: bilinear to ``k*S`` then a ``k x k`` box average
    (plain ONNX Resize + AveragePool; Resize's own antialias needs opset 18 and exports poorly).
    Fine periodic texture (the grinding stripes of magnetic tiles) otherwise aliases into moiré
    that varies with the frame size; ``k = 2`` lifted cross-validated image AUROC by ~0.01.
    """

    mean: torch.Tensor  # registered buffers (typed here: nn.Module's __getattr__ returns Tensor | Module)
    inv_std: torch.Tensor

    def __init__(self, *, size_px: int, channels: int, supersample: int = 2, photometric: str = "none") -> None:
        super().__init__()
        if photometric not in PHOTOMETRIC:  # "auto" is resolved by training.fit.resolve_photometric first
            raise ValueError(f"photometric must be one of {PHOTOMETRIC}, got {photometric!r}")
        self.size_px = size_px
        self.channels = channels
        self.supersample = supersample
        self.photometric = photometric
        self.equalize = EqualizeHist() if photometric == "equalize" else None
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0
        self.register_buffer("mean", mean)
        self.register_buffer("inv_std", 1.0 / std)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.permute(2, 0, 1).unsqueeze(0).to(torch.float32)
        if self.equalize is not None:
            x = self.equalize(x)
        k = self.supersample
        x = F.interpolate(x, size=(self.size_px * k, self.size_px * k), mode="bilinear", align_corners=False)
        if k > 1:
            x = F.avg_pool2d(x, k)
        if self.channels == 1:
            x = x.expand(1, 3, self.size_px, self.size_px)
        return (x - self.mean) * self.inv_std


def to_hwc(image: Image, *, channels: int) -> Image:
    """Return a writable, contiguous ``[H, W, channels]`` uint8 copy of ``image`` (grey<->RGB as needed)."""
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == channels:
        return np.array(image, dtype=np.uint8, order="C", copy=True)
    if channels == 3:
        return np.ascontiguousarray(np.repeat(image, 3, axis=2))
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601 luma
    grey = np.clip(np.rint(image.astype(np.float32) @ weights), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(grey[:, :, None])


def channels_of(images: Iterable[Image]) -> int:
    """1 when every image is greyscale (2-D or one channel), else 3."""
    return 3 if any(img.ndim == 3 and img.shape[2] == 3 for img in images) else 1


def load_images(samples: Sequence[Sample], *, progress: bool, desc: str = "reading images") -> list[Image]:
    """Decode every sample (original size, uint8, 2-D grey or HxWx3)."""
    return [read_image(s.path) for s in tqdm(samples, desc=desc, disable=not progress, leave=False)]


@dataclass(frozen=True, slots=True)
class Split:
    """Training samples divided into the part models learn from and the held-out validation part."""

    fit: list[Sample]
    val: list[Sample]


def _bucket(sample: Sample) -> int:
    digest = hashlib.sha256(f"val:{sample.label}/{sample.stem}".encode()).hexdigest()
    return int(digest, 16) % 100


def holdout_split(samples: Sequence[Sample], *, val_percent: int) -> Split:
    """Hold out ``val_percent`` % of every class, by a hash of (label, stem): deterministic.

    Each class keeps at least one fitting sample; a class with two or more samples gives at
    least one to validation.

    Raises:
        DatasetError: no samples.
    """
    if not samples:
        raise DatasetError("no training samples to split")
    fit: list[Sample] = []
    val: list[Sample] = []
    for label in sorted({s.label for s in samples}):
        members = sorted((s for s in samples if s.label == label), key=lambda s: (_bucket(s), s.stem))
        n_val = round(len(members) * val_percent / 100.0)
        n_val = min(max(n_val, 1 if len(members) >= 2 else 0), len(members) - 1)
        held = {id(s) for s in members[:n_val]}
        val.extend(s for s in members if id(s) in held)
        fit.extend(s for s in members if id(s) not in held)
    return Split(fit=sorted(fit, key=lambda s: s.path), val=sorted(val, key=lambda s: s.path))


def dataset_sha256(root: Path, samples: Sequence[Sample]) -> str:
    """sha256 over the sorted ``(relative path, file sha256)`` pairs of the given samples."""
    digest = hashlib.sha256()
    pairs = sorted((s.path.relative_to(root).as_posix(), sha256_file(s.path)) for s in samples)
    for rel, file_hash in pairs:
        digest.update(f"{rel}\0{file_hash}\n".encode())
    return digest.hexdigest()
