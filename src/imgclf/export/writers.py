"""Write a Keras model in the export formats, each carrying its class names and image size.

* SavedModel (TensorFlow Serving's layout, ``savedmodel/1/``): signature
  ``serving_default`` takes float32 pixels 0..255, ``serve_uint8`` uint8 pixels, both
  ``(B, S, S, 3)`` named ``images``, and return ``(B, C)`` class probabilities;
  ``assets.extra/imgclf.json`` holds the model info.
* LiteRT ``.tflite``, converted from that SavedModel: float16 weights
  (``tflite_float16``), or full-integer int8 (``tflite_int8``: int8 weights and
  activations, calibrated on training images; uint8 pixels in, float32 probabilities
  out); the info in a JSON file of the same name beside it.
* ONNX (Keras' own ``format="onnx"`` export, through tf2onnx), the info in its
  metadata entry ``imgclf``.

The file names are :data:`FILES`; :func:`write_format` writes one of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.inference.runtimes import (
    INPUT_NAME,
    ONNX_INFO_KEY,
    SAVEDMODEL_INFO,
    SERVING_SIGNATURE,
    UINT8_SIGNATURE,
    tflite_info_path,
)
from imgclf.models.info import ModelInfo

SAVEDMODEL_VERSION = "1"  # TensorFlow Serving loads <model_base_path>/<version>/
FILES = {  # where each format goes, inside the export folder
    "savedmodel": "savedmodel",
    "tflite_float16": "model_float16.tflite",
    "tflite_int8": "model_int8.tflite",
    "onnx": "model.onnx",
}


def write_format(fmt: str, model: Any, info: ModelInfo, folder: Path,
                 calibration: np.ndarray | None = None) -> Path:
    """Write ``model`` as ``fmt`` into ``folder`` and return the path to load it from.

    The LiteRT formats are converted from the SavedModel, written first if it is not
    there yet; ``tflite_int8`` needs ``calibration``, ``(N, S, S, 3)`` training images.
    """
    path = folder / FILES[fmt]
    if fmt == "savedmodel":
        write_savedmodel(model, info, path)
    elif fmt in ("tflite_float16", "tflite_int8"):
        saved = folder / FILES["savedmodel"]
        if not saved.exists():
            write_savedmodel(model, info, saved)
        int8 = fmt == "tflite_int8"
        if int8 and calibration is None:
            raise ValueError("tflite_int8 needs calibration images")
        write_tflite(saved / SAVEDMODEL_VERSION, info, path, calibration if int8 else None)
    elif fmt == "onnx":
        write_onnx(model, info, path)
    else:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FILES)}")
    return path


def write_savedmodel(model: Any, info: ModelInfo, folder: Path) -> None:
    """``folder/1/``: a SavedModel with the float32 and uint8 serving signatures."""
    import keras
    import tensorflow as tf

    shape = (None, info.image_size, info.image_size, 3)
    archive = keras.export.ExportArchive()
    archive.track(model)
    # The first endpoint is also exported as serving_default (TensorFlow Serving's).
    archive.add_endpoint(
        "serve", lambda images: model(images, training=False),
        input_signature=[tf.TensorSpec(shape, tf.float32, name=INPUT_NAME)])
    archive.add_endpoint(
        UINT8_SIGNATURE, lambda images: model(tf.cast(images, tf.float32), training=False),
        input_signature=[tf.TensorSpec(shape, tf.uint8, name=INPUT_NAME)])
    version = folder / SAVEDMODEL_VERSION
    archive.write_out(str(version), verbose=False)
    (version / SAVEDMODEL_INFO).parent.mkdir(parents=True, exist_ok=True)
    (version / SAVEDMODEL_INFO).write_text(info.to_json(), encoding="utf-8")


def write_tflite(savedmodel: Path, info: ModelInfo, path: Path,
                 calibration: np.ndarray | None) -> None:
    """``path``: the SavedModel's serving signature in LiteRT, float16 weights, or full
    int8 when ``calibration`` (N, S, S, 3) images are given; ``<stem>.json`` beside it."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(savedmodel), signature_keys=[SERVING_SIGNATURE])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if calibration is None:
        converter.target_spec.supported_types = [tf.float16]
    else:
        pixels = calibration.astype(np.float32)

        def representative() -> Iterator[list[np.ndarray]]:
            for image in pixels:
                yield [image[None]]

        converter.representative_dataset = representative
        # Integer kernels only (a conversion that would need a float op fails here,
        # rather than leaving a partly float model), and uint8 pixels in.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
    path.write_bytes(converter.convert())
    tflite_info_path(path).write_text(info.to_json(), encoding="utf-8")


def inference_model(model: Any, image_size: int) -> Any:
    """``model`` wrapped so that it always runs in inference mode.

    Keras' ONNX export traces ``model.__call__`` without ``training=False``, and Keras'
    random augmentation layers default to training: the trained model's RandomFlip
    would be exported as a random op (that ONNX lacks). The wrapper fixes the flag.
    """
    import keras

    inputs = keras.Input((image_size, image_size, 3), name=INPUT_NAME)
    return keras.Model(inputs, model(inputs, training=False))


def write_onnx(model: Any, info: ModelInfo, path: Path) -> None:
    """``path``: Keras' ONNX export of ``model`` (input ``images``, float32 0..255),
    checked by onnx's checker, with the model info in its metadata."""
    import onnx
    import tensorflow as tf

    size = info.image_size
    model = inference_model(model, size)
    model.export(str(path), format="onnx", verbose=False,
                 input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32,
                                                name=INPUT_NAME)])
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = ONNX_INFO_KEY, info.to_json()
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
