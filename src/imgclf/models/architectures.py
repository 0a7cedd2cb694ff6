"""Model architectures, all described as one layer-list form and built by one function.

``small``/``medium``/``large`` are the CNNs of the original design (conv filters and
dense units as in the peer baseline script); ``custom`` is whatever list of layers
``model.layers`` in params.yaml holds, in the same form.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from imgclf.params import LAYER_SCHEMA, AugmentParams, ModelParams

# arch -> (conv filters, dense units); each conv is followed by 2x2 max pooling and
# each dense layer by dropout of model.dropout.
CNN_SIZES: dict[str, tuple[list[int], list[int]]] = {
    "small": ([32, 64], [128]),
    "medium": ([32, 64, 128], [256, 128]),
    "large": ([32, 64, 128, 256], [512, 256]),
}


def layer_specs(model: ModelParams) -> list[dict[str, Any]]:
    """The layer list of ``model.arch``: the named CNNs expanded, or ``model.layers``."""
    if model.arch == "custom":
        return list(model.layers)
    convs, denses = CNN_SIZES[model.arch]
    specs: list[dict[str, Any]] = []
    for filters in convs:
        specs += [{"type": "conv", "filters": filters}, {"type": "max_pool"}]
    specs.append({"type": "flatten"})
    for units in denses:
        specs += [{"type": "dense", "units": units}, {"type": "dropout", "rate": model.dropout}]
    return specs


def _layer(spec: dict[str, Any]) -> keras.layers.Layer:
    # Fill in the schema's defaults so every key below is present.
    s = {k: default for k, (_, default) in LAYER_SCHEMA[spec["type"]].items()} | spec
    match s["type"]:
        case "conv":
            return layers.Conv2D(s["filters"], s["kernel"], strides=s["strides"],
                                 padding="same", activation=s["activation"])
        case "separable_conv":
            return layers.SeparableConv2D(s["filters"], s["kernel"], strides=s["strides"],
                                          padding="same", activation=s["activation"])
        case "max_pool":
            return layers.MaxPooling2D(s["size"])
        case "avg_pool":
            return layers.AveragePooling2D(s["size"])
        case "global_avg_pool":
            return layers.GlobalAveragePooling2D()
        case "flatten":
            return layers.Flatten()
        case "batch_norm":
            return layers.BatchNormalization()
        case "dense":
            return layers.Dense(s["units"], activation=s["activation"])
        case "dropout":
            return layers.Dropout(s["rate"])
    raise ValueError(f"unknown layer type {s['type']!r}")  # params validation prevents this


def augmentation(augment: AugmentParams, seed: int) -> list[keras.layers.Layer]:
    """Random augmentation layers; Keras runs them in training only, never in predict."""
    out: list[keras.layers.Layer] = []
    if augment.flip:
        out.append(layers.RandomFlip("horizontal", seed=seed))
    if augment.rotation:
        out.append(layers.RandomRotation(augment.rotation, fill_mode="reflect", seed=seed))
    if augment.zoom:
        out.append(layers.RandomZoom(augment.zoom, fill_mode="reflect", seed=seed))
    if augment.contrast:
        out.append(layers.RandomContrast(augment.contrast, seed=seed))
    return out


def build_model(specs: list[dict[str, Any]], image_size: int, n_classes: int,
                augment: list[keras.layers.Layer] | None = None) -> keras.Model:
    """A Sequential classifier: pixels in 0..255 -> ``(B, n_classes)`` softmax probabilities.

    Scaling to 0..1 is part of the model, so predict feeds raw pixels exactly as
    training did. A flatten is added before the first dense layer if the list has no
    flatten or global pooling there.
    """
    model = keras.Sequential(name="imgclf")
    model.add(keras.Input((image_size, image_size, 3), name="pixels"))
    for layer in augment or []:
        model.add(layer)
    model.add(layers.Rescaling(1.0 / 255))
    flat = False
    for spec in specs:
        if spec["type"] == "dense" and not flat:
            model.add(layers.Flatten())
        flat = flat or spec["type"] in ("dense", "flatten", "global_avg_pool")
        model.add(_layer(spec))
    if not flat:
        model.add(layers.GlobalAveragePooling2D())
    model.add(layers.Dense(n_classes, activation="softmax", name="probabilities"))
    return model
