"""Run a model in any of its formats: ``.keras``, SavedModel folder, ``.tflite``, ``.onnx``.

:func:`load_runtime` returns a :class:`Runtime` whatever the format: the class names and
image size the model was trained with, and ``predict_on_batch(images) -> probs``, so
predict, evaluate, the export stage (and a server) score every format through the
same code (``imgclf.inference.batch.predict_batch`` calls ``predict_on_batch``).

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
from typing import Any

import numpy as np

from imgclf.errors import UserError
from imgclf.models.info import INFO_NAME, ModelInfo

SAVEDMODEL_FILE = "saved_model.pb"
SAVEDMODEL_INFO = Path("assets.extra") / INFO_NAME  # inside a SavedModel folder
ONNX_INFO_KEY = "imgclf"  # the ONNX metadata entry holding ModelInfo's JSON
SERVING_SIGNATURE = "serving_default"  # float32 pixels 0..255 -> probabilities
UINT8_SIGNATURE = "serve_uint8"  # the same for uint8 pixels
INPUT_NAME = "images"  # the input of both SavedModel signatures
SUPPORTED = ".keras, .tflite or .onnx file, or a SavedModel folder"


@dataclass(frozen=True)
class Runtime:
    """A loaded model of any format: what it was trained on, and how to run it."""

    path: Path  # the file or folder as given
    info: ModelInfo
    run: Callable[[np.ndarray], np.ndarray]  # (B, S, S, 3) float32 0..255 -> (B, C)

    def predict_on_batch(self, images: Any) -> np.ndarray:
        """``(B, C)`` float32 probabilities of ``(B, S, S, 3)`` pixels in 0..255 (any
        numeric dtype; a tensor is fine)."""
        pixels = np.asarray(images, dtype=np.float32)
        if len(pixels) == 0:
            return np.zeros((0, len(self.info.class_names)), np.float32)
        return np.asarray(self.run(pixels), dtype=np.float32)


def model_kind(path: str | os.PathLike[str]) -> str:
    """The format of ``path`` from its name (a folder is a SavedModel); UserError if none."""
    path = Path(path)
    if path.is_dir():
        return "savedmodel"
    kind = {".keras": "keras", ".tflite": "tflite", ".onnx": "onnx"}.get(path.suffix.lower())
    if kind is None:
        if not path.exists():
            raise UserError(f"{path}: no such model file or folder; give a {SUPPORTED}")
        raise UserError(f"{path}: not a model format imgclf can run; give a {SUPPORTED}")
    if not path.is_file():
        hint = "run the train stage first (dvc repro train)" if kind == "keras" else \
            "run the export stage first (dvc repro export)"
        raise UserError(f"{path}: no model file; {hint}")
    return kind


def savedmodel_dir(path: str | os.PathLike[str]) -> Path:
    """The folder holding ``saved_model.pb``: ``path`` itself, or its highest numbered
    version folder (TensorFlow Serving's ``model/1/``, ``model/2/`` layout)."""
    path = Path(path)
    if (path / SAVEDMODEL_FILE).is_file():
        return path
    versions = [p for p in path.iterdir() if p.name.isdigit() and (p / SAVEDMODEL_FILE).is_file()]
    if not versions:
        raise UserError(f"{path}: a folder, but no {SAVEDMODEL_FILE} in it or in a numbered "
                        f"version folder; give a {SUPPORTED}")
    return max(versions, key=lambda p: int(p.name))


def tflite_info_path(path: str | os.PathLike[str]) -> Path:
    """The JSON beside a ``.tflite`` file that holds its ModelInfo."""
    return Path(path).with_suffix(".json")


def read_runtime_info(path: str | os.PathLike[str]) -> ModelInfo:
    """The class names and image size of a model of any format, without running it."""
    kind = model_kind(path)
    if kind == "keras":
        from imgclf.models.saving import read_info  # Keras' import: only for .keras

        return read_info(path)
    if kind == "savedmodel":
        return _parse_info(savedmodel_dir(path) / SAVEDMODEL_INFO, path)
    if kind == "tflite":
        return _parse_info(tflite_info_path(path), path)
    onnx = _import("onnx", "onnx", ".onnx")
    try:  # the metadata only: no inference session, no weights read
        props = onnx.load(str(path), load_external_data=False).metadata_props
    except Exception as exc:  # onnx raises its own exception types
        raise UserError(f"{path}: not a readable ONNX model ({first_line(exc)})") from None
    entry = next((p.value for p in props if p.key == ONNX_INFO_KEY), None)
    return _parse_text(entry, Path(path), f"metadata entry {ONNX_INFO_KEY!r}")


def load_runtime(path: str | os.PathLike[str], allow_unsafe: bool = False) -> Runtime:
    """The model at ``path``, of any format, ready to predict.

    ``allow_unsafe`` matters for ``.keras`` files only (see ``imgclf.models.saving``):
    the other formats carry no Python code.
    """
    path = Path(path)
    kind = model_kind(path)
    loader = {"keras": _keras, "savedmodel": _savedmodel, "tflite": _tflite, "onnx": _onnx}
    return loader[kind](path, allow_unsafe)


# --- one loader per format -------------------------------------------------------------------


def keras_runtime(model: Any, info: ModelInfo, path: Path) -> Runtime:
    """A loaded Keras ``model`` (saved at ``path``) as a :class:`Runtime`."""
    return Runtime(path, info, model.predict_on_batch)


def _keras(path: Path, allow_unsafe: bool) -> Runtime:
    from imgclf.models.saving import load_model

    return keras_runtime(*load_model(path, allow_unsafe=allow_unsafe), path)


def _savedmodel(path: Path, allow_unsafe: bool) -> Runtime:
    folder = savedmodel_dir(path)
    info = _parse_info(folder / SAVEDMODEL_INFO, path)
    import tensorflow as tf

    try:
        serve = tf.saved_model.load(str(folder)).signatures[SERVING_SIGNATURE]
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"{path}: not a usable SavedModel ({first_line(exc)}); "
                        "export it again with imgclf export") from None

    def run(pixels: np.ndarray) -> np.ndarray:
        (out,) = serve(**{INPUT_NAME: tf.constant(pixels)}).values()
        return out.numpy()

    return Runtime(path, info, run)


