"""TrainConfig: every knob of ``train_bundle``, with the defaults chosen on validation data.

``training/configs/default.yaml`` mirrors these defaults (a test keeps the two in step). The
defaults were chosen on a validation part of the magnetic-tile *train* split (never its test part);
see ``bench/results/`` for the comparison that picked them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vinspect.errors import ConfigError

__all__ = ["TrainConfig", "load_config"]


class TrainConfig(BaseModel):
    """Training configuration (frozen; unknown keys are refused)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # --- input and backbone -------------------------------------------------------------------
    image_size_px: int = Field(default=224, ge=32, le=1024, description="square size the graph resizes to")
    resize_supersample: int = Field(default=2, ge=1, le=4, description="anti-aliasing: resize to k*size, k x k average")
    photometric: Literal["auto", "none", "equalize"] = Field(
        default="auto",
        description="equalize: per-image histogram equalisation in the graph, before the resize; "
        "auto: equalize for a good-only bundle, none when labelled defects are trained",
    )
    exposure_guard: bool = Field(
        default=True,
        description="FAIL a frame whose raw grey level or contrast is outside the range of every training good",
    )
    exposure_margin: float = Field(
        default=1.0, ge=0.0, description="exposure guard: widen the goods' range by this many standard deviations"
    )
    trunk_taps: tuple[int, ...] = Field(
        default=(10, 13), description="MobileNetV2 blocks whose outputs form patch features"
    )
    map_tap: int = Field(default=0, ge=0, description="index into trunk_taps giving the anomaly-map grid")
    # --- anomaly model --------------------------------------------------------------------------
    anomaly_method: Literal["knn", "gaussian", "knn_cell"] = Field(
        default="knn",
        description="knn: one coreset bank for every cell; knn_cell: each cell searches its own cell's good patches; "
        "gaussian: one Gaussian",
    )
    patch_pool_px: int = Field(default=3, ge=1, le=7, description="local average over k x k feature cells")
    anomaly_views: int = Field(default=1, ge=1, le=4, description="flip views of each good image in the bank")
    coreset_size: int = Field(default=8192, ge=16, description="memory-bank size (greedy coreset)")
    cell_bank_size: int | None = Field(
        default=None, ge=1, description="knn_cell: patches kept per cell (greedy coreset); null: every fit good's"
    )
    coreset_projection_dim: int = Field(default=64, ge=8, description="random projection used by the coreset search")
    knn_search_dim: int | None = Field(
        default=128,
        ge=8,
        description="knn: search in the bank's top principal directions plus the residual (fewer = faster); "
        "null or >= the feature size: all features",
    )
    position_norm: bool = Field(default=True, description="divide the map by the per-cell mean good distance")
    map_blur_sigma_px: float = Field(default=1.0, ge=0.0, description="Gaussian blur of the map, in map cells")
    gaussian_shrinkage: float = Field(default=0.01, ge=0.0, le=1.0)
    # --- defect classifier (used when labelled defects exist and good_only is False) ------------
    classifier_stop_block: int = Field(
        default=18,
        ge=2,
        le=19,
        description="fine-tune MobileNetV2 blocks last_tap+1 .. stop-1 (19 = with the 1280 conv)",
    )
    classifier_epochs: int = Field(default=30, ge=1)
    classifier_lr: float = Field(default=1e-3, gt=0)
    classifier_weight_decay: float = Field(default=1e-4, ge=0)
    classifier_batch_size: int = Field(default=32, ge=1)
    classifier_views: int = Field(default=4, ge=1, le=8, description="flip/rotate views cached per image")
    classifier_dropout: float = Field(default=0.2, ge=0.0, lt=1.0)
    fusion: Literal["open_set", "max", "noisy_or"] = Field(
        default="open_set",
        description="open_set: each signal FAILs above its own threshold (labels only add FAILs); max: one threshold",
    )
    open_set_anomaly_frr: float = Field(
        default=0.04,
        ge=0.0,
        le=1.0,
        description="open_set: validation goods the anomaly path may fail",
    )
    open_set_defect_frr: float = Field(
        default=0.01,
        ge=0.0,
        le=1.0,
        description="open_set: validation goods the defect signal may fail",
    )
    mask_head: Literal["off", "linear", "mlp"] = Field(
        default="off",
        description="per-patch 'defect here' head trained on the defect masks (open_set fusion; skipped without masks)",
    )
    open_set_mask_frr: float = Field(
        default=0.01,
        ge=0.0,
        le=1.0,
        description="open_set: validation goods the mask head's signal may fail",
    )
    # --- validation and calibration -------------------------------------------------------------
    val_percent: int = Field(default=20, ge=5, le=50, description="share of training images held out")
    frr_target: float = Field(default=0.01, ge=0.0, le=1.0)
    margin_fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    margin_cap: float = Field(default=0.25, ge=0.0)
    review_rate: float = Field(default=0.05, ge=0.0, le=1.0)
    frr_ceiling: float | None = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="most good parts FAIL may reject; above it the zero-escape band is REVIEW (null: no ceiling)",
    )
    golden_per_kind: int = Field(default=3, ge=0, le=16, description="golden goods and defects each")
    # --- export ---------------------------------------------------------------------------------
    opset: int = Field(default=17, ge=17, le=21)
    parity_atol: float = Field(
        default=1e-3,
        ge=0.0,
        description="max |ORT - torch| allowed on every output (scores are in 0..1 units)",
    )
    parity_images: int = Field(default=6, ge=2)
    quantize: Literal["auto", "none", "int8"] = Field(
        default="auto",
        description="auto: labelled bundles ship the int8 graph when the int8 gate passes, else the float graph "
        "(the summary says why); good-only bundles stay float (int8 changed 4 % of their test verdicts). "
        "int8: ship ONNX Runtime's static int8 form of the graph or refuse the bundle (training/quantize.py). "
        "none: float",
    )
    quantize_ops: tuple[Literal["MatMul", "Conv", "Gemm"], ...] = Field(
        default=("MatMul",), min_length=1, description="op types quantised (MatMul: the patch-bank kNN search)"
    )
    quantize_per_channel: bool = Field(default=False, description="per-channel weight scales")
    quantize_calibration_images: int = Field(default=64, ge=1, description="training goods that set int8 ranges")
    int8_score_atol: float = Field(
        default=0.05, ge=0.0, le=1.0, description="max |int8 - float| score on parity and validation images"
    )
    int8_max_verdict_flips: float = Field(
        default=0.02, ge=0.0, le=1.0, description="share of validation verdicts int8 may change vs float"
    )
    int8_map_atol: float = Field(
        default=0.1, ge=0.0, le=1.0, description="max |int8 - float| of any anomaly-map cell (the NCR heatmap)"
    )
    int8_map_peak_cells: int = Field(
        default=2, ge=0, description="max cells the hottest map cell may move where the map outlines a region"
    )
    # --- run ------------------------------------------------------------------------------------
    seed: int = 0
    torch_threads: int | None = Field(default=None, ge=1, description="None: torch's default")
    min_good_images: int = Field(default=10, ge=2)


def load_config(path: Path) -> TrainConfig:
    """Read a TrainConfig from a YAML file.

    Raises:
        ConfigError: the file is missing, not YAML, or does not match the schema.
    """
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read training config ({exc})") from exc
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path}: invalid training config: {problems}") from exc
