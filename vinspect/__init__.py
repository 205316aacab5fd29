"""vinspect: automated visual inspection station runtime."""

__version__ = "0.1.0"
__all__ = ["__version__"]
