"""The OOD score in the graph: a Keras layer, and the model that outputs it.

:func:`with_score` turns a trained classifier (pixels -> probabilities) into one with
two outputs, ``[probabilities (B, C), ood_score (B,)]``, the score computed by
:class:`OODScore` from the penultimate features (the input of the ``probabilities``
layer). Being part of the model, it goes into ``model.keras`` and, through the
converters, into every export format: SavedModel, LiteRT (float16 and int8) and ONNX
each compute the score themselves, and only the threshold differs per format.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from imgclf.models.info import SCORE_OUTPUT
from imgclf.models.ood import SHIPPABLE, Gaussian, Reference

HEAD = "probabilities"  # the softmax layer every arch ends with


@keras.saving.register_keras_serializable(package="imgclf")
class OODScore(keras.layers.Layer):
    """``(B, d)`` penultimate features -> ``(B,)`` the OOD score of ``method``
    (``imgclf.models.ood``: msp, energy or mahalanobis; higher = stranger).

    Its weights are constants fitted after training (:func:`set_reference`): the head's
    kernel and bias (for msp and energy) and the whitening projection and class
    means (for mahalanobis, ``imgclf.models.ood.Gaussian``); none is trained.
    """

    def __init__(self, method: str, n_classes: int, dims: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if method not in SHIPPABLE:
            raise ValueError(f"ood.method {method!r} cannot be computed in the model; "
                             f"choose one of {', '.join(SHIPPABLE)}")
        self.method, self.n_classes, self.dims = method, n_classes, dims
        self.trainable = False

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        d, c, k = int(input_shape[-1]), self.n_classes, self.dims

        def weight(name: str, shape: tuple[int, ...]) -> Any:
            return self.add_weight(name=name, shape=shape, initializer="zeros",
                                   trainable=False)

        self.kernel, self.bias = weight("kernel", (d, c)), weight("bias", (c,))
        self.projection, self.means = weight("projection", (d, k)), weight("means", (c, d))

    def call(self, features: Any) -> Any:
        logits = ops.matmul(features, self.kernel) + self.bias
        if self.method == "mahalanobis":
            # The distance to the mean of the predicted class (softly: the means weighed
            # by the probabilities), not the min over all classes, and the mean taken off
            # before whitening: the differences to far classes, or whitened features
            # spanning every class, would set int8's ranges, and the near class's
            # distance would round to nothing.
            centre = ops.matmul(ops.softmax(logits, axis=-1), self.means)  # (B, d)
            z = ops.matmul(features - centre, self.projection)  # (B, k) whitened
            return ops.sum(ops.square(z), -1)
        if self.method == "energy":
            return -ops.logsumexp(logits, axis=-1)
        return 1.0 - ops.max(ops.softmax(logits, axis=-1), axis=-1)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None]:
        return (input_shape[0],)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "method": self.method, "n_classes": self.n_classes,
                "dims": self.dims}


def penultimate(model: keras.Model) -> Any:
    """The symbolic input of ``model``'s ``probabilities`` layer: ``(B, d)`` features."""
    return model.get_layer(HEAD).input


def features_model(model: keras.Model) -> keras.Model:
    """Pixels -> ``(B, d)`` penultimate features of ``model`` (its first input)."""
    return keras.Model(model.inputs[0], penultimate(model), name="features")


def head_weights(model: keras.Model) -> tuple[np.ndarray, np.ndarray]:
    """The ``probabilities`` layer's ``(kernel (d, C), bias (C,))``."""
    kernel, bias = model.get_layer(HEAD).get_weights()
    return kernel, bias


def with_score(model: keras.Model, method: str, gaussian: Gaussian) -> keras.Model:
    """``model`` (pixels -> probabilities) with a second output, the OOD score of
    ``method``: ``[probabilities (B, C), ood_score (B,)]``; the layers are shared."""
    kernel, bias = head_weights(model)
    layer = OODScore(method, kernel.shape[1], gaussian.projection.shape[1], name=SCORE_OUTPUT)
    score = layer(penultimate(model))
    set_reference(layer, Reference(kernel, bias, gaussian))
    probs = model.get_layer(HEAD).output
    return keras.Model(model.inputs[0], [probs, score], name=model.name)


def set_reference(layer: OODScore, ref: Reference) -> None:
    g = ref.gaussian
    layer.set_weights([ref.kernel, ref.bias, g.projection, g.means])


def reference_of(model: keras.Model) -> Reference:
    """The head and Gaussian a scored model's :class:`OODScore` holds."""
    kernel, bias, projection, means = model.get_layer(SCORE_OUTPUT).get_weights()
    return Reference(kernel, bias, Gaussian(projection, means))


def classifier_of(model: keras.Model) -> keras.Model:
    """A scored model's classifier alone (pixels -> probabilities), or ``model`` itself."""
    if len(model.outputs) == 1:
        return model
    return keras.Model(model.inputs[0], model.get_layer(HEAD).output, name=model.name)
