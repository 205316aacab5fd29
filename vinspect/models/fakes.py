"""The model seam's fake, shipped beside it (architecture R3): :class:`FaultyModel` wraps a real
model to raise or to sleep on chosen calls; :func:`with_model` puts it into a bundle."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Literal

import numpy as np
import numpy.typing as npt

from vinspect.errors import ModelError
from vinspect.models.output import Model, RawOutput
from vinspect.models.runtime import Bundle

__all__ = ["FaultyModel", "with_model"]


class FaultyModel:
    """Delegates to a real model, but raises or sleeps when ``fault(call_index)`` says so.

    Args:
        inner: the real model.
        fault: maps the 0-based call index to ``"raise"``, ``"sleep"`` or None.
        sleep_s: how long a ``"sleep"`` call takes.
    """

    def __init__(
        self, inner: Model, *, fault: Callable[[int], Literal["raise", "sleep"] | None], sleep_s: float = 0.2
    ) -> None:
        self._inner = inner
        self._fault = fault
        self._sleep_s = sleep_s
        self._calls = 0
        self._lock = threading.Lock()

    def run(self, image: npt.NDArray[np.uint8]) -> RawOutput:
        with self._lock:
            index, self._calls = self._calls, self._calls + 1
        action = self._fault(index)
        if action == "raise":
            raise ModelError(f"injected inference failure on call {index}")
        if action == "sleep":
            time.sleep(self._sleep_s)
        return self._inner.run(image)


def with_model(bundle: Bundle, model: FaultyModel) -> Bundle:
    """The same bundle (manifest, sha256, path) running ``model`` instead."""
    return replace(bundle, model=model)
