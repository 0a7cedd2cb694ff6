"""Model architectures.

``small``/``medium``/``large`` are the CNNs of the original design (conv filters and
dense units as in the peer baseline script); ``custom`` is whatever list of layers
``model.layers`` in params.yaml holds, in the same form; ``compact`` is the
from-scratch recipe (a small residual CNN); each arch of ``BACKBONE_BUILDERS``
(MobileNetV2, MobileNetV3, EfficientNetV2, ResNet50V2, ConvNeXt) is a Keras
Applications backbone (ImageNet weights when ``model.pretrained``) with a new head.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
from keras import layers

from imgclf.models.augment import RandomResizedCrop
from imgclf.params import (
    BACKBONES,
    AugmentParams,
    AvgPoolLayer,
    BatchNormLayer,
    ConvLayer,
    DenseLayer,
    DropoutLayer,
    FlattenLayer,
    GlobalAvgPoolLayer,
    Layer,
    MaxPoolLayer,
    ModelParams,
    SeparableConvLayer,
)

# arch -> (conv filters, dense units); each conv is followed by 2x2 max pooling and
# each dense layer by dropout of model.dropout.
CNN_SIZES: dict[str, tuple[list[int], list[int]]] = {
    "small": ([32, 64], [128]),
    "medium": ([32, 64, 128], [256, 128]),
    "large": ([32, 64, 128, 256], [512, 256]),
}


# The from-scratch recipe (model.arch: compact): filters of the stem and of each stage.
COMPACT_WIDTHS = (32, 64, 128, 256)


def _conv_bn(x: keras.KerasTensor, filters: int, strides: int = 1) -> keras.KerasTensor:
    x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False)(x)
    return layers.ReLU()(layers.BatchNormalization()(x))


def _compact(model: ModelParams, image_size: int, n_classes: int,
             augment: list[keras.layers.Layer]) -> keras.Model:
    """The from-scratch recipe: a small residual CNN with batch norm and global pooling.

    A stride-2 stem (so 96 px images cost what 48 px ones would), then three stages of
    a convolution, 2x2 pooling and a residual block of two convolutions (64, 128, 256
    filters), every convolution followed by batch norm, then global average pooling
    instead of a huge flatten-dense block. Plain 3x3 convolutions, not separable ones:
    several times faster on a CPU (docs/performance.md, "Measurements behind the code").
    """
    inputs = keras.Input((image_size, image_size, 3), name="pixels")
    x = inputs
    for layer in augment:
        x = layer(x)
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0)(x)
    x = layers.MaxPooling2D()(_conv_bn(x, COMPACT_WIDTHS[0], strides=2))
    for filters in COMPACT_WIDTHS[1:]:
        x = layers.MaxPooling2D()(_conv_bn(x, filters))
        x = layers.Add()([x, _conv_bn(_conv_bn(x, filters), filters)])
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(model.dropout)(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="probabilities",
                           dtype="float32")(x)
    return keras.Model(inputs, outputs, name="imgclf")


def layer_specs(model: ModelParams) -> list[Layer]:
    """The layer list of ``model.arch``: the named CNNs expanded, or ``model.layers``."""
    if model.arch == "custom":
        return list(model.layers)
    convs, denses = CNN_SIZES[model.arch]
    specs: list[Layer] = []
    for filters in convs:
        specs += [ConvLayer(filters=filters), MaxPoolLayer()]
    specs.append(FlattenLayer())
    for units in denses:
        specs += [DenseLayer(units=units), DropoutLayer(rate=model.dropout)]
    return specs


def _layer(spec: Layer) -> keras.layers.Layer:
    match spec:
        case ConvLayer():
            return layers.Conv2D(spec.filters, spec.kernel, strides=spec.strides,
                                 padding="same", activation=spec.activation)
        case SeparableConvLayer():
            return layers.SeparableConv2D(spec.filters, spec.kernel, strides=spec.strides,
                                          padding="same", activation=spec.activation)
        case MaxPoolLayer():
            return layers.MaxPooling2D(spec.size)
        case AvgPoolLayer():
            return layers.AveragePooling2D(spec.size)
        case GlobalAvgPoolLayer():
            return layers.GlobalAveragePooling2D()
        case FlattenLayer():
            return layers.Flatten()
        case BatchNormLayer():
            return layers.BatchNormalization()
        case DenseLayer():
            return layers.Dense(spec.units, activation=spec.activation)
        case DropoutLayer():
            return layers.Dropout(spec.rate)
    raise ValueError(f"unknown layer type {spec.type!r}")  # params validation prevents this


def augmentation(augment: AugmentParams, seed: int) -> list[keras.layers.Layer]:
    """Random augmentation layers; Keras runs them in training only, never in predict."""
    out: list[keras.layers.Layer] = []
    if augment.crop:
        out.append(RandomResizedCrop(augment.crop, seed=seed))
    if augment.flip:
        out.append(layers.RandomFlip("horizontal", seed=seed))
    if augment.rotation:
        out.append(layers.RandomRotation(augment.rotation, fill_mode="reflect", seed=seed))
    if augment.zoom:
        out.append(layers.RandomZoom(augment.zoom, fill_mode="reflect", seed=seed))
    if augment.contrast:
        out.append(layers.RandomContrast(augment.contrast, seed=seed))
    return out


BACKBONE = "backbone"  # the name of the pretrained part, for freezing and fine-tuning


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one Keras Applications backbone (no top, global average pooling)."""

    build: Callable[..., keras.Model]  # the keras.applications constructor
    # True: the constructor scales pixels itself (``include_preprocessing``); False: the
    # network expects -1..1 and a Rescaling layer goes in front of it.
    own_preprocessing: bool
    alpha: bool = False  # takes model.alpha (the width multiplier)
    # EfficientNetV2 looks its block layout up by its name: it is built under its own
    # name and renamed after.
    rename: bool = False


