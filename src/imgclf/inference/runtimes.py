"""Run a model in any of its formats: ``.keras``, SavedModel folder, ``.tflite``, ``.onnx``.

:func:`load_runtime` returns a :class:`Runtime` whatever the format: the class names and
image size the model was trained with, and ``predict_on_batch(images) -> probs`` (and
``predict_scored(images) -> (probs, OOD scores)``, the model's second output, see
``imgclf.models.ood_layer``), so predict, evaluate, the export stage (and a server)
score every format through the same code (``imgclf.inference.batch.score_batch`` calls
``predict_scored``). The
formats are one table, :data:`MODEL_FORMATS`: per format its suffix, loader and model
info reader (the export layer's table, ``imgclf.export.formats``, extends it).

Each format carries its :class:`~imgclf.models.info.ModelInfo` (written by
``imgclf export``):

* ``.keras``: ``imgclf.json`` inside the zip (``imgclf.models.saving``);
* SavedModel: ``assets.extra/imgclf.json`` inside the folder (TensorFlow Serving
  ignores it); the folder may be the version folder itself or its parent holding
  numbered versions (TensorFlow Serving's layout), of which the highest is used;
* ``.onnx``: the metadata entry ``imgclf`` of the model;
* ``.tflite``: a JSON file of the same name beside it (``model_int8.json``).

TensorFlow is imported only for ``.keras`` and SavedModel; ``.tflite`` runs on
``ai-edge-litert`` and ``.onnx`` on ``onnxruntime`` alone. A ``.tflite`` runtime keeps
its tensors in its interpreter, so it must not be called from two threads at once (a
server should hold a lock around ``predict_on_batch``, or load one runtime per thread).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imgclf.errors import UserError, first_line
from imgclf.machine import usable_cores
from imgclf.models.info import INFO_NAME, ModelInfo

if TYPE_CHECKING:
    from imgclf.data.shards import ShardsMeta

SAVEDMODEL_FILE = "saved_model.pb"
SAVEDMODEL_INFO = Path("assets.extra") / INFO_NAME  # inside a SavedModel folder
ONNX_INFO_KEY = "imgclf"  # the ONNX metadata entry holding ModelInfo's JSON
SERVING_SIGNATURE = "serving_default"  # float32 pixels 0..255 -> probabilities
UINT8_SIGNATURE = "serve_uint8"  # the same for uint8 pixels
INPUT_NAME = "images"  # the input of both SavedModel signatures


Outputs = tuple[np.ndarray, np.ndarray | None]  # (probs (B, C), OOD scores (B,) or None)


def split_outputs(outputs: Any) -> Outputs:
    """A model call's outputs, in any order (a list, or a dict by name), as ``(probs,
    scores)``: the probabilities are the rank-2 output, the OOD score the rank-1 one
    (None for a model from before the score)."""
    values = list(outputs.values()) if isinstance(outputs, dict) else (
        list(outputs) if isinstance(outputs, list | tuple) else [outputs])
    arrays = [np.asarray(v) for v in values]
    probs = next(a for a in arrays if a.ndim == 2)
    score = next((a for a in arrays if a.ndim == 1), None)
    return probs, score


@dataclass(frozen=True)
class Runtime:
    """A loaded model of any format: what it was trained on, and how to run it."""

    path: Path  # the file or folder as given
    info: ModelInfo
    # (B, S, S, 3) float32 0..255 -> (probs (B, C), OOD scores (B,) or None)
    run: Callable[[np.ndarray], Outputs]

    def predict_on_batch(self, images: Any) -> np.ndarray:
        """``(B, C)`` float32 probabilities of ``(B, S, S, 3)`` pixels in 0..255 (any
        numeric dtype; a tensor is fine)."""
        return self.predict_scored(images)[0]

    def predict_scored(self, images: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """``(probs (B, C) float32, OOD scores (B,) float32 or None)`` of ``images``; None
        when the model computes no score (one trained before it existed)."""
        pixels = np.asarray(images, dtype=np.float32)
        if len(pixels) == 0:
            empty = np.zeros((0,), np.float32) if self.info.ood is not None else None
            return np.zeros((0, len(self.info.class_names)), np.float32), empty
        probs, score = self.run(pixels)
        return (np.asarray(probs, dtype=np.float32),
                None if score is None else np.asarray(score, dtype=np.float32))


@dataclass(frozen=True)
class ModelFormat:
    """A format a model can be run from: how it is named on disk, loaded and described.

    The table :data:`MODEL_FORMATS` is the one place that knows the formats; the export
    layer's table (``imgclf.export.formats``) adds how each is written and bounded.
    """

    name: str
    suffix: str  # of the file; "" for a format that is a folder (a SavedModel)
    load: Callable[[Path, bool], Runtime]  # (path, allow_unsafe) -> a ready runtime
    read_info: Callable[[Path], ModelInfo]  # its class names and image size, not run
    label: str  # in words: the suffix, or the folder's kind
    stage: str  # the pipeline stage that writes it: the hint when it is missing


def model_format(path: str | os.PathLike[str]) -> ModelFormat:
    """The format of ``path`` from its name (a folder is a SavedModel); UserError if none."""
    path = Path(path)
    if path.is_dir():
        return next(f for f in MODEL_FORMATS.values() if not f.suffix)
    fmt = next((f for f in MODEL_FORMATS.values()
                if f.suffix and f.suffix == path.suffix.lower()), None)
    if fmt is None:
        if not path.exists():
            raise UserError(f"{path}: no such model file or folder; give a {supported()}")
        raise UserError(f"{path}: not a model format imgclf can run; give a {supported()}")
    if not path.is_file():
        raise UserError(f"{path}: no model file; run the {fmt.stage} stage first "
                        f"(dvc repro {fmt.stage})")
    return fmt


def supported() -> str:
    """The formats :func:`load_runtime` takes, in words, for error messages."""
    files = [f.label for f in MODEL_FORMATS.values() if f.suffix]
    folders = [f.label for f in MODEL_FORMATS.values() if not f.suffix]
    return f"{', '.join(files[:-1])} or {files[-1]} file, or a {' or '.join(folders)} folder"


def savedmodel_dir(path: str | os.PathLike[str]) -> Path:
    """The folder holding ``saved_model.pb``: ``path`` itself, or its highest numbered
    version folder (TensorFlow Serving's ``model/1/``, ``model/2/`` layout)."""
    path = Path(path)
    if (path / SAVEDMODEL_FILE).is_file():
        return path
    versions = [p for p in path.iterdir() if p.name.isdigit() and (p / SAVEDMODEL_FILE).is_file()]
    if not versions:
        raise UserError(f"{path}: a folder, but no {SAVEDMODEL_FILE} in it or in a numbered "
                        f"version folder; give a {supported()}")
    return max(versions, key=lambda p: int(p.name))


def tflite_info_path(path: str | os.PathLike[str]) -> Path:
    """The JSON beside a ``.tflite`` file that holds its ModelInfo."""
    return Path(path).with_suffix(".json")


def read_runtime_info(path: str | os.PathLike[str]) -> ModelInfo:
    """The class names and image size of a model of any format, without running it."""
    return model_format(path).read_info(Path(path))


def check_scorable(info: ModelInfo, meta: ShardsMeta, model_path: str | os.PathLike[str],
                   data: str | os.PathLike[str], split: str) -> None:
    """UserError unless the model at ``model_path`` (``info``) was trained on the classes
    and image size of the prepared ``data`` (``meta``), and ``split`` holds images."""
    if info.class_names != meta.class_names or info.image_size != meta.image_size:
        raise UserError(f"{model_path} was trained on other data (classes {info.class_names}, "
                        f"{info.image_size} px); retrain it: dvc repro train")
    if not meta.counts.get(split):
        raise UserError(f"{data}: the {split} split is empty; raise split.{split}")


def load_runtime(path: str | os.PathLike[str], allow_unsafe: bool = False) -> Runtime:
    """The model at ``path``, of any format, ready to predict.

    ``allow_unsafe`` matters for ``.keras`` files only (see ``imgclf.models.saving``):
    the other formats carry no Python code.
    """
    return model_format(path).load(Path(path), allow_unsafe)


# --- one loader and info reader per format ----------------------------------------------------


def keras_runtime(model: Any, info: ModelInfo, path: Path) -> Runtime:
    """A loaded Keras ``model`` (saved at ``path``) as a :class:`Runtime`."""
    return Runtime(path, info, lambda pixels: split_outputs(model.predict_on_batch(pixels)))


def _keras(path: Path, allow_unsafe: bool) -> Runtime:
    from imgclf.models.saving import load_model  # Keras' import: only for .keras

    return keras_runtime(*load_model(path, allow_unsafe=allow_unsafe), path)


def _keras_info(path: Path) -> ModelInfo:
    from imgclf.models.saving import read_info

    return read_info(path)


def _savedmodel(path: Path, allow_unsafe: bool) -> Runtime:
    folder = savedmodel_dir(path)
    info = _savedmodel_info(path)
    import tensorflow as tf

    try:
        serve = tf.saved_model.load(str(folder)).signatures[SERVING_SIGNATURE]
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"{path}: not a usable SavedModel ({first_line(exc)}); "
                        "export it again with imgclf export") from None

    def run(pixels: np.ndarray) -> Outputs:
        out = serve(**{INPUT_NAME: tf.constant(pixels)})
        return split_outputs({k: v.numpy() for k, v in out.items()})

    return Runtime(path, info, run)


