"""imgclf: a DVC-versioned, reproducible image-classification pipeline."""

__version__ = "0.1.0"
