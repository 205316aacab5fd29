"""Shared fixtures: a tiny ONNX bundle (built by :mod:`testkit.bundles`), image writers, clean env."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from testkit.bundles import write_tiny_bundle


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test sees the developer's VINSPECT_* settings."""
    import os

    for key in list(os.environ):
        if key.startswith("VINSPECT_"):
            monkeypatch.delenv(key)
    yield


@pytest.fixture()
def tiny_bundle(tmp_path: Path) -> Path:
    """A valid greyscale tiny bundle: FAIL at mean brightness >= 0.6, REVIEW from 0.5."""
    return write_tiny_bundle(tmp_path / "bundle")


@pytest.fixture()
def tiny_bundle_factory(tmp_path: Path) -> Callable[..., Path]:
    """Build tiny bundles with custom thresholds, channels, labels or poison."""
    counter = iter(range(1000))
    return lambda **kw: write_tiny_bundle(tmp_path / f"bundle{next(counter)}", **kw)


@pytest.fixture()
def write_png(tmp_path: Path) -> Callable[..., Path]:
    """Write an image array as PNG under tmp_path (or a given path) and return the path."""

    def _write(name: str | Path, image: np.ndarray) -> Path:
        path = tmp_path / name if not isinstance(name, Path) or not name.is_absolute() else name
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), image)
        return path

    return _write
