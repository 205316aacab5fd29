"""judge_image: the synchronous, thread-free core that turns pixels into a Decision.

`vinspect inspect`, `vinspect eval`, replay and the station loop all call it, so a part is judged
the same way everywhere. Any exception in preprocess, inference or postprocess becomes the
policy's error verdict with reason ``error:<Class>``; it is never a PASS. A frame the model
refuses (:class:`~vinspect.errors.FrameRejected`: wrong size, blank, saturated, unregistrable) is
a FAIL with the model's own reason (``frame_size``, ``blank_frame``, ``alignment``, ...).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from vinspect.errors import FrameRejected
from vinspect.models.runtime import Bundle
from vinspect.pipeline.decide import DecisionPolicy, decide
from vinspect.pipeline.postprocess import to_prediction
from vinspect.pipeline.preprocess import to_model_input
from vinspect.types import Decision, Prediction, Reason

__all__ = ["Judgement", "judge_image"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Judgement:
    """Prediction (None if inference failed), decision, error text and stage stamps (ns)."""

    prediction: Prediction | None
    decision: Decision
    error: str | None
    started_ns: int
    preprocessed_ns: int
    inferred_ns: int
    decided_ns: int

    @property
    def latency_ms(self) -> float:
        """Preprocess + inference + postprocess + decision, in milliseconds."""
        return (self.decided_ns - self.started_ns) / 1e6


def judge_image(
    image: npt.NDArray[np.uint8] | npt.NDArray[np.uint16],
    *,
    bundle: Bundle,
    policy: DecisionPolicy,
    pixel_format: str = "Mono8",
    deadline_ns: int | None = None,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> Judgement:
    """Judge one image; ``deadline_ns`` (on ``clock``) makes a late verdict a FAIL."""
    started = clock()
    pre = inf = started
    prediction: Prediction | None = None
    error: str | None = None
    fault: str | None = None
    try:
        tensor = to_model_input(image, spec=bundle.manifest.input, pixel_format=pixel_format)
        pre = clock()
        raw = bundle.model.run(tensor)
        inf = clock()
        prediction = to_prediction(raw, manifest=bundle.manifest, review_at=policy.review_at,
                                   image_hw=(int(image.shape[0]), int(image.shape[1])))
    except FrameRejected as exc:  # the model refused the frame: FAIL with its reason, no traceback
        fault, error = exc.reason, str(exc)
        logger.warning("frame rejected: %s", exc, extra={"fault": fault})
    except Exception as exc:  # inspection boundary: any failure must still produce a verdict
        fault = Reason.error(exc)
        error = str(exc)
        logger.exception("inspection failed", extra={"fault": fault})
    done = clock()
    late = deadline_ns is not None and done > deadline_ns
    decision = decide(prediction, policy, late=late, fault=fault)
    return Judgement(prediction=prediction, decision=decision, error=error, started_ns=started,
                     preprocessed_ns=pre, inferred_ns=inf, decided_ns=clock())
