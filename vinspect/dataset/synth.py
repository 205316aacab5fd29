"""Procedural demo parts with exact defect masks, so the demo and the tests need no downloads.

A part is a machined disc with a bore on a dark fixture: brushed-metal texture, uneven lighting
(a tilted gradient and a vignette that change per image), and a small random placement error
(shift and rotation). Defects are drawn on the part only and their masks are exact:

* ``scratch``: a thin bright line; * ``spot``: a dark pit (blowhole);
* ``crack``: a dark jagged polyline; * ``stain``: a low-contrast blotch; * ``chip``: a bite out of
  the rim showing the fixture.

To make a demo that shows something (a real ROC curve, parts in the review band, a false reject),
``subtle`` draws that share of the defects faint (20-45 % of the usual contrast, smaller chips)
and ``dust`` puts a few faint specks of dust on that share of the good parts (not defects: no mask).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt

__all__ = ["DEFECT_KINDS", "render_part", "write_dataset"]

U8 = npt.NDArray[np.uint8]
DEFECT_KINDS = ("scratch", "spot", "crack", "stain", "chip")
_SIZE = 256


def _texture(rng: np.random.Generator, size: int) -> npt.NDArray[np.float32]:
    grain = rng.normal(0.0, 1.0, (size, size)).astype(np.float32)
    brushed = cv2.GaussianBlur(grain, (0, 0), sigmaX=6.0, sigmaY=0.6)
    fine = cv2.GaussianBlur(grain, (0, 0), 0.8)
    out = 10.0 * brushed / (brushed.std() + 1e-6) + 3.0 * fine
    return np.asarray(out, dtype=np.float32)


def _lighting(rng: np.random.Generator, size: int) -> npt.NDArray[np.float32]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    angle = rng.uniform(0, 2 * math.pi)
    gradient = (np.cos(angle) * xx + np.sin(angle) * yy) * rng.uniform(20, 45)
    vignette = -(xx**2 + yy**2) * rng.uniform(40, 90)
    return np.asarray(gradient + vignette, dtype=np.float32)


def _part_mask(rng: np.random.Generator, size: int) -> tuple[U8, tuple[float, float, float]]:
    cx = size / 2 + rng.uniform(-6, 6)
    cy = size / 2 + rng.uniform(-6, 6)
    radius = size * 0.40 + rng.uniform(-2, 2)
    mask = np.zeros((size, size), np.uint8)
    cv2.circle(mask, (round(cx), round(cy)), round(radius), 255, -1, lineType=cv2.LINE_AA)
    cv2.circle(mask, (round(cx), round(cy)), round(radius * 0.28), 0, -1, lineType=cv2.LINE_AA)
    return mask, (cx, cy, radius)


def _point_on_part(rng: np.random.Generator, geom: tuple[float, float, float]) -> tuple[int, int]:
    cx, cy, r = geom
    rho = rng.uniform(0.45, 0.85) * r
    phi = rng.uniform(0, 2 * math.pi)
    return round(cx + rho * math.cos(phi)), round(cy + rho * math.sin(phi))


def _scratch(rng: np.random.Generator, canvas: U8, geom: tuple[float, float, float]) -> int:
    x0, y0 = _point_on_part(rng, geom)
    ang, length = rng.uniform(0, math.pi), rng.uniform(25, 60)
    x1, y1 = round(x0 + length * math.cos(ang)), round(y0 + length * math.sin(ang))
    cv2.line(canvas, (x0, y0), (x1, y1), 255, 2)
    return 90


def _spot(rng: np.random.Generator, canvas: U8, geom: tuple[float, float, float]) -> int:
    axes = (int(rng.integers(3, 8)), int(rng.integers(3, 8)))
    cv2.ellipse(canvas, _point_on_part(rng, geom), axes, rng.uniform(0, 180), 0, 360, 255, -1)
    return -90


def _crack(rng: np.random.Generator, canvas: U8, geom: tuple[float, float, float]) -> int:
    x, y = _point_on_part(rng, geom)
    ang = rng.uniform(0, 2 * math.pi)
    points = [(x, y)]
    for _ in range(int(rng.integers(5, 9))):
        ang += rng.normal(0, 0.6)
        x, y = round(x + 7 * math.cos(ang)), round(y + 7 * math.sin(ang))
        points.append((x, y))
    cv2.polylines(canvas, [np.array(points, np.int32)], False, 255, 2)
    return -75


def _stain(rng: np.random.Generator, canvas: U8, geom: tuple[float, float, float]) -> int:
    axes = (int(rng.integers(10, 20)), int(rng.integers(6, 14)))
    cv2.ellipse(canvas, _point_on_part(rng, geom), axes, rng.uniform(0, 180), 0, 360, 255, -1)
    return -35


def _chip(rng: np.random.Generator, canvas: U8, geom: tuple[float, float, float]) -> int:
    cx, cy, r = geom
    phi = rng.uniform(0, 2 * math.pi)
    centre = (round(cx + r * math.cos(phi)), round(cy + r * math.sin(phi)))
    cv2.circle(canvas, centre, int(rng.integers(8, 14)), 255, -1)
    return 0  # sentinel: a chip removes material, the fixture shows through


_DRAW: dict[str, Callable[[np.random.Generator, U8, tuple[float, float, float]], int]] = {
    "scratch": _scratch,
    "spot": _spot,
    "crack": _crack,
    "stain": _stain,
    "chip": _chip,
}


def _dust(
    rng: np.random.Generator, base: npt.NDArray[np.floating], part: U8, geom: tuple[float, float, float]
) -> npt.NDArray[np.floating]:
    specks = np.zeros(base.shape, np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        cv2.circle(specks, _point_on_part(rng, geom), int(rng.integers(1, 3)), 255, -1)
    specks &= part
    return np.asarray(base + 28.0 * cv2.GaussianBlur(specks.astype(np.float32) / 255.0, (0, 0), 1.0), np.float64)


def render_part(
    *, seed: int, defect: str | None = None, size_px: int = _SIZE, faint: float = 1.0, dust: bool = False
) -> tuple[U8, U8]:
    """Render one greyscale part (H×W uint8) and its exact defect mask (0/255, zero when good).

    ``faint`` (0-1] scales the defect's contrast (and a chip's size); ``dust`` adds harmless specks.
    """
    if defect is not None and defect not in _DRAW:
        raise ValueError(f"unknown defect kind {defect!r}; choose from {', '.join(DEFECT_KINDS)}")
    rng = np.random.default_rng(seed)
    part, geom = _part_mask(rng, size_px)
    base = 150.0 + rng.uniform(-10, 10) + _texture(rng, size_px)
    fixture = 35.0 + rng.normal(0, 2.0, (size_px, size_px))
    defect_mask = np.zeros((size_px, size_px), np.uint8)
    if dust:
        base = _dust(np.random.default_rng([seed, 2]), base, part, geom)
    if defect is not None:
        delta = faint * _DRAW[defect](np.random.default_rng([seed, 1]), defect_mask, geom)
        if defect == "chip" and faint < 1.0:  # a smaller bite: erode the drawn chip
            size = max(1, round((1.0 - faint) * 8))
            defect_mask = np.asarray(cv2.erode(defect_mask, np.ones((2 * size + 1, 2 * size + 1), np.uint8)), np.uint8)
        if defect == "chip":
            defect_mask &= part
            part = np.where(defect_mask > 0, 0, part).astype(np.uint8)
        else:
            defect_mask &= part
            base = base + delta * cv2.GaussianBlur(defect_mask.astype(np.float32) / 255.0, (0, 0), 0.8)
    alpha = cv2.GaussianBlur(part.astype(np.float32) / 255.0, (0, 0), 0.7)
    image = alpha * base + (1 - alpha) * fixture + _lighting(rng, size_px)
    turn = cv2.getRotationMatrix2D((size_px / 2, size_px / 2), rng.uniform(-4, 4), 1.0)
    image = np.asarray(cv2.warpAffine(image, turn, (size_px, size_px), borderMode=cv2.BORDER_REFLECT), np.float64)
    turned = cv2.warpAffine(defect_mask, turn, (size_px, size_px), flags=cv2.INTER_NEAREST)
    defect_mask = np.asarray(turned, dtype=np.uint8)
    out = np.clip(image + rng.normal(0, 1.5, image.shape), 0, 255).astype(np.uint8)
    return out, defect_mask


def write_dataset(
    out: Path,
    *,
    n_good: int,
    n_defect_each: int,
    layout: Literal["classes", "mvtec"] = "classes",
    kinds: tuple[str, ...] = DEFECT_KINDS,
    seed: int = 0,
    size_px: int = _SIZE,
    subtle: float = 0.0,
    dust: float = 0.0,
) -> Path:
    """Write a synthetic dataset and return its root.

    ``subtle``: share of defective parts drawn faint; ``dust``: share of good parts with dust specks.

    ``classes``: ``good/`` + ``<kind>/`` with masks under ``masks/<kind>/``. ``mvtec``: 80 % of the
    good parts in ``train/good``, the rest and every defect in ``test/``, masks in ``ground_truth``.
    """
    out.mkdir(parents=True, exist_ok=True)
    counter = seed * 1_000_003
    pick = np.random.default_rng([seed, 7])
    for i in range(n_good):
        counter += 1
        image, _ = render_part(seed=counter, size_px=size_px, dust=bool(pick.random() < dust))
        folder = "good" if layout == "classes" else ("train/good" if i < int(n_good * 0.8) else "test/good")
        _write(out / folder / f"good_{i:04d}.png", image)
    for kind in kinds:
        for i in range(n_defect_each):
            counter += 1
            faint = float(pick.uniform(0.2, 0.45)) if pick.random() < subtle else 1.0
            image, mask = render_part(seed=counter, defect=kind, size_px=size_px, faint=faint)
            stem = f"{kind}_{i:04d}"
            if layout == "classes":
                _write(out / kind / f"{stem}.png", image)
                _write(out / "masks" / kind / f"{stem}.png", mask)
            else:
                _write(out / "test" / kind / f"{stem}.png", image)
                _write(out / "ground_truth" / kind / f"{stem}_mask.png", mask)
    return out


def _write(path: Path, image: U8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"{path}: cannot write image")
