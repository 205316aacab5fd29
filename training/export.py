"""The inspection graph (raw uint8 pixels -> score, anomaly map, defect probabilities), ONNX export
and the ORT-vs-torch parity check that guards every bundle.

Graph contract (``vinspect.models.manifest``): input ``image`` uint8 ``[H, W, C]`` with dynamic H,
W; outputs ``score`` float32 ``[1]``, ``anomaly_map`` float32 ``[h, w]``, ``defect_probs`` float32
``[K]``. Everything between (cast, resize, grey->3ch, ImageNet normalisation, trunk, patch
scoring, classifier, fusion) is inside the graph, so the runtime only feeds pixels.

Fusion (labelled model): ``open_set`` (the default, :mod:`training.fusion`) maps each signal so
that its own threshold lands on 0.5 and takes the maximum, so a part FAILs when either signal
passes its own threshold; ``max`` and ``noisy_or`` (older bundles) fuse the raw terms and share one
threshold. Every rule keeps the fused score at or above the (lifted) anomaly score, so a part unlike
the good ones fails whatever the classifier thinks of it.
With a mask head (``TrainConfig.mask_head``, open-set fusion only) its image signal joins the
fusion with its own threshold and ``anomaly_map`` becomes the fused heatmap
(:meth:`training.fusion.OpenSetFusion.fuse_maps`).
The exposure guard (:mod:`training.exposure`, on by default) looks at the raw frame and joins
last, by max on the score and the map: 1.0 outside the goods' grey-level and contrast range (a
FAIL at any threshold, the map flat at 1.0), 0 inside (the outputs unchanged).

Export uses torch's TorchScript-based exporter: the torch.export-based one needs ``onnxscript``,
which is not a dependency. Its DeprecationWarnings are silenced narrowly around the call.

**Parity tolerance** (``TrainConfig.parity_atol``, default 1e-3): every output is in [0, 1) units;
float32 reassociation between ORT's and torch's kernels gives differences around 1e-6..1e-5, so
1e-3 leaves two orders of magnitude for benign drift while still catching a wrong op, a wrong
resize mode or a perturbed weight, which move scores by 1e-2 or more.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import torch
from torch import nn

from training.anomaly import MapHead, PatchEmbedder
from training.classifier import DefectHead, defect_scores
from training.data import Preprocess, to_hwc
from training.exposure import ExposureGuard
from training.fusion import OpenSetFusion
from training.mask_head import MaskHead
from vinspect.errors import ModelError
from vinspect.models.runtime import SessionSettings, create_session

__all__ = [
    "OUTPUT_NAMES",
    "InspectionGraph",
    "check_parity",
    "export_onnx",
    "ort_session",
    "parity_images",
    "run_ort",
]

logger = logging.getLogger(__name__)

OUTPUT_NAMES = ("score", "anomaly_map", "defect_probs")
Outputs = tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]


class InspectionGraph(nn.Module):
    """The whole model, as exported: ``image [H, W, C] uint8`` -> (score, anomaly_map, defect_probs)."""

    def __init__(
        self,
        *,
        preprocess: Preprocess,
        trunk: nn.Module,
        embedder: PatchEmbedder,
        scorer: nn.Module,
        map_head: MapHead,
        classifier: DefectHead | None = None,
        fusion: str = "max",
    ) -> None:
        super().__init__()
        self.preprocess, self.trunk, self.embedder = preprocess, trunk, embedder
        self.scorer, self.map_head, self.classifier = scorer, map_head, classifier
        self.fusion = fusion
        self.open_set = OpenSetFusion() if fusion == "open_set" else None
        self.mask_head: MaskHead | None = None  # set by training when masks exist (open-set fusion only)
        self.exposure: ExposureGuard | None = None  # set by training when the input is equalised
        self.eval()

    def embed(self, image: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Patch embedding ``[1, D, h, w]`` and the trunk taps."""
        taps = self.trunk(self.preprocess(image))
        return self.embedder(taps), taps

    def raw_distance(self, image: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Un-normalised, un-blurred patch distance map and the trunk taps."""
        emb, taps = self.embed(image)
        return self.scorer(emb), taps

    def path_scores(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """The unfused signals: anomaly image score ``[1]``, P(not good) ``[1]`` (None without labels)
        and the mask head's maximum ``[1]`` (None without a mask head)."""
        emb, taps = self.embed(image)
        _, score = self.map_head(self.scorer(emb))
        p_defect = None if self.classifier is None else defect_scores(self.classifier(taps[-1]))[0]
        mask = None if self.mask_head is None else self.mask_head(emb)[1]
        return score, p_defect, mask

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        score, amap, probs = self._outputs(image)
        if self.exposure is not None:
            guard = self.exposure(image)
            return torch.maximum(score, guard), torch.maximum(amap, guard), probs
        return score, amap, probs

    def _outputs(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        emb, taps = self.embed(image)
        amap, score = self.map_head(self.scorer(emb))
        if self.classifier is None:
            return score, amap, torch.zeros(0, dtype=torch.float32)
        p_defect, probs = defect_scores(self.classifier(taps[-1]))
        if self.open_set is not None:
            if self.mask_head is not None:
                mmap, mscore = self.mask_head(emb)
                return self.open_set(score, p_defect, mscore), self.open_set.fuse_maps(amap, mmap), probs[0]
            return self.open_set(score, p_defect), amap, probs[0]
        if self.fusion == "noisy_or":
            return 1.0 - (1.0 - score) * (1.0 - p_defect), amap, probs[0]
        return torch.maximum(score, p_defect), amap, probs[0]


def export_onnx(graph: InspectionGraph, path: Path, *, channels: int, opset: int) -> None:
    """Export ``graph`` to ``path`` with dynamic H, W and validate it with the full ONNX checker.

    Raises:
        ModelError: export fails, the checker rejects the model, or it uses a non-standard op domain.
    """
    example = torch.zeros((97, 131, channels), dtype=torch.uint8)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # The TorchScript exporter announces its own deprecation; we use it on purpose (see module doc).
            warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*(legacy TorchScript|removed).*")
            torch.onnx.export(
                graph,
                (example,),
                str(path),
                input_names=["image"],
                output_names=list(OUTPUT_NAMES),
                dynamic_axes={"image": {0: "height", 1: "width"}},
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
    except (RuntimeError, ValueError, onnx.checker.ValidationError) as exc:
        raise ModelError(f"{path}: ONNX export failed ({exc})") from exc
    domains = {node.domain for node in model.graph.node} - {"", "ai.onnx"}
    if domains:
        raise ModelError(f"{path}: graph uses non-standard op domains {sorted(domains)}")


def ort_session(path: Path, *, threads: int = 1) -> Any:
    """The station's session for ``path``: :func:`vinspect.models.runtime.create_session` with the
    station's default :class:`~vinspect.models.runtime.SessionSettings` at ``threads`` intra-op
    threads, so parity and validation scores are computed by exactly what the station runs."""
    return create_session(path, SessionSettings(intra_op_threads=threads))


def run_ort(session: Any, image: npt.NDArray[np.uint8]) -> Outputs:
    """Run one ``[H, W, C]`` uint8 image; returns (score, anomaly_map, defect_probs)."""
    score, amap, probs = session.run(list(OUTPUT_NAMES), {"image": image})
    return score, amap, probs


@torch.no_grad()
def _run_torch(graph: InspectionGraph, image: npt.NDArray[np.uint8]) -> Outputs:
    score, amap, probs = graph(torch.from_numpy(image))
    return score.numpy(), amap.numpy(), probs.numpy()


def parity_images(images: Sequence[npt.NDArray[np.uint8]], *, channels: int, count: int) -> list[npt.NDArray[np.uint8]]:
    """``count`` images of pairwise different sizes: real images, plus crops / 2x upsamples of them."""
    chosen: list[npt.NDArray[np.uint8]] = []
    seen: set[tuple[int, int]] = set()
    for img in images:
        base = to_hwc(img, channels=channels)
        h, w = base.shape[:2]
        candidates = (base, base[: max(8, h * 3 // 4), : max(8, w * 5 // 6)], base.repeat(2, 0).repeat(2, 1))
        for cand in candidates:
            if cand.shape[:2] not in seen and len(chosen) < count:
                seen.add(cand.shape[:2])
                chosen.append(np.ascontiguousarray(cand))
    return chosen


def check_parity(
    graph: InspectionGraph, path: Path, *, images: Sequence[npt.NDArray[np.uint8]], atol: float
) -> dict[str, float]:
    """Compare ORT and torch on ``images`` (``[H, W, C]`` uint8, various sizes).

    Returns:
        The max abs difference of every output over all images (also logged).

    Raises:
        ModelError: an output differs by more than ``atol``, or shapes disagree.
    """
    session = ort_session(path)
    worst = dict.fromkeys(OUTPUT_NAMES, 0.0)
    for img in images:
        for name, a, b in zip(OUTPUT_NAMES, run_ort(session, img), _run_torch(graph, img), strict=True):
            if a.shape != b.shape:
                raise ModelError(f"parity: output {name} shape {a.shape} (ORT) != {b.shape} (torch)")
            if a.size:
                worst[name] = max(worst[name], float(np.max(np.abs(a.astype(np.float64) - b))))
    sizes = sorted({img.shape[:2] for img in images})
    logger.info(
        "ORT vs torch parity: %s",
        ", ".join(f"{k} {v:.2e}" for k, v in worst.items()),
        extra={"images": len(images), "sizes": str(sizes)},
    )
    bad = {k: v for k, v in worst.items() if not v <= atol}
    if bad:
        raise ModelError(
            f"{path}: ONNX Runtime and torch disagree beyond the {atol:g} tolerance on "
            + ", ".join(f"{k} (max |diff| {v:.3g})" for k, v in bad.items())
            + f" over {len(images)} images of sizes {sizes}; bundle not written"
        )
    return worst
