"""Procedural PCB-like boards and template/test pairs (DeepPCB layout) for tests and the demo.

One golden board per seed: traces (polylines), pads and vias drawn with OpenCV, binarised like
DeepPCB. Defects are drawn into copies: ``open`` (a gap cut across a trace), ``short`` (a copper
bridge between two traces), ``pin-hole`` (a hole in a pad), ``copper`` (a stray island). Test
images keep the template's geometry (as DeepPCB's do); line-like changes are added by whoever
inspects them (:mod:`vinspect.dataset.linechange`).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

__all__ = ["SYNTH_KINDS", "draw_board", "inject_defect", "write_pairs"]

SYNTH_KINDS = ("open", "short", "pin-hole", "copper")
U8 = npt.NDArray[np.uint8]
COPPER, BASE = 230, 30


def draw_board(seed: int = 0, *, size_px: int = 256) -> U8:
    """A golden board: dark base, bright copper traces, pads and vias."""
    rng = np.random.default_rng(seed)
    img = np.full((size_px, size_px), BASE, dtype=np.uint8)
    step = size_px // 8
    for row in range(1, 8, 2):  # horizontal traces with a jog, two trace widths
        y = row * step
        x0, x1 = int(rng.integers(step // 2, 2 * step)), int(rng.integers(5 * step, size_px - step // 2))
        jog = int(rng.integers(-step // 2, step // 2))
        pts = np.array([[x0, y], [size_px // 2, y], [size_px // 2 + step // 2, y + jog], [x1, y + jog]], np.int32)
        cv2.polylines(img, [pts], False, COPPER, thickness=int(rng.choice([3, 5])))
        for x, yy in ((x0, y), (x1, y + jog)):
            cv2.rectangle(img, (x - 6, yy - 6), (x + 6, yy + 6), COPPER, -1)
            cv2.circle(img, (x, yy), 2, BASE, -1)
    for _ in range(6):
        c = (int(rng.integers(step, size_px - step)), int(rng.integers(step // 2, size_px - step // 2)))
        if img[c[1], c[0]] == BASE:
            cv2.circle(img, c, 4, COPPER, -1)
    return img


def _copper_point(board: U8, rng: np.random.Generator, *, on: bool) -> tuple[int, int]:
    ys, xs = np.nonzero(board == COPPER) if on else np.nonzero(board == BASE)
    margin = board.shape[0] // 10
    keep = (xs > margin) & (xs < board.shape[1] - margin) & (ys > margin) & (ys < board.shape[0] - margin)
    i = int(rng.integers(int(keep.sum())))
    return int(xs[keep][i]), int(ys[keep][i])


def inject_defect(board: U8, kind: str, *, seed: int) -> tuple[U8, tuple[int, int, int, int]]:
    """A copy of ``board`` with one defect of ``kind``, and its box ``(x1, y1, x2, y2)``."""
    rng = np.random.default_rng(seed)
    out = board.copy()
    if kind == "open":
        x, y = _copper_point(board, rng, on=True)
        cv2.rectangle(out, (x - 3, y - 8), (x + 3, y + 8), BASE, -1)
        box = (x - 6, y - 10, x + 7, y + 11)
    elif kind == "short":
        x, y = _copper_point(board, rng, on=True)
        reach = board.shape[0] // 4  # traces run every quarter of the board: this bridges to the next one
        cv2.line(out, (x, y), (x + 3, y + reach), COPPER, 3)
        box = (x - 4, y - 3, x + 8, y + reach + 4)
    elif kind == "pin-hole":
        x, y = _copper_point(board, rng, on=True)
        cv2.circle(out, (x, y), 3, BASE, -1)
        box = (x - 6, y - 6, x + 7, y + 7)
    elif kind == "copper":
        x, y = _copper_point(board, rng, on=False)
        cv2.ellipse(out, (x, y), (5, 3), float(rng.uniform(0, 180)), 0, 360, COPPER, -1)
        box = (x - 8, y - 8, x + 9, y + 9)
    else:
        raise ValueError(f"unknown synthetic defect kind {kind!r}; choose from {SYNTH_KINDS}")
    h, w = board.shape
    return out, (max(box[0], 0), max(box[1], 0), min(box[2], w), min(box[3], h))


def write_pairs(out: Path, *, n_good: int, n_defect_each: int, seed: int = 0, size_px: int = 256) -> Path:
    """Write ``<id>_temp.png``, ``<id>_test.png`` and ``<id>.txt`` pairs of one golden board into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    board = draw_board(seed, size_px=size_px)
    n = 0
    for _ in range(n_good):
        cv2.imwrite(str(out / f"b{n:05d}_temp.png"), board)
        cv2.imwrite(str(out / f"b{n:05d}_test.png"), board)
        (out / f"b{n:05d}.txt").write_text("", encoding="utf-8")
        n += 1
    for kind in SYNTH_KINDS:
        for _ in range(n_defect_each):
            image, (x1, y1, x2, y2) = inject_defect(board, kind, seed=seed * 100003 + n)
            cv2.imwrite(str(out / f"b{n:05d}_temp.png"), board)
            cv2.imwrite(str(out / f"b{n:05d}_test.png"), image)
            (out / f"b{n:05d}.txt").write_text(f"{x1} {y1} {x2} {y2} {kind}\n", encoding="utf-8")
            n += 1
    return out
