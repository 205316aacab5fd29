"""Cache the frozen trunk's patch features of the magnetic-tile TRAIN split once, for the
selection experiments in ``bench/anomaly_selection.py`` (never the test split).

    python bench/anomaly_features.py --cache /tmp/vinspect-cache [--data DIR] [--size 224]

Writes ``<cache>/feats_<size>.npz``: ``emb`` [N, D, h, w] float16 (Preprocess + MobileNetV2 taps
(10, 13) + 3x3 patch pooling, exactly what the exported graph computes), ``label``, ``stem``;
and ``<cache>/synth_<size>.npz``: the same for one image-space synthetic anomaly per good image
with its mask on the patch grid (``mask`` [N, h, w] in 0..1). Synthetic anomalies are generic:
a smooth random-noise blob (Perlin-like: thresholded, upsampled low-resolution noise) filled
with a texture patch cut from another good image, scaled in brightness and blended; nothing in
them names or imitates a defect type.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.anomaly import PatchEmbedder
from training.backbones import MobileNetTrunk, load_mobilenet_v2
from training.data import Preprocess
from training.features import extract_taps
from vinspect.dataset import open_dataset, read_image

DEFAULT_DATA = Path("/work/shared/datasets/magnetic-tile")
Image = npt.NDArray[np.uint8]


def noise_blob(shape: tuple[int, int], rng: np.random.Generator) -> npt.NDArray[np.float32]:
    """A smooth random mask in 0..1 covering roughly 1-12 % of the image."""
    h, w = shape
    cells = int(rng.integers(3, 9))
    low = rng.random((cells, cells)).astype(np.float32)
    smooth = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
    cover = float(rng.uniform(0.01, 0.12))
    level = float(np.quantile(smooth, 1.0 - cover))
    mask = (smooth >= level).astype(np.float32)
    return cv2.GaussianBlur(mask, (0, 0), sigmaX=max(1.0, min(h, w) / 100))


def synthetic(image: Image, donor: Image, rng: np.random.Generator) -> tuple[Image, npt.NDArray[np.float32]]:
    """Paste a blob of ``donor`` texture (brightness-scaled, blended) into ``image``."""
    h, w = image.shape[:2]
    tex = cv2.resize(donor, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
    if rng.random() < 0.5:
        tex = tex[::-1]
    tex = np.clip((tex - tex.mean()) * rng.uniform(0.5, 2.0) + tex.mean() * rng.uniform(0.4, 1.6), 0, 255)
    mask = noise_blob((h, w), rng) * float(rng.uniform(0.5, 1.0))
    mask3 = mask[:, :, None] if image.ndim == 3 else mask
    out = image.astype(np.float32) * (1 - mask3) + tex.reshape(image.shape) * mask3
    return np.clip(out, 0, 255).astype(np.uint8), mask


def embed(images: list[Image], *, size: int) -> npt.NDArray[np.float16]:
    pre = Preprocess(size_px=size, channels=1, supersample=2)
    trunk = MobileNetTrunk(load_mobilenet_v2(), taps=(10, 13)).eval()
    out = []
    for start in range(0, len(images), 32):
        taps = extract_taps(images[start:start + 32], preprocess=pre, trunk=trunk)
        sizes = [(int(t.shape[-2]), int(t.shape[-1])) for t in taps]
        out.append(PatchEmbedder(pool_px=3, tap_sizes=sizes, map_tap=0)(taps).numpy().astype(np.float16))
        print(f"  {start + len(images[start:start + 32])}/{len(images)}", flush=True)
    return np.concatenate(out)


def grey(path: Path) -> Image:
    img = read_image(path)
    return img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.cache.mkdir(parents=True, exist_ok=True)
    samples = open_dataset(args.data).train_samples()  # the train split only
    started = time.perf_counter()
    images = [grey(s.path) for s in samples]
    labels = np.array(["good" if s.is_good else s.label for s in samples])
    stems = np.array([s.stem for s in samples])
    print(f"{len(samples)} train-split images; embedding at {args.size}px", flush=True)
    np.savez(args.cache / f"feats_{args.size}.npz", emb=embed(images, size=args.size), label=labels, stem=stems)
    rng = np.random.default_rng(0)
    goods = [i for i, s in enumerate(samples) if s.is_good]
    synth, masks = [], []
    for i in goods:
        donor = goods[int(rng.integers(len(goods)))]
        img, mask = synthetic(images[i], images[donor], rng)
        synth.append(img)
        masks.append(mask)
    emb = embed(synth, size=args.size)
    grid = emb.shape[-2:]
    small = np.stack([cv2.resize(m, (grid[1], grid[0]), interpolation=cv2.INTER_AREA) for m in masks])
    np.savez(args.cache / f"synth_{args.size}.npz", emb=emb, mask=small, stem=stems[goods])
    print(f"done in {time.perf_counter() - started:.0f} s (shared cores)", flush=True)


if __name__ == "__main__":
    main()
