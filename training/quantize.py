"""Int8 static quantisation of an exported inspection graph, and the gate that judges it.

Quantisation works on the exported ONNX file, not on the torch modules, so it follows whatever the
graph holds: every node of the chosen op types (``MatMul``: the patch-bank nearest-neighbour
search; ``Conv``: the trunk and the defect head's blocks; ``Gemm``: the defect head's last layer)
is replaced by ONNX Runtime's static int8 form, with activation ranges taken from training goods.

Format: ONNX Runtime's QOperator form (``QLinearMatMul``/``QLinearConv``), unsigned 8-bit
activations and signed 8-bit weights, min/max calibration. On the 2-core x86 development machine
(AVX-512 VNNI) it ran faster than the QDQ form, which ORT executed slower than float for this
graph (``bench/results/ort_int8.json``).

**The gate.** An int8 graph cannot meet the 1e-3 float parity tolerance; it is judged against the
float graph it came from, both run by the station's own session builder, on the parity images and
the whole validation part:

- every image's ``score`` within ``score_atol`` of the float graph's (default 0.05 in [0, 1) score
  units; the kNN-only default measured a worst case near 0.03 on the magnetic-tile dev test split);
- the verdicts each graph gives the validation parts at its own calibrated thresholds differ on at
  most ``max_verdict_flips`` of them (default 2 %);
- the anomaly map, the heatmap reviewers read as NCR evidence: every cell of every image's map
  within ``map_atol`` of the float map's (default 0.1 in the map's [0, 1) units; the kNN-only int8
  graph measured a worst case of 0.071 on the magnetic-tile validation parts, 0.034 median); and on
  every image whose float map reaches the float graph's ``map_at`` (where the heatmap outlines a
  region), the int8 map's hottest cell at most ``map_peak_cells`` cells (Chebyshev distance on the
  map grid) from the float map's (default 2; measured on the labelled model: 26 of 37 such parts in
  the same cell, 10 one cell away, one 2 cells away, where the int8 map put the float peak 0.0007
  below its own; ``bench/results/ort_gate_map.json``). Parts whose map stays below ``map_at`` are
  not held to the peak: their maps are flat and the hottest cell of a flat map moves by chance (up
  to 11 cells on magnetic-tile goods, values within 0.02 of the peak).

Anything beyond refuses the int8 graph (:class:`Int8Refused`). With ``quantize: int8`` that
refuses the bundle; with ``quantize: auto`` (the default) a labelled bundle ships its float graph
instead and says so, with the gate's reason, in the training summary, the log and the manifest
(``training.config.quantize_shipped`` / ``quantize_note``): the float graph is never silently
shipped in the int8 graph's place. Good-only bundles stay float under ``auto``: on the
magnetic-tile good-only model the int8 kNN graph changed 10 of 249 test verdicts (4 %; its scores
crowd the thresholds), against 1 of 249 on the labelled model (``bench/results/ort_int8_quiet.json``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx

from vinspect.errors import ModelError
from vinspect.models.manifest import Thresholds
from vinspect.models.runtime import SessionSettings, create_session

__all__ = [
    "QUANTIZABLE_OPS",
    "Int8Gate",
    "Int8Refused",
    "Int8Report",
    "judge_int8",
    "quantize_int8",
    "verdicts",
]

logger = logging.getLogger(__name__)

QUANTIZABLE_OPS = ("MatMul", "Conv", "Gemm")
PROJECTION_WEIGHT = "scorer.basis"  # training.anomaly.KnnScorer's buffer, as the exported graph names it
Image = npt.NDArray[np.uint8]
ScoredImages = tuple[npt.NDArray[np.float64], Sequence[npt.NDArray[np.float32]]]


def quantize_int8(
    src: Path, dst: Path, *, images: Sequence[Image], ops: Sequence[str] = ("MatMul",), per_channel: bool = False
) -> int:
    """Write the int8 form of ``src`` to ``dst``; activation ranges from ``images`` (``[H, W, C]`` uint8).

    Returns:
        How many nodes were quantised.

    Raises:
        ModelError: unknown op type, no calibration image, no node of the chosen types in the
            graph, or ONNX Runtime's quantiser fails.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    unknown = sorted(set(ops) - set(QUANTIZABLE_OPS))
    if unknown or not ops:
        raise ModelError(
            f"int8 quantisation: op types {unknown or list(ops)} not supported; choose from {list(QUANTIZABLE_OPS)}"
        )
    if not images:
        raise ModelError("int8 quantisation needs calibration images (training goods); none given")
    graph = onnx.load(str(src))
    # the kNN's principal-direction projection (``knn_search_dim``) stays float: it is a few percent of
    # the search's work, and its int8 error would also enter the query's residual outside the basis
    nodes = [n.name for n in graph.graph.node if n.op_type in ops and PROJECTION_WEIGHT not in n.input]
    if not nodes:
        raise ModelError(f"{src}: int8 quantisation found no {'/'.join(ops)} node to quantise")

    class _Goods(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._it: Iterator[Image] = iter(images)

        def get_next(self) -> dict[str, Image] | None:
            image = next(self._it, None)
            return None if image is None else {"image": np.ascontiguousarray(image)}

    hint = _DropPreprocessHint()
    logging.getLogger().addFilter(hint)  # the quantiser logs a generic "consider pre-processing" hint on root
    try:
        quantize_static(
            str(src),
            str(dst),
            _Goods(),
            quant_format=QuantFormat.QOperator,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            calibrate_method=CalibrationMethod.MinMax,
            op_types_to_quantize=list(ops),
            nodes_to_quantize=nodes,
        )
    except Exception as exc:  # the quantiser raises untyped errors for graphs it cannot handle
        raise ModelError(f"{src}: int8 quantisation failed ({exc})") from exc
    finally:
        logging.getLogger().removeFilter(hint)
    onnx.checker.check_model(str(dst))
    logger.info("int8 graph written", extra={"nodes": len(nodes), "ops": ",".join(ops), "per_channel": per_channel})
    return len(nodes)


class _DropPreprocessHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing" not in record.getMessage()


def verdicts(scores: npt.NDArray[np.float64], thresholds: Thresholds) -> npt.NDArray[np.str_]:
    """PASS / REVIEW / FAIL of each score at ``thresholds`` (the station's image-level rule)."""
    return np.where(scores >= thresholds.fail_at, "FAIL", np.where(scores >= thresholds.review_at, "REVIEW", "PASS"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Int8Gate:
    """The int8 graph's tolerance against its float graph (stated in the bundle's manifest)."""

    score_atol: float = 0.05
    max_verdict_flips: float = 0.02
    map_atol: float = 0.1
    map_peak_cells: int = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class Int8Report:
    """What the gate measured: the figures the manifest records."""

    nodes: int
    images: int
    score_max_abs_diff: float
    map_max_abs_diff: float
    verdict_flips: int
    verdicts_compared: int
    map_peak_max_shift_cells: int = 0
    map_peaks_compared: int = 0

    def metrics(self) -> dict[str, float]:
        return {
            "int8_nodes_quantized": float(self.nodes),
            "int8_parity_images": float(self.images),
            "int8_score_max_abs_diff": self.score_max_abs_diff,
            "int8_map_max_abs_diff": self.map_max_abs_diff,
            "int8_map_peak_max_shift_cells": float(self.map_peak_max_shift_cells),
            "int8_map_peaks_compared": float(self.map_peaks_compared),
            "int8_verdict_flips": float(self.verdict_flips),
            "int8_verdicts_compared": float(self.verdicts_compared),
        }


class Int8Refused(ModelError):
    """The int8 graph left the gate's tolerance; ``reason`` names what and where (no advice appended)."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def _run(path: Path, images: Sequence[Image]) -> tuple[npt.NDArray[np.float64], list[npt.NDArray[np.float32]]]:
    session = create_session(path, SessionSettings())
    outs = [session.run(None, {"image": np.ascontiguousarray(img)}) for img in images]
    return np.array([float(np.asarray(o[0]).reshape(-1)[0]) for o in outs]), [np.asarray(o[1]) for o in outs]


@dataclass(frozen=True, slots=True)
class _MapDiff:
    """One image's float-vs-int8 map comparison."""

    max_abs: float
    shift_cells: int | None  # None: the float map stays below map_at (no region drawn: peak not judged)
    float_peak: tuple[int, int]
    int8_peak: tuple[int, int]


def _peak(amap: npt.NDArray[np.float32]) -> tuple[int, int]:
    grid = amap.reshape(amap.shape[-2], amap.shape[-1])
    row, col = np.unravel_index(int(np.argmax(grid)), grid.shape)
    return int(row), int(col)


def _map_diff(f: npt.NDArray[np.float32], q: npt.NDArray[np.float32], *, map_at: float, name: str) -> _MapDiff:
    if f.shape != q.shape:
        raise ModelError(
            f"{name}: the int8 anomaly map has shape {list(q.shape)}, the float map {list(f.shape)}; bundle not written"
        )
    if not f.size:
        return _MapDiff(max_abs=0.0, shift_cells=None, float_peak=(0, 0), int8_peak=(0, 0))
    max_abs = float(np.max(np.abs(f.astype(np.float64) - q.astype(np.float64))))
    fp, qp = _peak(f), _peak(q)
    shift = max(abs(fp[0] - qp[0]), abs(fp[1] - qp[1])) if float(np.max(f)) >= map_at else None
    return _MapDiff(max_abs=max_abs, shift_cells=shift, float_peak=fp, int8_peak=qp)


def judge_int8(
    float_model: Path,
    int8_model: Path,
    *,
    images: Sequence[Image],
    val_float: ScoredImages,
    val_int8: ScoredImages,
    thresholds: tuple[Thresholds, Thresholds],
    gate: Int8Gate,
    nodes: int,
    val_names: Sequence[str] | None = None,
) -> Int8Report:
    """Compare the int8 graph with its float graph; raise if it leaves ``gate``'s tolerance.

    Args:
        images: parity images (``[H, W, C]`` uint8, various sizes), run here through both graphs.
        val_float, val_int8: (scores, maps) of the validation part through each graph, aligned.
        thresholds: (float, int8): each graph's own calibration on the validation part; the float
            graph's ``map_at`` decides which maps outline a region (their hottest cell is judged).
        val_names: the validation parts' names, for the refusal message (default: their index).

    Raises:
        Int8Refused: a score differs by more than ``gate.score_atol``, more than
            ``gate.max_verdict_flips`` of the validation verdicts change, a map cell differs by more
            than ``gate.map_atol``, or a region-outlining map's hottest cell moves by more than
            ``gate.map_peak_cells``; the message names the worst part and its difference.
        ModelError: an int8 map's shape differs from the float map's.
    """
    f_scores, f_maps = _run(float_model, images)
    q_scores, q_maps = _run(int8_model, images)
    names = [f"parity image {i + 1}" for i in range(len(images))]
    names += [f"validation part {i + 1}" for i in range(len(val_float[0]))] if val_names is None else list(val_names)
    f_scores, q_scores = np.concatenate([f_scores, val_float[0]]), np.concatenate([q_scores, val_int8[0]])
    if len(names) != f_scores.size:
        raise ValueError(f"{len(names)} names for {f_scores.size} images")
    score_abs = np.abs(f_scores - q_scores)
    score_diff = float(np.max(score_abs)) if f_scores.size else 0.0
    maps = [
        _map_diff(a, b, map_at=thresholds[0].map_at, name=n)
        for a, b, n in zip([*f_maps, *val_float[1]], [*q_maps, *val_int8[1]], names, strict=True)
    ]
    map_diff = max((m.max_abs for m in maps), default=0.0)
    shifts = [(m.shift_cells, i) for i, m in enumerate(maps) if m.shift_cells is not None]
    peak_shift = max((s for s, _ in shifts), default=0)
    f_val, q_val = val_float[0], val_int8[0]
    flips = int(np.sum(verdicts(f_val, thresholds[0]) != verdicts(q_val, thresholds[1])))
    report = Int8Report(
        nodes=nodes,
        images=int(f_scores.size),
        score_max_abs_diff=score_diff,
        map_max_abs_diff=map_diff,
        verdict_flips=flips,
        verdicts_compared=len(f_val),
        map_peak_max_shift_cells=peak_shift,
        map_peaks_compared=len(shifts),
    )
    logger.info(
        "int8 vs float: score max |diff| %.3g, map max |diff| %.3g, hottest map cell moved at most %d "
        "cells on %d region maps, verdict flips %d of %d",
        score_diff,
        map_diff,
        peak_shift,
        len(shifts),
        flips,
        len(f_val),
    )
    problems = []
    if not score_diff <= gate.score_atol:
        worst = int(np.argmax(score_abs))
        problems.append(
            f"score max |diff| {score_diff:.3g} exceeds the {gate.score_atol:g} tolerance "
            f"(worst: {names[worst]}, float {f_scores[worst]:.4f}, int8 {q_scores[worst]:.4f})"
        )
    if len(f_val) and flips > gate.max_verdict_flips * len(f_val):
        problems.append(
            f"{flips} of {len(f_val)} validation verdicts change (at most {gate.max_verdict_flips:.1%} allowed)"
        )
    if not map_diff <= gate.map_atol:
        worst = max(range(len(maps)), key=lambda i: maps[i].max_abs)
        over = sum(m.max_abs > gate.map_atol for m in maps)
        problems.append(
            f"anomaly map max |diff| {map_diff:.3g} exceeds the {gate.map_atol:g} tolerance "
            f"(worst: {names[worst]}; {over} image(s) beyond)"
        )
    moved = [(s, i) for s, i in shifts if s > gate.map_peak_cells]
    if moved:
        s, i = max(moved)
        problems.append(
            f"the anomaly map's hottest cell moves {s} cells (at most {gate.map_peak_cells} allowed) on "
            f"{names[i]}: row/column {maps[i].float_peak} in the float map, {maps[i].int8_peak} in "
            f"the int8 map ({len(moved)} of {len(shifts)} region-outlining maps moved)"
        )
    if problems:
        reason = "; ".join(problems) + f" over {f_scores.size} images"
        raise Int8Refused(
            f"{int8_model}: the int8 graph disagrees with its float graph: {reason}; bundle not written "
            "(train with quantize: auto or none, or quantise fewer op types)",
            reason=reason,
        )
    return report