def _savedmodel_info(path: Path) -> ModelInfo:
    return _parse_info(savedmodel_dir(path) / SAVEDMODEL_INFO, path)


def _tflite(path: Path, allow_unsafe: bool) -> Runtime:
    info = _tflite_info(path)
    interpreter_module = _import("ai_edge_litert.interpreter", "ai-edge-litert", ".tflite")
    try:
        interpreter = interpreter_module.Interpreter(model_path=str(path),
                                                     num_threads=usable_cores())
    except (ValueError, RuntimeError) as exc:
        raise UserError(f"{path}: not a readable LiteRT model ({first_line(exc)})") from None
    (inp,), outs = interpreter.get_input_details(), interpreter.get_output_details()
    batch = [-1]  # the batch size the tensors are allocated for

    def run(pixels: np.ndarray) -> Outputs:
        if batch[0] != len(pixels):  # LiteRT tensors have a fixed shape: resize on change
            interpreter.resize_tensor_input(inp["index"], list(pixels.shape))
            interpreter.allocate_tensors()
            batch[0] = len(pixels)
        interpreter.set_tensor(inp["index"], quantize(pixels, inp["dtype"], inp["quantization"]))
        interpreter.invoke()
        return split_outputs([dequantize(interpreter.get_tensor(out["index"]),
                                         out["quantization"]) for out in outs])

    return Runtime(path, info, run)


