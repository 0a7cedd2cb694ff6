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

Where each goes and which writer makes it: the table ``imgclf.export.formats``.
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
from imgclf.models.info import SCORE_OUTPUT, ModelInfo

SAVEDMODEL_VERSION = "1"  # TensorFlow Serving loads <model_base_path>/<version>/


def named_outputs(outputs: Any) -> Any:
    """A model call's outputs by name: ``{"probabilities", "ood_score"}`` for a model with
    the OOD score, the probabilities alone for one without."""
    if isinstance(outputs, list | tuple):
        probs, score = outputs
        return {"probabilities": probs, SCORE_OUTPUT: score}
    return outputs


def write_savedmodel(model: Any, info: ModelInfo, folder: Path) -> None:
    """``folder/1/``: a SavedModel with the float32 and uint8 serving signatures, each
    answering ``{"probabilities" (B, C), "ood_score" (B,)}``."""
    import keras
    import tensorflow as tf

    shape = (None, info.image_size, info.image_size, 3)
    archive = keras.export.ExportArchive()
    archive.track(model)
    # The first endpoint is also exported as serving_default (TensorFlow Serving's).
    archive.add_endpoint(
        "serve", lambda images: named_outputs(model(images, training=False)),
        input_signature=[tf.TensorSpec(shape, tf.float32, name=INPUT_NAME)])
    archive.add_endpoint(
        UINT8_SIGNATURE,
        lambda images: named_outputs(model(tf.cast(images, tf.float32), training=False)),
        input_signature=[tf.TensorSpec(shape, tf.uint8, name=INPUT_NAME)])
    version = folder / SAVEDMODEL_VERSION
    archive.write_out(str(version), verbose=False)
    write_savedmodel_info(folder, info)


def write_savedmodel_info(folder: Path, info: ModelInfo) -> None:
    """The model info of the SavedModel in ``folder`` (``1/assets.extra/imgclf.json``)."""
    path = folder / SAVEDMODEL_VERSION / SAVEDMODEL_INFO
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(info.to_json(), encoding="utf-8")


def write_tflite_info(path: Path, info: ModelInfo) -> None:
    """The JSON beside a ``.tflite`` file holding its model info."""
    tflite_info_path(path).write_text(info.to_json(), encoding="utf-8")


def write_onnx_info(path: Path, info: ModelInfo) -> None:
    """The model info in an ``.onnx`` file's metadata entry ``imgclf``, replacing any."""
    import onnx

    proto = onnx.load(str(path))
    kept = [p for p in proto.metadata_props if p.key != ONNX_INFO_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    entry = proto.metadata_props.add()
    entry.key, entry.value = ONNX_INFO_KEY, info.to_json()
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def write_tflite(savedmodel: Path, info: ModelInfo, path: Path,
                 representative: np.ndarray | None) -> None:
    """``path``: the SavedModel's serving signature in LiteRT, float16 weights, or full
    int8 when ``representative`` (N, S, S, 3) images are given (the converter's
    representative dataset, which fixes the int8 ranges); ``<stem>.json`` beside it."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(savedmodel), signature_keys=[SERVING_SIGNATURE])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if representative is None:
        converter.target_spec.supported_types = [tf.float16]
    else:
        pixels = representative.astype(np.float32)

        def dataset() -> Iterator[list[np.ndarray]]:
            for image in pixels:
                yield [image[None]]

        converter.representative_dataset = dataset
        # Integer kernels only (a conversion that would need a float op fails here,
        # rather than leaving a partly float model), and uint8 pixels in.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
    path.write_bytes(converter.convert())
    write_tflite_info(path, info)


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
    import tensorflow as tf

    size = info.image_size
    model = inference_model(model, size)
    model.export(str(path), format="onnx", verbose=False,
                 input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32,
                                                name=INPUT_NAME)])
    write_onnx_info(path, info)
