"""Torch-free dataset tooling: layouts, deterministic split, validation, demo-part generator."""

from vinspect.dataset.images import read_image
from vinspect.dataset.layouts import DatasetIndex, Sample, open_dataset
from vinspect.dataset.split import split_of

__all__ = ["DatasetIndex", "Sample", "open_dataset", "read_image", "split_of"]
