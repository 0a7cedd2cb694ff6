"""The export formats, one entry each: file, runtime, writer, bounds and tolerance.

This is the one table of the formats ``imgclf export`` writes. Each entry extends a
runtime format of ``imgclf.inference.runtimes.MODEL_FORMATS`` (how the file is loaded
back and its model info read) with how it is written and which bounds it must meet. A
new format is one entry here (and, for a new kind of file, one in ``MODEL_FORMATS``);
its name must also be added to ``ExportFormat`` in ``imgclf.params``, the params schema
(a test checks the two agree).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.export.bounds import (
    Bound,
    Miss,
    agrees_with_keras,
    within_int8_accuracy_drop,
    within_int8_size_ratio,
)
from imgclf.export.writers import (
    SAVEDMODEL_VERSION,
    write_onnx,
    write_onnx_info,
    write_savedmodel,
    write_savedmodel_info,
    write_tflite,
    write_tflite_info,
)
from imgclf.inference.runtimes import KERAS, ONNX, SAVEDMODEL, TFLITE, ModelFormat
from imgclf.models.info import ModelInfo
from imgclf.params import ExportParams

REFERENCE = KERAS.name  # the row of metrics/export.json every format is compared with
SAVEDMODEL_FOLDER = "savedmodel"  # in the export folder; the LiteRT formats convert it


@dataclass(frozen=True)
class Source:
    """What a writer writes from: the Keras model and its info, the export folder (where a
    converter finds, or first writes, the SavedModel it converts), and the representative
    images ``(N, S, S, 3)`` uint8 of the train split (None when no format needs them)."""

    model: Any
    info: ModelInfo
    folder: Path
    representative: np.ndarray | None = None

    def savedmodel(self) -> Path:
        """The SavedModel version folder in ``folder``, written first if it is not there."""
        saved = self.folder / SAVEDMODEL_FOLDER
        if not saved.exists():
            write_savedmodel(self.model, self.info, saved)
        return saved / SAVEDMODEL_VERSION


Writer = Callable[[Source, Path], None]  # writes the format at the path


@dataclass(frozen=True)
class Format:
    """An export format: where it goes, how it runs, is written and is bounded."""

    name: str
    file: str  # its file or folder inside the export folder
    runtime: ModelFormat  # how it is loaded back, as imgclf predict loads it
    write: Writer
    bounds: tuple[Bound, ...]
    tolerance: float  # how far its probabilities may stray from Keras' on the same pixels
    representative: bool = False  # converted with the representative images (int8)
    # Rewrites the model info of the file at the path: its own OOD threshold, fitted on
    # val with the format itself (int8 shifts the scores). None: the Keras threshold.
    write_info: Callable[[Path, ModelInfo], None] | None = None


def _savedmodel(source: Source, path: Path) -> None:
    write_savedmodel(source.model, source.info, path)


def _tflite_float16(source: Source, path: Path) -> None:
    write_tflite(source.savedmodel(), source.info, path, None)


def _tflite_int8(source: Source, path: Path) -> None:
    if source.representative is None:
        raise ValueError("tflite_int8 needs the representative images")
    write_tflite(source.savedmodel(), source.info, path, source.representative)


def _onnx(source: Source, path: Path) -> None:
    write_onnx(source.model, source.info, path)


FORMATS = {f.name: f for f in (
    Format("savedmodel", SAVEDMODEL_FOLDER, SAVEDMODEL, _savedmodel, (agrees_with_keras,), 1e-5,
           write_info=write_savedmodel_info),
    Format("tflite_float16", "model_float16.tflite", TFLITE, _tflite_float16,
           (agrees_with_keras,), 1e-2, write_info=write_tflite_info),
    Format("tflite_int8", "model_int8.tflite", TFLITE, _tflite_int8,
           (within_int8_accuracy_drop, within_int8_size_ratio), 0.1,
           representative=True, write_info=write_tflite_info),
    Format("onnx", "model.onnx", ONNX, _onnx, (agrees_with_keras,), 1e-4,
           write_info=write_onnx_info),
)}
"""Every export format, by name, in the order of ``ExportFormat``."""


def write_format(fmt: str, model: Any, info: ModelInfo, folder: Path,
                 representative: np.ndarray | None = None) -> Path:
    """Write ``model`` as ``fmt`` into ``folder`` and return the path to load it from.

    The LiteRT formats are converted from the SavedModel, written first if it is not
    there yet; ``tflite_int8`` needs ``representative``, ``(N, S, S, 3)`` training images.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    path = folder / FORMATS[fmt].file
    FORMATS[fmt].write(Source(model, info, folder, representative), path)
    return path


def bound_misses(results: Mapping[str, Mapping[str, Any]], params: ExportParams) -> list[Miss]:
    """The missed bounds of ``results`` (``{format: {accuracy, agreement, size_ratio, ...}}``
    with a :data:`REFERENCE` row), in the order of ``results``, each format's bounds in
    the order of its entry; empty when every format met its bounds."""
    keras = results[REFERENCE]
    return [miss for fmt, row in results.items() if fmt in FORMATS
            for bound in FORMATS[fmt].bounds
            if (miss := bound(fmt, row, keras, params)) is not None]
