"""Save and load the model together with what is needed to use it.

The ``.keras`` file is a zip; beside Keras' own entries we add ``imgclf.json`` with
the class names and the image size, so a model file alone is enough to predict.
Models are loaded with Keras' safe mode: a file carrying code (a Lambda layer) is
refused unless the user says they trust it (``--allow-unsafe-model``); the pipeline
never does, so code that arrives with a model file never runs in ``dvc repro``.
"""

from __future__ import annotations

import os
import sys
import zipfile
from pathlib import Path

import keras

from imgclf import fsutil
from imgclf.errors import UserError, first_line
from imgclf.models import (
    augment,  # noqa: F401  registers RandomResizedCrop for loading
    ood_layer,  # noqa: F401  registers OODScore for loading
)
from imgclf.models.info import INFO_NAME, ModelInfo

__all__ = ["INFO_NAME", "ModelInfo", "load_model", "read_info", "save_model"]


def save_model(model: keras.Model, path: str | os.PathLike[str], info: ModelInfo) -> None:
    """Write ``model`` and ``info`` to ``path`` (a ``.keras`` file) atomically."""
    with fsutil.atomic_path(path) as tmp:
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as zf:
            zf.writestr(INFO_NAME, info.to_json())


def read_info(path: str | os.PathLike[str]) -> ModelInfo:
    """The class names and image size stored in a model file, without loading Keras."""
    try:
        with zipfile.ZipFile(path) as zf:
            return ModelInfo.from_json(zf.read(INFO_NAME))
    except FileNotFoundError:
        raise UserError(f"{path}: no model file; run the train stage first (dvc repro train)"
                        ) from None
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError):
        raise UserError(f"{path}: not a model saved by imgclf train; retrain it") from None


def load_model(path: str | os.PathLike[str],
               allow_unsafe: bool = False) -> tuple[keras.Model, ModelInfo]:
    """The Keras model at ``path`` and its ``ModelInfo``.

    Keras' safe mode refuses a file that carries Python code (a Lambda layer), since
    loading it would run that code; ``allow_unsafe`` lifts the refusal, with a warning.
    """
    info = read_info(path)
    if allow_unsafe:
        print(f"warning: loading {path} with code allowed (--allow-unsafe-model): any code "
              "in it runs now", file=sys.stderr)
    try:
        model = keras.models.load_model(Path(path), compile=False, safe_mode=not allow_unsafe)
    except ValueError as exc:
        if "safe_mode=False" in str(exc):
            raise UserError(f"{path}: refused to load: the file contains code (e.g. a Lambda "
                            "layer) that would run on loading; if, and only if, you trust "
                            "the file, pass --allow-unsafe-model") from None
        raise UserError(f"{path}: refused to load ({first_line(exc)})") from None
    return model, info