# model.arch -> its backbone; params.BACKBONES lists the same names.
BACKBONE_BUILDERS: dict[str, BackboneSpec] = {
    "mobilenet_v2": BackboneSpec(keras.applications.MobileNetV2, False, alpha=True),
    "mobilenet_v3_small": BackboneSpec(keras.applications.MobileNetV3Small, True),
    "mobilenet_v3_large": BackboneSpec(keras.applications.MobileNetV3Large, True),
    "efficientnetv2_b0": BackboneSpec(keras.applications.EfficientNetV2B0, True, rename=True),
    "efficientnetv2_s": BackboneSpec(keras.applications.EfficientNetV2S, True, rename=True),
    "resnet50_v2": BackboneSpec(keras.applications.ResNet50V2, False),
    "convnext_tiny": BackboneSpec(keras.applications.ConvNeXtTiny, True),
}
assert set(BACKBONE_BUILDERS) == set(BACKBONES)


def build_model(model: ModelParams, image_size: int, n_classes: int,
                augment: list[keras.layers.Layer] | None = None,
                weights: Path | None = None) -> keras.Model:
    """The classifier of ``model.arch``: pixels in 0..255 -> ``(B, n_classes)`` probabilities.

    Pixel scaling is part of the model, so predict feeds raw pixels exactly as
    training did. ``weights`` is the pretrained stage's file for a backbone arch.
    """
    if model.arch in BACKBONE_BUILDERS:
        return _backbone_model(model, image_size, n_classes, augment or [], weights)
    if model.arch == "compact":
        return _compact(model, image_size, n_classes, augment or [])
    return build_layer_list(layer_specs(model), image_size, n_classes, augment)


def _backbone_model(model: ModelParams, image_size: int, n_classes: int,
                    augment: list[keras.layers.Layer], weights: Path | None) -> keras.Model:
    """Augmentation, the backbone's preprocessing, the backbone, dropout, a softmax head."""
    spec = BACKBONE_BUILDERS[model.arch]
    inputs = keras.Input((image_size, image_size, 3), name="pixels")
    x = inputs
    for layer in augment:
        x = layer(x)
    options: dict[str, Any] = {"alpha": model.alpha} if spec.alpha else {}
    if not spec.rename:
        options["name"] = BACKBONE
    if spec.own_preprocessing:
        options["include_preprocessing"] = True  # 0..255 in, as the model is fed
    else:
        x = layers.Rescaling(1.0 / 127.5, offset=-1.0)(x)  # these expect -1..1
    base = spec.build(input_shape=(image_size, image_size, 3), include_top=False,
                      weights=str(weights) if weights else None, pooling="avg", **options)
    base.name = BACKBONE
    if weights:
        base.trainable = False  # train the head first; fine-tuning unfreezes the top later
    # training=False keeps batch norm in inference mode even once layers are unfrozen,
    # so fine-tuning does not wreck the pretrained statistics (Keras' transfer guide).
    x = base(x, training=False) if weights else base(x)
    x = layers.Dropout(model.dropout)(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="probabilities",
                           dtype="float32")(x)
    return keras.Model(inputs, outputs, name="imgclf")


def unfreeze_top(model: keras.Model, n_layers: int) -> int:
    """Make the top ``n_layers`` of the backbone trainable (0 = all), batch norm excepted.

    Returns how many layers were unfrozen. Batch-norm layers stay frozen: their
    statistics come from ImageNet and a small dataset would only make them worse.
    """
    base = model.get_layer(BACKBONE)
    base.trainable = True
    chosen = base.layers[-n_layers:] if n_layers else base.layers
    count = 0
    for layer in base.layers:
        layer.trainable = layer in chosen and not isinstance(layer, layers.BatchNormalization)
        count += layer.trainable
    return count


def build_layer_list(specs: list[Layer], image_size: int, n_classes: int,
                     augment: list[keras.layers.Layer] | None = None) -> keras.Model:
    """A Sequential classifier from a layer list (the named CNNs and ``custom``).

    A flatten is added before the first dense layer if the list has no flatten or
    global pooling there, and global pooling at the end of a list of convolutions.
    """
    model = keras.Sequential(name="imgclf")
    model.add(keras.Input((image_size, image_size, 3), name="pixels"))
    for layer in augment or []:
        model.add(layer)
    model.add(layers.Rescaling(1.0 / 255))
    flat = False
    for spec in specs:
        if spec.type == "dense" and not flat:
            model.add(layers.Flatten())
        flat = flat or spec.type in ("dense", "flatten", "global_avg_pool")
        model.add(_layer(spec))
    if not flat:
        model.add(layers.GlobalAveragePooling2D())
    model.add(layers.Dense(n_classes, activation="softmax", name="probabilities", dtype="float32"))
    return model
