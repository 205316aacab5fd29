"""The mask-supervised "defect here" head (issue 12e): learns where masks say a defect is, joins the
open-set fusion without ever turning a FAIL into a PASS, and is skipped (not an error) without masks."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.training.conftest import make_dataset
from vinspect.errors import ModelError

pytestmark = pytest.mark.train


def _planted(rng: np.random.Generator, n: int, *, defect: bool) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings [n, 8, 6, 6] of noise; defects carry a shifted feature inside a random 2x2 block."""
    emb = rng.normal(0.0, 1.0, (n, 8, 6, 6)).astype(np.float32)
    cover = np.zeros((n, 6, 6), np.float32)
    if defect:
        for i in range(n):
            y, x = rng.integers(0, 5, 2)
            emb[i, 3, y : y + 2, x : x + 2] += 4.0
            emb[i, 5, y : y + 2, x : x + 2] -= 3.0
            cover[i, y : y + 2, x : x + 2] = 1.0
    return emb, cover


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_mask_head_learns_a_planted_defect_region(kind: str) -> None:
    import torch

    from training.mask_head import fit_mask_head

    rng = np.random.default_rng(0)
    good, _ = _planted(rng, 40, defect=False)
    defect, cover = _planted(rng, 30, defect=True)
    head = fit_mask_head(
        torch.from_numpy(good), torch.from_numpy(defect), list(cover), kind=kind, blur_sigma_px=0.0, seed=0
    )
    new_good, _ = _planted(rng, 10, defect=False)
    new_defect, new_cover = _planted(rng, 10, defect=True)
    with torch.no_grad():
        good_max = [float(head(torch.from_numpy(e[None]))[1][0]) for e in new_good]
        hits = 0
        for e, c in zip(new_defect, new_cover, strict=True):
            amap, top = head(torch.from_numpy(e[None]))
            assert float(top[0]) > max(good_max)  # every new defect above every new good
            hits += bool(c.reshape(-1)[int(amap.reshape(-1).argmax())])
    assert hits == 10  # the map's hottest cell is inside the planted region every time


def test_cell_cover_is_the_fraction_of_each_cell_the_mask_covers() -> None:
    from training.mask_head import cell_cover

    mask = np.zeros((40, 80), np.uint8)
    mask[:20, :40] = 255  # the top-left quarter
    cover = cell_cover(mask, (2, 2))
    assert np.allclose(cover, [[1.0, 0.0], [0.0, 0.0]])
    with pytest.raises(ModelError, match="2-D"):
        cell_cover(np.zeros((2, 2, 2, 2), np.uint8), (2, 2))


def test_mask_head_never_turns_a_fail_into_a_pass() -> None:
    import torch

    from training.fusion import FUSED_FAIL_AT, OpenSetFusion

    fusion = OpenSetFusion()
    fusion.set_thresholds(anomaly_at=0.62, defect_at=0.9, mask_at=0.7)
    gen = torch.Generator().manual_seed(0)
    a, d, m = (torch.rand(5000, generator=gen) for _ in range(3))
    without, with_mask = fusion(a, d), fusion(a, d, m)
    assert (with_mask >= without).all()  # it may only add FAILs
    assert torch.equal(with_mask >= FUSED_FAIL_AT, (a >= 0.62) | (d >= 0.9) | (m >= 0.7))
    amap, mmap = torch.rand(14, 14, generator=gen), torch.rand(14, 14, generator=gen)
    fused_map = fusion.fuse_maps(amap, mmap)
    from training.fusion import lift

    assert (fused_map >= lift(amap, fusion.anomaly_at)).all()
    assert torch.equal(fused_map >= FUSED_FAIL_AT, (amap >= 0.62) | (mmap >= 0.7))
    with pytest.raises(ModelError, match="mask threshold"):
        fusion.set_thresholds(anomaly_at=0.5, defect_at=0.5, mask_at=1.0)


def _with_masks(root: Path) -> Path:
    """Class folders plus ``masks/spot/<stem>.png`` marking each bright spot."""
    (root / "masks" / "spot").mkdir(parents=True)
    for p in sorted((root / "spot").glob("*.png")):
        img = np.asarray(Image.open(p))
        Image.fromarray(((img >= 250) * 255).astype(np.uint8)).save(root / "masks" / "spot" / p.name)
    return root


def test_bundle_with_masks_ships_the_mask_head_and_passes_parity(tmp_path: Path, small_config) -> None:  # type: ignore[no-untyped-def]
    from training import train_bundle
    from training.export import ort_session, run_ort
    from training.fusion import FUSED_FAIL_AT

    data = _with_masks(make_dataset(tmp_path / "data", n_good=24, n_defect=8, seed=3))
    cfg = small_config.model_copy(update={"mask_head": "linear"})
    out = tmp_path / "bundle"
    manifest = train_bundle(data, out, name="masked", version="m1", config=cfg, progress=False)
    assert manifest.fusion is not None and manifest.fusion.mask_at is not None
    assert manifest.fusion.mask_frr is not None and 0.0 <= manifest.fusion.mask_frr <= 1.0
    assert manifest.training.metrics["parity_max_abs_diff_anomaly_map"] <= cfg.parity_atol
    stored = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert stored["fusion"]["mask_at"] == pytest.approx(manifest.fusion.mask_at)
    session = ort_session(out / "model.onnx")
    spot = np.asarray(Image.open(sorted((data / "spot").glob("*.png"))[0]))[:, :, None]
    score, amap, _ = run_ort(session, np.ascontiguousarray(spot))
    assert amap.ndim == 2 and float(score[0]) >= FUSED_FAIL_AT


def test_bundle_without_masks_still_trains_and_says_the_head_was_skipped(
    tmp_path: Path,
    small_config,  # type: ignore[no-untyped-def]
    caplog: pytest.LogCaptureFixture,
) -> None:
    from training import train_bundle

    data = make_dataset(tmp_path / "data", n_good=24, n_defect=6, seed=4)
    cfg = small_config.model_copy(update={"mask_head": "linear"})
    with caplog.at_level(logging.INFO, logger="training.fit"):
        manifest = train_bundle(data, tmp_path / "bundle", name="nomask", version="n1", config=cfg, progress=False)
    assert manifest.fusion is not None and manifest.fusion.mask_at is None
    assert any("mask head skipped: no defect image has a mask" in r.getMessage() for r in caplog.records)


def test_a_mask_of_the_wrong_size_is_refused_naming_the_file(tmp_path: Path, small_config) -> None:  # type: ignore[no-untyped-def]
    from training import train_bundle
    from vinspect.errors import DatasetError

    data = _with_masks(make_dataset(tmp_path / "data", n_good=12, n_defect=3, seed=5))
    bad = sorted((data / "masks" / "spot").glob("*.png"))[0]
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(bad)
    cfg = small_config.model_copy(update={"mask_head": "linear"})
    with pytest.raises(DatasetError, match=f"{bad.name}.*mask is 10x10"):
        train_bundle(data, tmp_path / "bundle", name="bad", version="b1", config=cfg, progress=False)
