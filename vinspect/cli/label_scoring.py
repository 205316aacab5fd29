"""Score a labelling set with a model bundle, so the workspace shows the least certain images first.

An image's uncertainty is its score's distance to the nearest threshold (``fail_at`` or
``review_at``), in units of ``fail_at``; it is 0 when the anomaly and defect-type signals
disagree (a defect type above 0.5 on a part scored below ``review_at``, or a reject whose
defect-type head names no class) and when the image cannot be judged.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine

from vinspect.dataset.images import decode_image
from vinspect.errors import DatasetError, ImageDecodeError
from vinspect.models.runtime import load_bundle
from vinspect.pipeline.gating import policy_for
from vinspect.pipeline.judge import judge_image
from vinspect.store.db import session_scope
from vinspect.store.label_files import LabelFiles
from vinspect.store.label_queries import get_set, set_images
from vinspect.store.labelling import ImageScore, add_scores

__all__ = ["score_set", "uncertainty"]


def uncertainty(score: float, *, fail_at: float, review_at: float, defect_prob: float) -> float:
    """0 on a threshold or where the two signals disagree; larger is surer."""
    if (score < review_at and defect_prob > 0.5) or (score >= fail_at and 0.0 < defect_prob < 0.5):
        return 0.0
    return min(abs(score - fail_at), abs(score - review_at)) / max(abs(fail_at), 1e-9)


def score_set(engine: Engine, files: LabelFiles, set_name: str, model: Path) -> int:
    """Judge every image of the set with the bundle at ``model`` and store the scores; returns how many."""
    bundle = load_bundle(model, threads=1)
    policy = policy_for(bundle)
    thresholds = bundle.manifest.thresholds
    with session_scope(engine, readonly=True) as db:
        label_set = get_set(db, set_name)
        if label_set is None:
            raise DatasetError(f"no labelling set {set_name!r}")
        images = set_images(db, label_set)
    scores = []
    for image in images:
        try:
            pixels = decode_image(files.read(image.sha256, image.suffix), name=image.file_name)
        except ImageDecodeError:
            continue
        j = judge_image(pixels, bundle=bundle, policy=policy)
        if j.prediction is None:
            scores.append(ImageScore(image_id=image.id, score=float("nan"), uncertainty=0.0))
            continue
        p = j.prediction
        top = max(p.defect_probs.values(), default=0.0)
        scores.append(
            ImageScore(
                image_id=image.id,
                score=p.score,
                uncertainty=uncertainty(
                    p.score, fail_at=thresholds.fail_at, review_at=thresholds.review_at, defect_prob=top
                ),
            )
        )
    with session_scope(engine) as db:
        label_set = get_set(db, set_name)
        assert label_set is not None
        add_scores(
            db,
            label_set,
            scores,
            model_name=bundle.manifest.name,
            model_version=bundle.manifest.version,
            model_sha256=bundle.manifest.sha256,
            now=datetime.now(UTC),
        )
    return len(scores)
