"""vinspect's trainer: torch lives here and only here (the runtime never imports this package).

Entry point for ``vinspect train``: :func:`train_bundle` (dataset folder -> model bundle).
"""

from training.bundle import train_bundle
from training.config import TrainConfig, load_config

__all__ = ["TrainConfig", "load_config", "train_bundle"]
