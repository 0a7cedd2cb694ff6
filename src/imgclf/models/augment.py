"""Random resized crops: the augmentation that does most for a CNN trained from scratch.

Keras has no such layer (``RandomZoom`` zooms about the centre and fills the border),
so this one crops a random box of the image, of random area and aspect ratio, and
resizes it back to the full size, as Inception and ResNet training do. Like Keras'
own augmentation layers it runs in training only: in inference it is the identity,
so a saved model predicts on whole images. It is registered with Keras, so a model
file that contains it loads in safe mode once this module is imported (``imgclf``'s
``load_model`` does that).
"""

from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf

ASPECT = (3 / 4, 4 / 3)  # range of the box's width/height ratio, as in torchvision


def crop_boxes(uniform: tf.Tensor, min_area: float) -> tf.Tensor:
    """Boxes for ``tf.image.crop_and_resize`` from uniform random numbers.

    ``uniform`` is ``(B, 4)`` in [0, 1): area, log aspect ratio, then the box's
    vertical and horizontal position. Returns ``(B, 4)`` boxes ``[y0, x0, y1, x1]`` in
    image fractions, each inside the image and covering ``min_area``..1 of it (less
    only when the aspect ratio makes a side longer than the image and it is clipped).
    """
    area = min_area + (1.0 - min_area) * uniform[:, 0]
    lo, hi = math.log(ASPECT[0]), math.log(ASPECT[1])
    ratio = tf.exp(lo + (hi - lo) * uniform[:, 1])  # width / height
    width = tf.minimum(tf.sqrt(area * ratio), 1.0)
    height = tf.minimum(tf.sqrt(area / ratio), 1.0)
    y0 = (1.0 - height) * uniform[:, 2]
    x0 = (1.0 - width) * uniform[:, 3]
    return tf.stack([y0, x0, y0 + height, x0 + width], axis=1)


@keras.saving.register_keras_serializable(package="imgclf")
class RandomResizedCrop(keras.layers.Layer):
    """In training, each image becomes a random box of it resized to the full size.

    ``min_area`` is the smallest fraction of the image a box covers (0.25: at least a
    quarter). Input and output are ``(B, S, S, C)`` float images.
    """

    def __init__(self, min_area: float, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.min_area = min_area
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        if not training:
            return images
        n = tf.shape(images)[0]
        uniform = keras.random.uniform((n, 4), seed=self.seed_generator)
        size = tf.shape(images)[1:3]
        out = tf.image.crop_and_resize(images, crop_boxes(uniform, self.min_area),
                                       tf.range(n), size)
        return tf.cast(out, images.dtype)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return super().get_config() | {"min_area": self.min_area, "seed": self.seed}
