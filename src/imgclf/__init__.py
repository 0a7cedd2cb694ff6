"""imgclf: a DVC-versioned, reproducible image-classification pipeline.

``imgclf.load(path).predict(images)`` is the Python API (:mod:`imgclf.api`); importing
the package loads nothing else until ``load`` is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import os

    from imgclf.api import Classifier

__version__ = "0.1.0"
__all__ = ["__version__", "load"]


def load(path: str | os.PathLike[str], allow_unsafe_model: bool = False) -> Classifier:
    """The model at ``path`` (``models/model.keras`` or any export) as a classifier whose
    ``.predict(paths or arrays)`` gives the rows ``imgclf predict --format json`` prints.

    See :func:`imgclf.api.load`; TensorFlow (or the export's runtime) is imported here,
    on the first call, not by ``import imgclf``.
    """
    from imgclf import api, env

    env.quiet_tensorflow()  # no cuInit error line on a machine without a GPU
    return api.load(path, allow_unsafe_model)
