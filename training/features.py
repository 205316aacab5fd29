"""Cached trunk features: every image through the exported Preprocess + frozen trunk, once.

Both heads (anomaly memory and defect classifier) train on these cached maps, which keeps a fit
to seconds on a 2-core machine: the frozen trunk is the only expensive part and runs once per
image and view.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from tqdm import tqdm

from training.data import Preprocess, to_hwc

__all__ = ["VIEWS", "extract_taps"]

# Flips keep the tile texture's orientation statistics (stripes stay vertical); 90° rotations
# would not, so they are not used as augmentation.
VIEWS = ("identity", "hflip", "vflip", "hvflip")


def _view(image: npt.NDArray[np.uint8], view: str) -> npt.NDArray[np.uint8]:
    if view == "hflip":
        return image[:, ::-1]
    if view == "vflip":
        return image[::-1]
    if view == "hvflip":
        return image[::-1, ::-1]
    return image


@torch.no_grad()
def extract_taps(
    images: Sequence[npt.NDArray[np.uint8]],
    *,
    preprocess: Preprocess,
    trunk: nn.Module,
    views: int = 1,
    batch_size: int = 16,
    progress: bool = False,
    desc: str = "features",
) -> list[torch.Tensor]:
    """Run every image (and its first ``views`` flips) through preprocess + trunk.

    Returns:
        One tensor per trunk tap, ``[len(images) * views, C, h, w]``, ordered image-major
        (all views of image 0, then image 1, ...).
    """
    names = VIEWS[:views]
    jobs = [(img, v) for img in images for v in names]
    outs: list[list[torch.Tensor]] = []
    bar = tqdm(total=len(jobs), desc=desc, disable=not progress, leave=False)
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        x = torch.cat(
            [
                preprocess(torch.from_numpy(np.ascontiguousarray(_view(to_hwc(img, channels=preprocess.channels), v))))
                for img, v in chunk
            ]
        )
        outs.append(trunk(x))
        bar.update(len(chunk))
    bar.close()
    return [torch.cat([o[i] for o in outs]) for i in range(len(outs[0]))]
