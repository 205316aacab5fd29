"""Helpers for the labelling tests: a folder of small part images with a few bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def part(seed: int, *, size: int = 96, spot: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.arange(size, dtype=np.float32)[None, :]
    image = 120.0 + 20.0 * np.sin(x * 0.9 + rng.uniform(0, 6.28)) + rng.normal(0.0, 6.0, (size, size))
    out = np.clip(image, 0, 255).astype(np.uint8)
    if spot:
        cy, cx = rng.integers(16, size - 16, 2)
        yy, xx = np.ogrid[:size, :size]
        out[(yy - cy) ** 2 + (xx - cx) ** 2 <= 36] = 255
    return out


def write_folder(root: Path, *, n: int = 24, spots: int = 0, bad: bool = True) -> Path:
    """``n`` distinct PNGs (the last ``spots`` with a bright spot) in two subfolders, plus (``bad``)
    a text file, a truncated PNG and a duplicate of the first image."""
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    for i in range(n):
        folder = root / ("a" if i % 2 == 0 else "b")
        Image.fromarray(part(i, spot=i >= n - spots)).save(folder / f"img{i:03d}.png")
    if bad:
        (root / "notes.txt").write_text("not an image\n")
        (root / "broken.png").write_bytes((root / "a" / "img000.png").read_bytes()[:60])
        (root / "zz-copy.png").write_bytes((root / "a" / "img000.png").read_bytes())
    return root