def _tflite(path: Path, allow_unsafe: bool) -> Runtime:
    info = _parse_info(tflite_info_path(path), path)
    interpreter_module = _import("ai_edge_litert.interpreter", "ai-edge-litert", ".tflite")
    try:
        interpreter = interpreter_module.Interpreter(model_path=str(path),
                                                     num_threads=_threads())
    except (ValueError, RuntimeError) as exc:
        raise UserError(f"{path}: not a readable LiteRT model ({first_line(exc)})") from None
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    batch = [-1]  # the batch size the tensors are allocated for

    def run(pixels: np.ndarray) -> np.ndarray:
        if batch[0] != len(pixels):  # LiteRT tensors have a fixed shape: resize on change
            interpreter.resize_tensor_input(inp["index"], list(pixels.shape))
            interpreter.allocate_tensors()
            batch[0] = len(pixels)
        interpreter.set_tensor(inp["index"], quantize(pixels, inp["dtype"], inp["quantization"]))
        interpreter.invoke()
        return dequantize(interpreter.get_tensor(out["index"]), out["quantization"])

    return Runtime(path, info, run)


def _onnx(path: Path, allow_unsafe: bool) -> Runtime:
    session = _onnx_session(path)
    info = _onnx_info(session, path)
    name = session.get_inputs()[0].name

    def run(pixels: np.ndarray) -> np.ndarray:
        return session.run(None, {name: pixels})[0]

    return Runtime(path, info, run)


def _onnx_session(path: Path) -> Any:
    onnxruntime = _import("onnxruntime", "onnxruntime", ".onnx")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = _threads()
    try:
        return onnxruntime.InferenceSession(str(path), options,
                                            providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise UserError(f"{path}: not a readable ONNX model ({first_line(exc)})") from None


def _onnx_info(session: Any, path: Path) -> ModelInfo:
    meta = session.get_modelmeta().custom_metadata_map
    return _parse_text(meta.get(ONNX_INFO_KEY), path, f"metadata entry {ONNX_INFO_KEY!r}")


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


def _threads() -> int:
    """All the cores this process may use (as Keras does)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        (os.cpu_count() or 1)


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


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name if it has none)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