def _tflite_info(path: Path) -> ModelInfo:
    return _parse_info(tflite_info_path(path), path)


def _onnx(path: Path, allow_unsafe: bool) -> Runtime:
    session = _onnx_session(path)
    meta = session.get_modelmeta().custom_metadata_map
    info = _parse_text(meta.get(ONNX_INFO_KEY), path, f"metadata entry {ONNX_INFO_KEY!r}")
    name = session.get_inputs()[0].name

    def run(pixels: np.ndarray) -> Outputs:
        return split_outputs(session.run(None, {name: pixels}))

    return Runtime(path, info, run)


def _onnx_session(path: Path) -> Any:
    onnxruntime = _import("onnxruntime", "onnxruntime", ".onnx")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = usable_cores()
    try:
        return onnxruntime.InferenceSession(str(path), options,
                                            providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise UserError(f"{path}: not a readable ONNX model ({first_line(exc)})") from None


def _onnx_info(path: Path) -> ModelInfo:
    onnx = _import("onnx", "onnx", ".onnx")
    try:  # the metadata only: no inference session, no weights read
        props = onnx.load(str(path), load_external_data=False).metadata_props
    except Exception as exc:  # onnx raises its own exception types
        raise UserError(f"{path}: not a readable ONNX model ({first_line(exc)})") from None
    entry = next((p.value for p in props if p.key == ONNX_INFO_KEY), None)
    return _parse_text(entry, path, f"metadata entry {ONNX_INFO_KEY!r}")


KERAS = ModelFormat("keras", ".keras", _keras, _keras_info, ".keras", "train")
SAVEDMODEL = ModelFormat("savedmodel", "", _savedmodel, _savedmodel_info, "SavedModel", "export")
TFLITE = ModelFormat("tflite", ".tflite", _tflite, _tflite_info, ".tflite", "export")
ONNX = ModelFormat("onnx", ".onnx", _onnx, _onnx_info, ".onnx", "export")
MODEL_FORMATS = {f.name: f for f in (KERAS, TFLITE, ONNX, SAVEDMODEL)}
"""Every format a model runs from, by name: one entry per format (and one loader and
info reader above); ``model_format`` picks the entry of a path by its suffix."""


# --- helpers -----------------------------------------------------------------------------------


def quantize(pixels: np.ndarray, dtype: Any, quantization: tuple[float, int]) -> np.ndarray:
    """``pixels`` (float) as the model's input ``dtype``: for an integer input with
    ``(scale, zero_point)``, ``round(x / scale) + zero_point`` clipped to the type's range."""
    dtype = np.dtype(dtype)
    scale, zero_point = quantization
    if dtype.kind == "f":
        return pixels.astype(dtype)
    # An integer input without quantization takes the values as they are.
    q = np.rint(pixels / scale) + zero_point if scale else np.rint(pixels)
    limits = np.iinfo(dtype)
    return np.clip(q, limits.min, limits.max).astype(dtype)


def dequantize(values: np.ndarray, quantization: tuple[float, int]) -> np.ndarray:
    """``(values - zero_point) * scale`` for a quantized output, else ``values`` as float32."""
    scale, zero_point = quantization
    if np.issubdtype(values.dtype, np.integer) and scale:
        return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)
    return values.astype(np.float32)


def _import(module: str, package: str, what: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"running {what} models needs the package {package}: "
                        f"pip install {package}") from None


def _parse_info(info_path: Path, model_path: Path) -> ModelInfo:
    try:
        text = info_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{model_path}: no {info_path} with the class names and image size; "
                        "export the model with imgclf export") from None
    return _parse_text(text, model_path, str(info_path))


def _parse_text(text: str | None, model_path: Path, where: str) -> ModelInfo:
    if text is None:
        raise UserError(f"{model_path}: no {where} with the class names and image size; "
                        "export the model with imgclf export")
    try:
        return ModelInfo.from_json(text)
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{model_path}: {where} is not imgclf's model info (class names and "
                        "image size); export the model again with imgclf export") from None

